"""NATS at the dataflow's edges: one connection per process, the prompt source, the sinks.

Bytewax workers are threads that must never block, while nats-py is asyncio. So each
dataflow process owns one `NatsLink`: an event loop on a daemon thread holding one
connection. Source partitions subscribe on it and buffer messages in thread-safe deques
that `next_batch` drains; sinks hand publishes to the loop and return at once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Coroutine, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import nats
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from chatwax import protocol
from chatwax.metrics import METRICS
from chatwax.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def connect_options(settings: Settings, name: str, quiet: bool = False) -> dict[str, Any]:
    """Options shared by every chatwax connection: reconnect forever, credentials if any.

    `quiet` is for interactive clients, which report a failed connect themselves.
    """
    opts: dict[str, Any] = {
        "servers": [s.strip() for s in settings.nats_url.split(",") if s.strip()],
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 5,
        "allow_reconnect": True,
        "error_cb": _on_error_quiet if quiet else _on_error,
        "disconnected_cb": _on_disconnected_quiet if quiet else _on_disconnected,
        "reconnected_cb": _on_reconnected,
    }
    if settings.nats_user:
        opts["user"] = settings.nats_user
        opts["password"] = settings.nats_password or ""
    if settings.nats_token:
        opts["token"] = settings.nats_token
    return opts


async def _on_error(exc: Exception) -> None:
    # One line, no traceback: while NATS is down this fires on every reconnect attempt.
    log.warning("NATS: %s", exc or type(exc).__name__)


async def _on_error_quiet(exc: Exception) -> None:
    log.debug("NATS: %s", exc or type(exc).__name__)


async def _on_disconnected() -> None:
    log.warning("NATS: disconnected, reconnecting")


async def _on_disconnected_quiet() -> None:
    log.debug("NATS: disconnected")


async def _on_reconnected() -> None:
    log.info("NATS: reconnected")


async def ensure_streams(js: JetStreamContext, settings: Settings) -> int:
    """Create or update both streams; returns the prompt partition count in force.

    The partition count of an existing prompts stream wins over the setting: bytewax's
    recovery snapshots are keyed by partition, so it must never silently change.
    """
    partitions = settings.partitions
    try:
        info = await js.stream_info(protocol.PROMPTS_STREAM)
        existing = (info.config.metadata or {}).get(protocol.PARTITIONS_METADATA_KEY)
        if existing is not None and int(existing) != partitions:
            log.warning(
                "prompts stream has %s partitions; ignoring CHATWAX_PROMPT_PARTITIONS=%s",
                existing, partitions,
            )
            partitions = int(existing)
    except NotFoundError:
        pass
    prompts = api.StreamConfig(
        name=protocol.PROMPTS_STREAM,
        subjects=[f"{protocol.PROMPTS_PREFIX}.*"],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        max_age=settings.prompt_max_age_s,
        duplicate_window=120.0,
        num_replicas=settings.stream_replicas,
        metadata={protocol.PARTITIONS_METADATA_KEY: str(partitions)},
    )
    transcripts = api.StreamConfig(
        name=protocol.TRANSCRIPTS_STREAM,
        subjects=[f"{protocol.TRANSCRIPTS_PREFIX}.*.*"],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        max_age=settings.transcript_max_age_s,
        duplicate_window=600.0,
        num_replicas=settings.stream_replicas,
        allow_direct=True,
    )
    for config in (prompts, transcripts):
        await _add_or_update(js, config)
    return partitions


async def _add_or_update(js: JetStreamContext, config: api.StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError:
        # Already there with another config: bring it in line (idempotent start-up).
        await js.update_stream(config)


class NatsLink:
    """This process's NATS connection and the event loop that drives it."""

    _instance: NatsLink | None = None
    _lock = threading.Lock()

    def __init__(self, settings: Settings, name: str = "chatwax-dataflow") -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="chatwax-nats", daemon=True)
        self._thread.start()
        self.nc: NATS = self.call(nats.connect(**connect_options(settings, name)), timeout=30)
        self.js: JetStreamContext = self.nc.jetstream()
        self.partitions: int = self.call(ensure_streams(self.js, settings), timeout=30)

    @classmethod
    def get(cls, settings: Settings) -> NatsLink:
        """The process-wide link, made on first use (all workers of a process share it)."""
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls(settings)
            return cls._instance

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the loop and wait; only for start-up, never in `next_batch`."""
        return self.submit(coro).result(timeout)

    def publish_many(self, messages: Iterable[tuple[str, bytes]]) -> None:
        """Queue core-NATS publishes without waiting (the worker thread never blocks)."""
        batch = list(messages)
        if batch:
            self.loop.call_soon_threadsafe(self._spawn, self._publish_all(batch))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        task.add_done_callback(_log_failure)

    async def _publish_all(self, batch: list[tuple[str, bytes]]) -> None:
        for subject, data in batch:
            await self.nc.publish(subject, data)

    def publish_transcripts(self, transcripts: Iterable[protocol.Transcript]) -> None:
        for t in transcripts:
            self.loop.call_soon_threadsafe(self._spawn, self._store_transcript(t))

    async def _store_transcript(self, t: protocol.Transcript, attempts: int = 20) -> None:
        """JetStream publish with retries; the request id makes a replayed turn a no-op."""
        subject = protocol.transcript_subject(t.user_id, t.conversation_id)
        headers = {protocol.MSG_ID_HEADER: t.request_id}
        for attempt in range(attempts):
            try:
                await self.js.publish(subject, t.encode(), headers=headers, timeout=5)
                return
            except (TimeoutError, NatsError) as exc:
                log.warning("transcript %s not stored yet (%s), retrying", t.request_id, exc)
                await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
        METRICS.transcript_failures.inc()
        log.error("transcript %s could not be stored", t.request_id)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("NATS publish failed", exc_info=task.exception())


# -- Prompt source ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Inbound:
    """A raw prompt message as stored in the stream; decoding happens in a step."""

    partition: int
    seq: int
    data: bytes
    reply_to: str | None
    stored_at: float


class PromptSource(FixedPartitionedSource[Inbound, int]):
    """Reads the prompts stream, one bytewax partition per stream partition subject.

    The resume state is the last stream sequence handed to the dataflow, so with bytewax
    recovery a restarted cluster continues exactly where its last snapshot stood. With no
    resume state, `from_start` says where to begin: the whole stream (recovery is on and
    this is the first start, so nothing has been answered yet) or only new prompts
    (no recovery: there is no position to continue from).
    """

    def __init__(self, settings: Settings, from_start: bool = False) -> None:
        self.settings = settings
        self.from_start = from_start

    def list_parts(self) -> list[str]:
        partitions = NatsLink.get(self.settings).partitions
        return [str(p) for p in range(partitions)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _PromptPartition:
        link = NatsLink.get(self.settings)
        if resume_state is None and self.from_start:
            resume_state = 0
        return _PromptPartition(link, int(for_part), resume_state, self.settings.poll_ms)


class _PromptPartition(StatefulSourcePartition[Inbound, int]):
    def __init__(self, link: NatsLink, partition: int, resume: int | None, poll_ms: float):
        self._link = link
        self._partition = partition
        self._buffer: collections.deque[Inbound] = collections.deque()
        self._poll = timedelta(milliseconds=poll_ms)
        self._pending_in_stream = 0
        self._backlog = METRICS.prompts_pending.labels(str(partition))
        self._backlog.set(0)
        self._last_seq = resume if resume is not None else link.call(self._stream_last_seq())
        self._sub = link.call(self._subscribe(self._last_seq + 1), timeout=30)

    async def _stream_last_seq(self) -> int:
        info = await self._link.js.stream_info(protocol.PROMPTS_STREAM)
        return info.state.last_seq

    async def _subscribe(self, start_seq: int) -> Any:
        async def on_msg(msg: Any) -> None:
            meta = msg.metadata
            stored = meta.timestamp.timestamp() if meta.timestamp else time.time()
            hdrs = msg.headers or {}
            self._pending_in_stream = meta.num_pending
            self._buffer.append(
                Inbound(self._partition, meta.sequence.stream, msg.data,
                        hdrs.get(protocol.REPLY_TO_HEADER), stored)
            )

        return await self._link.js.subscribe(
            protocol.prompt_subject(self._partition),
            stream=protocol.PROMPTS_STREAM,
            cb=on_msg,
            ordered_consumer=True,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            config=api.ConsumerConfig(opt_start_seq=max(start_seq, 1)),
        )

    def next_batch(self) -> list[Inbound]:
        batch: list[Inbound] = []
        buf = self._buffer
        while buf and len(batch) < 512:
            batch.append(buf.popleft())
        if batch:
            self._last_seq = batch[-1].seq
            self._backlog.set(self._pending_in_stream + len(buf))
        return batch

    def next_awake(self) -> datetime | None:
        if self._buffer:
            return None
        return datetime.now(UTC) + self._poll

    def snapshot(self) -> int:
        return self._last_seq

    def close(self) -> None:
        try:
            self._link.call(self._sub.unsubscribe(), timeout=5)
        except Exception:
            log.debug("unsubscribe failed at close", exc_info=True)


# -- Reply sink -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply event addressed to a client's reply subject."""

    subject: str
    event: protocol.ReplyEvent


class NatsSink(DynamicSink[Reply | protocol.Transcript]):
    """Publishes error replies (core NATS) and completed turns (JetStream transcripts)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _NatsSinkPartition:
        return _NatsSinkPartition(NatsLink.get(self.settings))


class _NatsSinkPartition(StatelessSinkPartition[Reply | protocol.Transcript]):
    def __init__(self, link: NatsLink) -> None:
        self._link = link

    def write_batch(self, items: list[Reply | protocol.Transcript]) -> None:
        replies = [(i.subject, i.event.encode()) for i in items if isinstance(i, Reply)]
        self._link.publish_many(replies)
        self._link.publish_transcripts(i for i in items if isinstance(i, protocol.Transcript))

