"""Answering: run LLM calls concurrently and stream their reply events to the client.

The conversation step emits `LlmCall`s; `LlmSink` hands them to this process's
`Answerer`, which runs each as a task on the NATS event loop. Many calls are in flight at
once per process (bounded by CHATWAX_LLM_MAX_CONCURRENCY) while the bytewax workers stay
free. Chunks and the final/error event go out on one connection, so they arrive in order.
When a call ends, its `LlmResult` is queued for `FeedbackSource`, which feeds it back into
the conversation so the next queued turn can start; `FeedbackSink` puts the conversation's
`Release`s on the same queue, so per-user limits learn that a request has ended.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from chatwax.errors import ErrorCode, LlmError
from chatwax.llm import LlmClient
from chatwax.metrics import METRICS
from chatwax.nats_io import NatsLink
from chatwax.protocol import ChunkEvent, ErrorEvent, FinalEvent, Usage
from chatwax.settings import Settings
from chatwax.steps import LlmCall, LlmResult, Release

log = logging.getLogger(__name__)


class ChunkBatcher:
    """Coalesces token deltas: the first goes out at once, then one chunk per interval.

    A message per token costs CPU at both ends (encode, publish, decode); when tokens come
    faster than `interval_s` they are joined, so the time to first token is unchanged and
    later text is at most one interval late. A delta with index 0 starts a new attempt.
    """

    def __init__(self, interval_s: float, send: Callable[[int, str], Awaitable[None]]) -> None:
        self.interval_s = interval_s
        self._send = send
        self._parts: list[str] = []
        self._sent = 0
        self._last = 0.0

    async def add(self, index: int, text: str) -> None:
        if index == 0:  # a (re)started stream: the client starts over at chunk 0
            self._parts, self._sent = [text], 0
            await self.flush()
            return
        self._parts.append(text)
        if time.monotonic() - self._last >= self.interval_s:
            await self.flush()

    async def flush(self) -> None:
        if self._parts:
            text, self._parts = "".join(self._parts), []
            await self._send(self._sent, text)
            self._sent += 1
            self._last = time.monotonic()


class Answerer:
    """Per-process: owns the LLM client and the queue of finished calls."""

    _instance: Answerer | None = None
    _lock = threading.Lock()

    def __init__(self, settings: Settings, link: NatsLink) -> None:
        self.settings = settings
        self.link = link
        self.feedback: queue.SimpleQueue[LlmResult | Release] = queue.SimpleQueue()
        self.llm = LlmClient(settings)
        self.prices = settings.price_table()
        self._slots = asyncio.Semaphore(settings.llm_max_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def get(cls, settings: Settings) -> Answerer:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls(settings, NatsLink.get(settings))
            return cls._instance

    def submit(self, calls: list[LlmCall]) -> None:
        """Thread-safe and non-blocking: called from a bytewax worker."""
        if calls:
            self.link.loop.call_soon_threadsafe(self._start, calls)

    def _start(self, calls: list[LlmCall]) -> None:
        for call in calls:
            task = self.link.loop.create_task(self._run(call))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, call: LlmCall) -> None:
        req = call.request
        labels = self.llm.labels
        nc = self.link.nc
        reply_to = req.reply_to
        async with self._slots:
            METRICS.queue_wait.observe(max(0.0, time.time() - call.stored_at))
            METRICS.context_tokens.observe(call.est_tokens)
            if call.dropped_turns:
                METRICS.history_dropped.inc(call.dropped_turns)
            METRICS.in_flight.labels(*labels).inc()
            try:
                async def send(index: int, text: str) -> None:
                    # publish only appends to nats-py's buffer; awaiting keeps chunk order.
                    await nc.publish(reply_to, ChunkEvent(req.request_id, index, text).encode())

                chunks = ChunkBatcher(self.settings.chunk_flush_ms / 1000, send)
                result = await self.llm.stream(call.messages, chunks.add)
                await chunks.flush()
            except LlmError as exc:
                await self._finish_error(call, exc.code, exc.message)
                return
            except Exception:
                log.exception("LLM call %s failed unexpectedly", req.request_id)
                await self._finish_error(call, ErrorCode.INTERNAL, "internal error in chatwax")
                return
            finally:
                METRICS.in_flight.labels(*labels).dec()
        finished_at = time.time()
        latency_ms = result.duration_s * 1000
        ttft_ms = None if result.ttft_s is None else result.ttft_s * 1000
        cost = self.prices.cost(self.llm.model, result.usage)
        await nc.publish(reply_to, FinalEvent(
            request_id=req.request_id, conversation_id=req.conversation_id, text=result.text,
            model=result.model, usage=result.usage, latency_ms=round(latency_ms, 3),
            ttft_ms=None if ttft_ms is None else round(ttft_ms, 3), turn=call.turn,
            cost_usd=cost,
        ).encode())
        METRICS.cost.labels(*labels).inc(cost)
        METRICS.tokens.labels(*labels, "input").inc(result.usage.input_tokens)
        METRICS.tokens.labels(*labels, "output").inc(result.usage.output_tokens)
        METRICS.llm_duration.labels(*labels).observe(result.duration_s)
        if result.ttft_s is not None:
            METRICS.ttft.labels(*labels).observe(result.ttft_s)
        METRICS.requests.labels("ok").inc()
        METRICS.e2e.labels("ok").observe(max(0.0, finished_at - call.stored_at))
        self.feedback.put(LlmResult(
            request_id=req.request_id, conversation_id=req.conversation_id, answer=result.text,
            usage=result.usage, model=result.model, latency_ms=latency_ms, ttft_ms=ttft_ms,
            finished_at=finished_at, cost_usd=cost,
        ))

    async def _finish_error(self, call: LlmCall, code: ErrorCode, message: str) -> None:
        req = call.request
        await self.link.nc.publish(req.reply_to,
                                   ErrorEvent(req.request_id, code, message).encode())
        METRICS.requests.labels(code.value).inc()
        METRICS.e2e.labels("error").observe(max(0.0, time.time() - call.stored_at))
        self.feedback.put(LlmResult(
            request_id=req.request_id, conversation_id=req.conversation_id, answer=None,
            usage=Usage(), model=self.llm.model, latency_ms=0.0, ttft_ms=None,
            finished_at=time.time(), error=code,
        ))


class LlmSink(DynamicSink[LlmCall]):
    """Where the conversation step's `LlmCall`s go: straight to this process's Answerer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _LlmSinkPartition:
        return _LlmSinkPartition(Answerer.get(self.settings))


