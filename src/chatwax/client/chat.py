"""A small asyncio client for the chatwax protocol: ask, stream, reload history.

    client = await ChatClient.connect(Settings.from_env())
    reply = await client.ask("alice", "trip", "Where is Lisbon?")
    async for chunk in reply:          # Chunk(text, restart)
        ...
    answer = await reply.result()      # FinalEvent, or ChatwaxError

Used by `chatwax ask`, the Streamlit frontend (through `BackgroundClient`) and the tutorial
adapter, so every way in takes the same durable path: publish into JetStream, then read
reply events.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.api import Header
from nats.js.errors import APIError, NotFoundError

from chatwax.client.connection import connect_options
from chatwax.client.transcripts import read_subject
from chatwax.core import wire
from chatwax.core.errors import (
    ChatwaxError,
    ErrorCode,
    NatsUnavailable,
    NoAnswer,
    NotRunning,
    RequestFailed,
)
from chatwax.core.settings import Settings
from chatwax.core.wire import ChunkEvent, ErrorEvent, FinalEvent, PromptRequest, ReplyEvent

__all__ = ["ChatClient", "Chunk", "ConversationSummary", "Reply"]

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

    async def close(self, drain: bool = True) -> None:
        """Drain (deliver what is pending), or just close a connection that cannot drain
        (or, `drain=False`, one whose server stopped answering). Safe to call again."""
        if self.nc.is_closed:
            return
        if drain:
            try:
                await self.nc.drain()
                return
            except (NatsError, TimeoutError):
                pass
        with contextlib.suppress(NatsError):
            await self.nc.close()

    async def partitions(self) -> int:
        """The prompt partition count, read once from the stream's metadata."""
        if self._partitions is None:
            try:
                info = await self.js.stream_info(wire.PROMPTS_STREAM)
            except NotFoundError:
                raise NotRunning(NOT_RUNNING) from None
            meta = info.config.metadata or {}
            self._partitions = int(meta.get(wire.PARTITIONS_METADATA_KEY, "1"))
        return self._partitions

    async def submit(self, request: PromptRequest) -> None:
        """Durably store a prompt; returning means JetStream acknowledged it."""
        subject = wire.prompt_subject(
            wire.partition_for(request.user_id, await self.partitions())
        )
        headers = {
            Header.MSG_ID: request.request_id,
            wire.REPLY_TO_HEADER: request.reply_to,
        }
        try:
            await self.js.publish(subject, request.encode(), headers=headers,
                                  stream=wire.PROMPTS_STREAM, timeout=10)
        except NotFoundError:
            raise NotRunning(NOT_RUNNING) from None
        except APIError as exc:
            raise refusal(exc) from None

    async def ask(self, user_id: str, conversation_id: str, prompt: str,
                  timeout: float = 120.0) -> Reply:
        """Store a prompt and return its `Reply`: chunks while the answer streams, then
        the final answer (or the error that ended it) within `timeout` seconds.

        The reply inbox is subscribed before the publish, so no event can be missed;
        returning means JetStream has the prompt. A prompt the dataflow would refuse (a bad
        id, over the length limit) raises `ChatwaxError` here and nothing is stored::

            reply = await client.ask("alice", "trip", "Where is Lisbon?")
            async for chunk in reply:
                print(chunk.text, end="")
            answer = await reply.result()   # FinalEvent: text, usage, model
        """
        request = PromptRequest(
            request_id=wire.new_id(), user_id=user_id, conversation_id=conversation_id,
            prompt=prompt, reply_to=self.nc.new_inbox(),
        )
        wire.decode_prompt(request.encode(), self.max_prompt_chars)
        reply = Reply(request, timeout)
        reply.sub = await self.nc.subscribe(request.reply_to, cb=reply.on_msg)
        try:
            await self.submit(request)
        except BaseException:
            await reply.close()
            raise
        return reply

    async def history(self, user_id: str, conversation_id: str) -> list[wire.Transcript]:
        """Every stored turn of one of the user's conversations, oldest first, without
        duplicates. Conversation ids are the user's own: another user's conversation of the
        same id is another conversation, never read here. A turn whose final reply was sent
        is here: the dataflow stores it first."""
        wire.check_id(user_id, "user_id", wire.MAX_USER_ID)
        wire.check_id(conversation_id, "conversation_id", wire.MAX_CONVERSATION_ID)
        return await self._read_all(wire.transcript_subject(user_id, conversation_id))

    async def conversations(self, user_id: str) -> list[ConversationSummary]:
        """A user's conversations, newest first, titled by their first prompt."""
        wire.check_id(user_id, "user_id", wire.MAX_USER_ID)
        try:
            info = await self.js.stream_info(
                wire.TRANSCRIPTS_STREAM,
                subjects_filter=wire.user_transcripts_filter(user_id),
            )
        except NotFoundError:
            return []
        out: list[ConversationSummary] = []
        for subject, count in (info.state.subjects or {}).items():
            conversation_id = subject.rsplit(".", 1)[-1]
            first = await self.js.get_msg(wire.TRANSCRIPTS_STREAM, seq=1, subject=subject,
                                          next=True, direct=True)
            last = await self.js.get_last_msg(wire.TRANSCRIPTS_STREAM, subject, direct=True)
            t_first = wire.decode_stored(first.data or b"")
            t_last = wire.decode_stored(last.data or b"")
            out.append(ConversationSummary(
                conversation_id, count, _title(t_first.prompt if t_first else "?"),
                t_last.finished_at if t_last else 0.0))
        out.sort(key=lambda c: c.updated_at, reverse=True)
        return out

    async def _read_all(self, subject: str) -> list[wire.Transcript]:
        try:
            info = await self.js.stream_info(wire.TRANSCRIPTS_STREAM, subjects_filter=subject)
        except NotFoundError:
            return []
        if not (info.state.subjects or {}).get(subject):
            return []
        turns: dict[str, wire.Transcript] = {}
        async for stored in read_subject(self.nc, subject):  # a batch per round trip
            if (t := wire.decode_stored(stored.data)) is not None:
                turns.setdefault(t.request_id, t)
        return sorted(turns.values(), key=lambda t: (t.turn, t.finished_at))


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a streaming answer. `restart` means: forget what was shown before, the
    answer starts again with `text` (the LLM call was retried, or the dataflow restarted
    and answers again, or the final text differs from what streamed)."""

    text: str
    restart: bool = False


class Reply:
    """The answer to one stored prompt, from `ChatClient.ask`.

    Iterate it for `Chunk`s as the answer streams (restarts folded in, so the chunks
    always add up to the final text), await `result()` for the final answer, or read the
    raw wire events with `events()`. Events of other requests and events re-sent after a
    dataflow restart are dropped; the subscription ends with the final or error event.
    """

    def __init__(self, request: PromptRequest, timeout: float = 120.0) -> None:
        self.request = request
        self.sub: Any = None
        self._deadline = time.monotonic() + timeout
        self._timeout = timeout
        self._queue: asyncio.Queue[ReplyEvent] = asyncio.Queue()
        self._parts: list[str] = []
        self._end: FinalEvent | ErrorEvent | None = None

    @property
    def text(self) -> str:
        """The answer as it stands: the final text once it came, else the chunks so far."""
        if isinstance(self._end, FinalEvent):
            return self._end.text
        return "".join(self._parts)

    async def on_msg(self, msg: Any) -> None:
        try:
            event = wire.decode_event(msg.data)
        except (ChatwaxError, KeyError, TypeError, ValueError):
            return
        if event.request_id == self.request.request_id:
            self._queue.put_nowait(event)

    async def events(self, timeout: float | None = None) -> AsyncIterator[ReplyEvent]:
        """The wire events, once: chunks, then one final or error event. Raises
        `ChatwaxError` (llm_timeout) when none ends the reply within the ask's timeout
        (or `timeout` seconds from now)."""
        deadline = self._deadline if timeout is None else time.monotonic() + timeout
        while self._end is None:
            remaining = deadline - time.monotonic()
            try:
                event = await asyncio.wait_for(self._queue.get(), max(remaining, 0.001))
            except TimeoutError:
                await self.close()
                wait = self._timeout if timeout is None else timeout
                raise NoAnswer(
                    f"no answer within {wait:g}s (request {self.request.request_id})",
                ) from None
            if isinstance(event, FinalEvent | ErrorEvent):
                self._end = event
                await self.close()
            yield event

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        async for event in self.events():
            if isinstance(event, ChunkEvent):
                if event.index == 0 and self._parts:
                    self._parts = [event.delta]
                    yield Chunk(event.delta, restart=True)
                elif event.index >= len(self._parts):
                    self._parts.append(event.delta)
                    yield Chunk(event.delta)
                # else: a chunk already shown, re-sent after a restart
            elif isinstance(event, FinalEvent) and event.text != "".join(self._parts):
                yield Chunk(event.text, restart=bool(self._parts))
                self._parts = [event.text]

    async def result(self) -> FinalEvent:
        """The final answer; raises `ChatwaxError` with the error event's code, or
        llm_timeout when none came in time."""
        if self._end is None:
            async for _ in self.events():
                pass
        if isinstance(self._end, ErrorEvent):
            raise RequestFailed(self._end.code, self._end.message)
        assert isinstance(self._end, FinalEvent)
        return self._end

    async def close(self) -> None:
        """Stop listening (an abandoned reply); safe to call again."""
        if self.sub is not None:
            with contextlib.suppress(NatsError):
                await self.sub.unsubscribe()
            self.sub = None


def refusal(exc: APIError) -> ChatwaxError:
    """What a refused publish into the prompts stream means for the sender."""
    if exc.err_code == STREAM_FULL:
        return RequestFailed(ErrorCode.BUSY, "chatwax is busy: too many prompts are waiting "
                            "to be answered; nothing was stored, try again in a minute")
    if exc.err_code == MESSAGE_TOO_LARGE:
        return RequestFailed(ErrorCode.PROMPT_TOO_LARGE,
                            "the prompt is larger than chatwax accepts; nothing was stored")
    return ChatwaxError(f"the prompt was not stored: {exc.description or exc}")


def _title(prompt: str, limit: int = 48) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
