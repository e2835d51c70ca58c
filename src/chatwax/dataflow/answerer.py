"""Answering: LLM calls run concurrently, their reply events streamed to the client.

The conversation step emits `LlmCall`s; the answerer runs each as a task on the process's
NATS loop. Many calls are in flight at once per process (bounded by
CHATWAX_LLM_MAX_CONCURRENCY) while the Bytewax workers stay free. Chunks and the final or
error event go out on one connection, so they arrive in order. When a call ends, its
`LlmResult` goes on the feedback queue, which feeds it back into the conversation.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from collections.abc import Awaitable, Callable

from chatwax.core.conversation import LlmCall, LlmResult
from chatwax.core.errors import ErrorCode, LlmError
from chatwax.core.limits import Release
from chatwax.core.protocol import ChunkEvent, ErrorEvent, FinalEvent, Usage
from chatwax.core.settings import Settings
from chatwax.dataflow.link import NatsLink
from chatwax.dataflow.metrics import Metrics
from chatwax.llm.client import LlmClient
from chatwax.llm.failures import RetryReason

log = logging.getLogger(__name__)

Feedback = queue.SimpleQueue[LlmResult | Release]
"""Finished calls and ended requests of this process, on their way back into the flow."""


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
    """Per process: the LLM client, the concurrency bound, and the feedback queue."""

    def __init__(self, settings: Settings, link: NatsLink, metrics: Metrics,
                 feedback: Feedback) -> None:
        self.settings = settings
        self.link = link
        self.metrics = metrics
        self.feedback = feedback
        self.labels = (metrics.model_label(settings.model), settings.provider)
        self.llm = LlmClient(settings, on_retry=self._count_retry)
        self.prices = settings.price_table()
        self._slots = asyncio.Semaphore(settings.llm_max_concurrency)

    def _count_retry(self, reason: RetryReason) -> None:
        self.metrics.retries.labels(*self.labels, reason.value).inc()

    def submit(self, calls: list[LlmCall]) -> None:
        """Thread-safe and non-blocking: called from a Bytewax worker."""
        for call in calls:
            self.link.thread.spawn(self._run(call), f"LLM call {call.request.request_id}")

    async def _run(self, call: LlmCall) -> None:
        req = call.request
        labels = self.labels
        m = self.metrics
        nc = self.link.nc
        reply_to = req.reply_to
        async with self._slots:
            m.queue_wait.observe(max(0.0, time.time() - call.stored_at))
            m.context_tokens.observe(call.est_tokens)
            if call.dropped_turns:
                m.history_dropped.inc(call.dropped_turns)
            m.in_flight.labels(*labels).inc()
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
                m.in_flight.labels(*labels).dec()
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
        m.cost.labels(*labels).inc(cost)
        m.tokens.labels(*labels, "input").inc(result.usage.input_tokens)
        m.tokens.labels(*labels, "output").inc(result.usage.output_tokens)
        m.llm_duration.labels(*labels).observe(result.duration_s)
        if result.ttft_s is not None:
            m.ttft.labels(*labels).observe(result.ttft_s)
        m.requests.labels("ok").inc()
        m.e2e.labels("ok").observe(max(0.0, finished_at - call.stored_at))
        self.feedback.put(LlmResult(
            request_id=req.request_id, conversation_id=req.conversation_id, answer=result.text,
            usage=result.usage, model=result.model, latency_ms=latency_ms, ttft_ms=ttft_ms,
            finished_at=finished_at, cost_usd=cost,
        ))

    async def _finish_error(self, call: LlmCall, code: ErrorCode, message: str) -> None:
        req = call.request
        await self.link.nc.publish(req.reply_to,
                                   ErrorEvent(req.request_id, code, message).encode())
        self.metrics.requests.labels(code.value).inc()
        self.metrics.e2e.labels("error").observe(max(0.0, time.time() - call.stored_at))
        self.feedback.put(LlmResult(
            request_id=req.request_id, conversation_id=req.conversation_id, answer=None,
            usage=Usage(), model=self.llm.model, latency_ms=0.0, ttft_ms=None,
            finished_at=time.time(), error=code,
        ))
