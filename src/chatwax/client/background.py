"""The chat client for synchronous callers: Streamlit scripts run in plain threads."""

from __future__ import annotations

import queue
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from chatwax.client.chat import ChatClient, ConversationSummary
from chatwax.client.loopthread import LoopThread
from chatwax.client.transcripts import read_transcripts
from chatwax.core import protocol
from chatwax.core.protocol import ReplyEvent
from chatwax.core.settings import Settings

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

    def history(self, user_id: str, conversation_id: str) -> list[protocol.Transcript]:
        return list(self._call(self.client.history(user_id, conversation_id), 15))

    def transcripts(self, since_s: float | None,
                    user_id: str | None = None) -> list[protocol.Transcript]:
        """Every record (turns and summaries) of the last `since_s` seconds (all when None),
        for usage views; only `user_id`'s when given (read through that user's subject
        filter, so no other user's turn reaches this process)."""
        if user_id is None:
            return list(self._call(read_transcripts(self.client.js, since_s), 60))
        protocol.check_id(user_id, "user_id", protocol.MAX_USER_ID)
        subject = protocol.user_records_filter(user_id)
        return list(self._call(read_transcripts(self.client.js, since_s, subject), 60))

    def ask(self, user_id: str, conversation_id: str, prompt: str,
            timeout: float = 120.0) -> Iterator[ReplyEvent]:
        """Yield reply events as they arrive; raises ChatwaxError on failure to send."""
        events: queue.Queue[ReplyEvent | BaseException | None] = queue.Queue()

        async def pump() -> None:
            try:
                async for event in self.client.ask(user_id, conversation_id, prompt, timeout):
                    events.put(event)
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