class _LlmSinkPartition(StatelessSinkPartition[LlmCall]):
    def __init__(self, answerer: Answerer) -> None:
        self._answerer = answerer

    def write_batch(self, items: list[LlmCall]) -> None:
        self._answerer.submit(items)


class FeedbackSink(DynamicSink[Release]):
    """Ended requests, looped back to the per-user limits step through this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _FeedbackSinkPart:
        return _FeedbackSinkPart(Answerer.get(self.settings))


class _FeedbackSinkPart(StatelessSinkPartition[Release]):
    def __init__(self, answerer: Answerer) -> None:
        self._queue = answerer.feedback

    def write_batch(self, items: list[Release]) -> None:
        for item in items:
            self._queue.put(item)


class FeedbackSource(DynamicSource[LlmResult | Release]):
    """Finished calls and ended requests of this process, fed back into the dataflow.

    Every worker drains the same process-wide queue; bytewax routes each item by its key
    (conversation or user) to the worker that owns that state.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _FeedbackPartition:
        return _FeedbackPartition(Answerer.get(self.settings), self.settings.poll_ms)


class _FeedbackPartition(StatelessSourcePartition[LlmResult | Release]):
    def __init__(self, answerer: Answerer, poll_ms: float) -> None:
        self._results = answerer.feedback
        self._poll = timedelta(milliseconds=poll_ms)

    def next_batch(self) -> list[LlmResult | Release]:
        batch: list[LlmResult | Release] = []
        try:
            while len(batch) < 512:
                batch.append(self._results.get_nowait())
        except queue.Empty:
            pass
        return batch

    def next_awake(self) -> datetime | None:
        if not self._results.empty():
            return None
        return datetime.now(UTC) + self._poll
