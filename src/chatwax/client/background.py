"""The chat client for synchronous callers: Streamlit scripts run in plain threads."""

from __future__ import annotations

import queue
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from chatwax.client.chat import ChatClient, Chunk, ConversationSummary
from chatwax.client.loopthread import LoopThread
from chatwax.client.transcripts import ALL_TRANSCRIPTS, iter_transcripts
from chatwax.core import wire
from chatwax.core.settings import Settings
from chatwax.core.usage import UsageReport
from chatwax.core.wire import FinalEvent

T = TypeVar("T")


class BackgroundClient:
    """A `ChatClient` on its own event-loop thread, for synchronous callers (Streamlit).

    One per Streamlit server process (cache it with `st.cache_resource`): every session
    and rerun shares its NATS connection instead of opening one per interaction.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loop = LoopThread("chatwax-client")
        self.client: ChatClient = self._call(ChatClient.connect(settings, "chatwax-frontend"), 15)

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return self._loop.call(coro, timeout)

    @property
    def connected(self) -> bool:
        return bool(self.client.nc.is_connected)

    def conversations(self, user_id: str) -> list[ConversationSummary]:
        return list(self._call(self.client.conversations(user_id), 15))

    def history(self, user_id: str, conversation_id: str) -> list[wire.Transcript]:
        return list(self._call(self.client.history(user_id, conversation_id), 15))

    def usage(self, since_s: float | None, user_id: str | None = None) -> UsageReport:
        """The usage of the last `since_s` seconds (all when None), read in one pass and
        never held as records; only `user_id`'s when given (read through that user's
        subject filter, so no other user's turn reaches this process)."""
        subject = ALL_TRANSCRIPTS
        if user_id is not None:
            wire.check_id(user_id, "user_id", wire.MAX_USER_ID)
            subject = wire.user_records_filter(user_id)

        async def read() -> UsageReport:
            report = UsageReport()
            async for transcript in iter_transcripts(self.client.js, since_s, subject):
                report.add(transcript)
            return report

        return self._call(read(), 60)

    def ask(self, user_id: str, conversation_id: str, prompt: str,
            timeout: float = 120.0) -> Iterator[Chunk | FinalEvent]:
        """`ChatClient.ask` for a thread: the answer's chunks as they arrive, then its
        final event; raises ChatwaxError when it cannot be sent or ends in an error."""
        events: queue.Queue[Chunk | FinalEvent | BaseException | None] = queue.Queue()

        async def pump() -> None:
            try:
                reply = await self.client.ask(user_id, conversation_id, prompt, timeout)
                try:
                    async for chunk in reply:
                        events.put(chunk)
                    events.put(await reply.result())
                finally:
                    await reply.close()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                events.put(exc)
            finally:
                events.put(None)

        self._loop.submit(pump())
        while True:
            item = events.get(timeout=timeout + 5)
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
