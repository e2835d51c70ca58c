"""A small asyncio client for the chatwax protocol: ask, stream, reload history.

Used by `chatwax ask`, the Streamlit frontend (through `BackgroundClient`) and the tutorial
adapter, so every way in takes the same durable path: publish into JetStream, then read
reply events.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import api
from nats.js.errors import APIError, NotFoundError

from chatwax.client.connection import connect_options
from chatwax.core import protocol
from chatwax.core.errors import ChatwaxError, ErrorCode, NatsUnavailable
from chatwax.core.protocol import ErrorEvent, FinalEvent, PromptRequest, ReplyEvent
from chatwax.core.settings import Settings

NOT_RUNNING = (
    "chatwax is not running: the prompts stream does not exist yet "
    "(start the stack with `make run` or `chatwax up`)"
)


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    conversation_id: str
    turns: int
    title: str
    updated_at: float


MAX_PROMPT_CHARS = Settings.model_fields["max_prompt_chars"].default
STREAM_FULL = 10077
"""JetStream's error code for a store that refused a message: the stream's `max_bytes`
with `discard: new` (nats-server's JSStreamStoreFailedF), or the server's storage limit."""
MESSAGE_TOO_LARGE = 10054
"""JetStream's error code for a message over the stream's `max_msg_size`
(JSStreamMessageExceedsMaximumErr)."""


class ChatClient:
    def __init__(self, nc: NATS, max_prompt_chars: int = MAX_PROMPT_CHARS) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.max_prompt_chars = max_prompt_chars
        self._partitions: int | None = None

    @classmethod
    async def connect(
        cls, settings: Settings, name: str = "chatwax-client", timeout: float = 5.0
    ) -> ChatClient:
        """Connect, failing within `timeout` if NATS is down; reconnects forever after."""
        try:
            opts = connect_options(settings, name, quiet=True)
            nc = await asyncio.wait_for(nats.connect(**opts), timeout)
        except (NatsError, OSError, TimeoutError) as exc:
            why = str(exc) or "timed out"
            raise NatsUnavailable(f"cannot reach NATS at {settings.nats_url} ({why})") from exc
        return cls(nc, settings.max_prompt_chars)

    async def close(self) -> None:
        """Drain (deliver what is pending), or just close a connection that cannot drain."""
        try:
            await self.nc.drain()
        except (NatsError, TimeoutError):
            with contextlib.suppress(NatsError):
                await self.nc.close()

    async def partitions(self) -> int:
        """The prompt partition count, read once from the stream's metadata."""
        if self._partitions is None:
            try:
                info = await self.js.stream_info(protocol.PROMPTS_STREAM)
            except NotFoundError:
                raise ChatwaxError(ErrorCode.LLM_UNAVAILABLE, NOT_RUNNING) from None
            meta = info.config.metadata or {}
            self._partitions = int(meta.get(protocol.PARTITIONS_METADATA_KEY, "1"))
        return self._partitions

    async def submit(self, request: PromptRequest) -> None:
        """Durably store a prompt; returning means JetStream acknowledged it."""
        subject = protocol.prompt_subject(
            protocol.partition_for(request.user_id, await self.partitions())
        )
        headers = {
            protocol.MSG_ID_HEADER: request.request_id,
            protocol.REPLY_TO_HEADER: request.reply_to,
        }
        try:
            await self.js.publish(subject, request.encode(), headers=headers,
                                  stream=protocol.PROMPTS_STREAM, timeout=10)
        except NotFoundError:
            raise ChatwaxError(ErrorCode.LLM_UNAVAILABLE, NOT_RUNNING) from None
        except APIError as exc:
            raise refusal(exc) from None

    async def send(self, user_id: str, conversation_id: str, prompt: str) -> PendingReply:
        """Store a prompt and return a handle to its reply events.

        The reply inbox is subscribed before the publish, so no event can be missed;
        returning means JetStream has the prompt.
        """
        request = PromptRequest(
            request_id=protocol.new_id(), user_id=user_id, conversation_id=conversation_id,
            prompt=prompt, reply_to=self.nc.new_inbox(),
        )
        # Validate as the dataflow would, so a bad id or a prompt over the limit fails here
        # with the same message, and nothing is stored.
        protocol.decode_prompt(request.encode(), self.max_prompt_chars)
        pending = PendingReply(request)
        pending.sub = await self.nc.subscribe(request.reply_to, cb=pending.on_msg)
        try:
            await self.submit(request)
        except BaseException:
            await pending.close()
            raise
        return pending

    async def ask(
        self, user_id: str, conversation_id: str, prompt: str, timeout: float = 120.0
    ) -> AsyncGenerator[ReplyEvent, None]:
        """Send a prompt and yield its events: chunks, then one final or error."""
        pending = await self.send(user_id, conversation_id, prompt)
        try:
            async for event in pending.events(timeout):
                yield event
        finally:
            await pending.close()

    async def history(self, user_id: str, conversation_id: str) -> list[protocol.Transcript]:
        """Every stored turn of one of the user's conversations, oldest first, without
        duplicates. Conversation ids are the user's own: another user's conversation of the
        same id is another conversation, never read here. A turn whose final reply was sent
        is here: the dataflow stores it first."""
        protocol.check_id(user_id, "user_id", protocol.MAX_USER_ID)
        protocol.check_id(conversation_id, "conversation_id", protocol.MAX_CONVERSATION_ID)
        return await self._read_all(protocol.transcript_subject(user_id, conversation_id))

    async def conversations(self, user_id: str) -> list[ConversationSummary]:
        """A user's conversations, newest first, titled by their first prompt."""
        protocol.check_id(user_id, "user_id", protocol.MAX_USER_ID)
        try:
            info = await self.js.stream_info(
                protocol.TRANSCRIPTS_STREAM,
                subjects_filter=protocol.user_transcripts_filter(user_id),
            )
        except NotFoundError:
            return []
        out: list[ConversationSummary] = []
        for subject, count in (info.state.subjects or {}).items():
            conversation_id = subject.rsplit(".", 1)[-1]
            first = await self.js.get_msg(protocol.TRANSCRIPTS_STREAM, seq=1, subject=subject,
                                          next=True, direct=True)
            last = await self.js.get_last_msg(protocol.TRANSCRIPTS_STREAM, subject, direct=True)
            t_first = protocol.decode_stored(first.data or b"")
            t_last = protocol.decode_stored(last.data or b"")
            out.append(ConversationSummary(
                conversation_id, count, _title(t_first.prompt if t_first else "?"),
                t_last.finished_at if t_last else 0.0))
        out.sort(key=lambda c: c.updated_at, reverse=True)
        return out

    async def _read_all(self, subject: str) -> list[protocol.Transcript]:
        try:
            info = await self.js.stream_info(protocol.TRANSCRIPTS_STREAM, subjects_filter=subject)
        except NotFoundError:
            return []
        count = (info.state.subjects or {}).get(subject, 0)
        if count == 0:
            return []
        sub = await self.js.subscribe(subject, stream=protocol.TRANSCRIPTS_STREAM,
                                      ordered_consumer=True,
                                      deliver_policy=api.DeliverPolicy.ALL)
        turns: dict[str, protocol.Transcript] = {}
        try:
            for _ in range(count):
                msg = await sub.next_msg(timeout=5)
                if (t := protocol.decode_stored(msg.data)) is not None:
                    turns.setdefault(t.request_id, t)
        finally:
            await sub.unsubscribe()
        return sorted(turns.values(), key=lambda t: (t.turn, t.finished_at))


class PendingReply:
    """The reply events of one stored prompt, in order, without duplicates.

    A reply re-sent after a dataflow restart is dropped: once the final or error event
    has been yielded, the iterator ends, and events of other requests are ignored.
    """

    def __init__(self, request: PromptRequest) -> None:
        self.request = request
        self.sub: Any = None
        self._queue: asyncio.Queue[ReplyEvent] = asyncio.Queue()

    async def on_msg(self, msg: Any) -> None:
        try:
            event = protocol.decode_event(msg.data)
        except (ChatwaxError, KeyError, TypeError, ValueError):
            return
        if event.request_id == self.request.request_id:
            self._queue.put_nowait(event)

    async def events(self, timeout: float = 120.0) -> AsyncIterator[ReplyEvent]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                event = await asyncio.wait_for(self._queue.get(), max(remaining, 0.001))
            except TimeoutError:
                raise ChatwaxError(
                    ErrorCode.LLM_TIMEOUT,
                    f"no answer within {timeout:g}s (request {self.request.request_id})",
                ) from None
            yield event
            if isinstance(event, FinalEvent | ErrorEvent):
                return

    async def close(self) -> None:
        if self.sub is not None:
            with contextlib.suppress(NatsError):
                await self.sub.unsubscribe()
            self.sub = None


def refusal(exc: APIError) -> ChatwaxError:
    """What a refused publish into the prompts stream means for the sender."""
    if exc.err_code == STREAM_FULL:
        return ChatwaxError(ErrorCode.BUSY, "chatwax is busy: too many prompts are waiting "
                            "to be answered; nothing was stored, try again in a minute")
    if exc.err_code == MESSAGE_TOO_LARGE:
        return ChatwaxError(ErrorCode.PROMPT_TOO_LARGE,
                            "the prompt is larger than chatwax accepts; nothing was stored")
    return ChatwaxError(ErrorCode.INTERNAL,
                        f"the prompt was not stored: {exc.description or exc}")


def _title(prompt: str, limit: int = 48) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
