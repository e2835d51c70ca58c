"""This dataflow process's NATS connection: streams set up, replies and transcripts out.

Bytewax workers are threads that must never block, while nats-py is asyncio. So each
dataflow process owns one `NatsLink`: a connection driven by an event loop on a daemon
thread. Sources subscribe on it and sinks hand it publishes; neither waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import nats
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext, api
from nats.js.api import Header
from nats.js.errors import NotFoundError

from chatwax.client.connection import connect_options
from chatwax.client.loopthread import LoopThread
from chatwax.core import wire
from chatwax.core.errors import ConfigError, ErrorCode
from chatwax.core.settings import Settings
from chatwax.dataflow.deadletter import DeadLetter
from chatwax.dataflow.metrics import Metrics

log = logging.getLogger(__name__)

DEAD_LETTER_MAX_MSGS = 100_000


async def ensure_streams(js: JetStreamContext, settings: Settings) -> int:
    """Create or update the streams; returns the prompt partition count in force.

    Idempotent, and run at every start: changed limits (ages, sizes) apply to an existing
    stream. The partition count of an existing prompts stream wins
    over the setting: bytewax's recovery snapshots are keyed by partition, so it must
    never silently change.
    """
    partitions = settings.partitions
    try:
        info = await js.stream_info(wire.PROMPTS_STREAM)
        existing = (info.config.metadata or {}).get(wire.PARTITIONS_METADATA_KEY)
        if existing is not None and int(existing) != partitions:
            log.warning(
                "prompts stream has %s partitions; ignoring CHATWAX_PROMPT_PARTITIONS=%s",
                existing, partitions,
            )
            partitions = int(existing)
    except NotFoundError:
        pass
    prompts = api.StreamConfig(
        name=wire.PROMPTS_STREAM,
        # <partition> for prompts, <partition>.command for the operator's commands.
        subjects=[f"{wire.PROMPTS_PREFIX}.*",
                  f"{wire.PROMPTS_PREFIX}.*.{wire.COMMAND_TOKEN}"],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        max_age=settings.prompt_max_age_s,
        # Admission before storage: what the dataflow would refuse for its size is refused
        # by the server, and a full stream refuses new prompts (`busy`) instead of dropping
        # stored ones.
        max_msg_size=wire.max_inbound_bytes(settings.max_prompt_chars),
        max_bytes=settings.prompt_max_bytes or -1,
        discard=api.DiscardPolicy.NEW,
        duplicate_window=120.0,
        num_replicas=settings.stream_replicas,
        metadata={wire.PARTITIONS_METADATA_KEY: str(partitions)},
    )
    transcripts = api.StreamConfig(
        name=wire.TRANSCRIPTS_STREAM,
        # <user>.<conversation> for turns, <user>.<conversation>.summary for summaries.
        subjects=[f"{wire.TRANSCRIPTS_PREFIX}.>"],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        max_age=settings.transcript_max_age_s,
        max_bytes=settings.transcript_max_bytes or -1,
        discard=api.DiscardPolicy.OLD,
        duplicate_window=600.0,
        num_replicas=settings.stream_replicas,
        allow_direct=True,
    )
    dead_letters = api.StreamConfig(
        name=wire.DEAD_LETTERS_STREAM,
        # <step>: what made that step fail, with the error in the headers.
        subjects=[f"{wire.DEAD_LETTERS_PREFIX}.>"],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        max_age=settings.dead_letter_max_age_s,
        max_bytes=settings.dead_letter_max_bytes,
        max_msgs=DEAD_LETTER_MAX_MSGS,
        discard=api.DiscardPolicy.OLD,
        duplicate_window=120.0,
        num_replicas=settings.stream_replicas,
    )
    for config in (prompts, transcripts, dead_letters):
        await _add_or_update(js, config)
    return partitions


INSUFFICIENT_STORAGE = 10047
"""JetStream's error code when a stream's `max_bytes` cannot be reserved: the server's
file store (`max_file_store`, by default 75% of the free disk) is smaller than the bounds
of all its streams together."""


async def _add_or_update(js: JetStreamContext, config: api.StreamConfig) -> None:
    """Update the stream when it exists, else add it. Every process runs this at start, so
    the stream usually exists: adding it again is not idempotent once it reserves
    `max_bytes` (nats-server 2.15 checks the reservation as for a new stream and answers
    10047 when the store cannot hold it twice), so an existing stream is only updated. An
    add that fails because another process created the stream meanwhile becomes an
    update too."""
    assert config.name is not None
    try:
        if not await _exists(js, config.name):
            try:
                await js.add_stream(config)
                return
            except nats.js.errors.APIError:
                if not await _exists(js, config.name):
                    raise  # a refusal of its own, not a concurrent creation
        await js.update_stream(config)
    except nats.js.errors.APIError as exc:
        if exc.err_code != INSUFFICIENT_STORAGE:
            raise
        raise ConfigError(
            f"NATS cannot reserve {config.max_bytes} bytes for stream {config.name}: its "
            "JetStream store is smaller than the streams' bounds together. Give NATS more "
            "storage, or lower CHATWAX_TRANSCRIPT_MAX_BYTES, CHATWAX_PROMPT_MAX_BYTES and "
            "CHATWAX_DEAD_LETTER_MAX_BYTES") from None


async def _exists(js: JetStreamContext, name: str) -> bool:
    try:
        await js.stream_info(name)
    except nats.js.errors.NotFoundError:
        return False
    return True


class NatsLink:
    """One connection, the loop that drives it, and the prompt partition count in force."""

    def __init__(self, loop: LoopThread, nc: NATS, partitions: int, metrics: Metrics) -> None:
        self.thread = loop
        self.loop = loop.loop
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.partitions = partitions
        self.metrics = metrics

    @classmethod
    def connect(cls, settings: Settings, loop: LoopThread, metrics: Metrics,
                name: str = "chatwax-dataflow", retry_s: float = 2.0) -> NatsLink:
        """Connect and set up the streams, trying again until NATS answers.

        Blocking: for the entry point only. A NATS that is not up yet (a pod started before
        the NATS pods, a broker restarting) is waited for, not a reason to exit.
        """
        while True:
            try:
                nc: NATS = loop.call(nats.connect(**connect_options(settings, name)),
                                     timeout=30)
                break
            except (NatsError, OSError, TimeoutError) as exc:
                log.warning("NATS at %s not reachable yet (%s); trying again in %gs",
                            settings.nats_url, exc or type(exc).__name__, retry_s)
                time.sleep(retry_s)
        while True:
            try:
                partitions = loop.call(ensure_streams(nc.jetstream(), settings), timeout=30)
                break
            except (NatsError, TimeoutError) as exc:
                # JetStream not ready yet (a clustered NATS electing its meta leader).
                log.warning("JetStream streams not set up yet (%s); trying again in %gs",
                            exc or type(exc).__name__, retry_s)
                time.sleep(retry_s)
        return cls(loop, nc, partitions, metrics)

    def publish_many(self, messages: Iterable[tuple[str, bytes]]) -> None:
        """Queue core-NATS publishes without waiting (the worker thread never blocks)."""
        batch = list(messages)
        if batch:
            self.thread.spawn(self._publish_all(batch), "NATS publish")

    async def _publish_all(self, batch: list[tuple[str, bytes]]) -> None:
        for subject, data in batch:
            await self.nc.publish(subject, data)

    def publish_transcripts(self, transcripts: Iterable[tuple[wire.Transcript, bytes]]
                            ) -> None:
        """Store each encoded record (a summary's), without waiting."""
        for t, data in transcripts:
            self.thread.spawn(self._store_only(t, data), f"storing transcript {t.request_id}")

    async def _store_only(self, t: wire.Transcript, data: bytes) -> None:
        await self._store_transcript(t, data)

    def publish_answers(self, answers: Iterable[tuple[wire.Transcript, bytes, str, bytes]]
                        ) -> None:
        """Each answer's transcript stored, then its final reply sent: a client holding the
        final can read the turn back at once (`chatwax export`, a page reload)."""
        for t, data, subject, final in answers:
            self.thread.spawn(self._store_then_reply(t, data, subject, final),
                              f"answer {t.request_id}")

    async def _store_then_reply(self, t: wire.Transcript, data: bytes, subject: str,
                                final: bytes) -> None:
        if not await self._store_transcript(t, data):
            final = wire.ErrorEvent(
                t.request_id, ErrorCode.INTERNAL,
                "the answer could not be stored (NATS did not take it); ask again"
            ).encode()
        await self.nc.publish(subject, final)

    def publish_dead_letters(self, letters: Iterable[DeadLetter]) -> None:
        for letter in letters:
            self.thread.spawn(self._store_dead_letter(letter), "storing a dead letter")

    async def _store_dead_letter(self, d: DeadLetter) -> None:
        """Best effort: the failure is already logged and counted; a dead letter that
        cannot be stored (its stream full of new ones, NATS away) is logged again."""
        try:
            await self.js.publish(d.subject, d.data, headers=d.all_headers(), timeout=5)
        except (TimeoutError, NatsError) as exc:
            log.error("dead letter of step %s (origin %s) not stored: %s", d.step,
                      d.origin or "-", exc)

    async def _store_transcript(self, t: wire.Transcript, data: bytes,
                                attempts: int = 20) -> bool:
        """JetStream publish with retries; the request id makes a replayed turn a no-op.
        Whether it was stored."""
        subject = t.subject
        headers: dict[str, str] = {Header.MSG_ID: t.request_id}
        for attempt in range(attempts):
            try:
                await self.js.publish(subject, data, headers=headers, timeout=5)
                return True
            except (TimeoutError, NatsError) as exc:
                log.warning("transcript %s not stored yet (%s), retrying", t.request_id, exc)
                await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
        self.metrics.transcript_failures.inc()
        log.error("transcript %s could not be stored", t.request_id)
        return False
