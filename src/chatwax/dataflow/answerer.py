"""Answering: LLM calls run concurrently, their tokens streamed to the client.

The user step emits `LlmCall`s; the answerer runs each as a task on the process's NATS
loop. Many calls are in flight at once per process (bounded by CHATWAX_LLM_MAX_CONCURRENCY)
while the Bytewax workers stay free. Chunks go out as they come; when a call ends, its
`LlmResult` (the answer, or the error) goes on the results queue back into the user's
state, which stores the turn and only then sends the final reply (or sends the error): the
final and error events have one writer, the flow's reply sink, on the same connection as
the chunks, so they arrive after them.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from collections.abc import Awaitable, Callable

from chatwax.core.conversation import LlmCall, LlmResult, SummaryCall, SummaryResult
from chatwax.core.errors import ErrorCode, LlmError
from chatwax.core.settings import Settings
from chatwax.core.wire import ChunkEvent, Usage
from chatwax.dataflow.link import NatsLink
from chatwax.dataflow.metrics import Metrics
from chatwax.llm.client import Completion, LlmClient
from chatwax.llm.failures import RetryReason
from chatwax.llm.tokenizers import UsageCounter

log = logging.getLogger(__name__)

Feedback = queue.SimpleQueue[LlmResult | SummaryResult]
"""Finished calls of this process, on their way back into the flow."""


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
                 feedback: Feedback, counter: UsageCounter) -> None:
        self.settings = settings
        self.link = link
        self.metrics = metrics
        self.feedback = feedback
        self.counter = counter
        self.labels = (metrics.model_label(settings.model), settings.provider)
        self.llm = LlmClient(settings, on_retry=self._count_retry)
        self.prices = settings.price_table()
        self._slots = asyncio.Semaphore(settings.llm_max_concurrency)

    def _count_retry(self, reason: RetryReason) -> None:
        self.metrics.retries.labels(*self.labels, reason.value).inc()

    def submit(self, calls: list[LlmCall | SummaryCall]) -> None:
        """Thread-safe and non-blocking: called from a Bytewax worker."""
        for call in calls:
            if isinstance(call, SummaryCall):
                self.link.thread.spawn(self._summarize(call), f"summary {call.call_id}")
            else:
                self.link.thread.spawn(self._run(call), f"LLM call {call.request.request_id}")

    async def _usage(self, completion: Completion, messages: list[dict[str, str]]
                     ) -> tuple[Usage, int | None]:
        """The server's usage; counted here when it sent none (and labelled so), with the
        new prompt's own count for the turn's size in history."""
        if completion.usage is not None:
            return completion.usage, None
        counted = await self.counter.usage(messages, completion.text)
        return counted.usage, counted.last_message

    def _count_tokens(self, labels: tuple[str, str], usage: Usage) -> None:
        m = self.metrics
        m.tokens.labels(*labels, "input", usage.counted).inc(usage.input_tokens)
        m.tokens.labels(*labels, "output", usage.counted).inc(usage.output_tokens)

    async def _summarize(self, call: SummaryCall) -> None:
        """A summary nobody waits for: its result goes back to the conversation only.

        It takes a concurrency slot like any call; a failure is a result too (the
        conversation falls back to trimming), never an error for the user.
        """
        model = self.settings.summary_model or self.settings.model
        labels = (self.metrics.model_label(model), self.settings.provider)
        started = time.monotonic()
        summary: str | None = None
        usage = Usage()
        async with self._slots:
            try:
                result = await self.llm.stream(call.messages, _ignore, model=model,
                                               max_tokens=self.settings.summary_tokens)
                usage, _ = await self._usage(result, call.messages)
                summary = result.text.strip() or None
            except LlmError as exc:
                log.warning("summary %s failed (%s); the conversation falls back to trimming",
                            call.call_id, exc.code.value)
            except Exception:
                log.exception("summary %s failed unexpectedly", call.call_id)
        cost = self.prices.cost(model, usage)
        self._count_tokens(labels, usage)
        self.metrics.cost.labels(*labels).inc(cost)
        self.feedback.put(SummaryResult(
            call_id=call.call_id, conversation_id=call.conversation_id, summary=summary,
            usage=usage, model=model, latency_ms=(time.monotonic() - started) * 1000,
            finished_at=time.time(), cost_usd=cost, user_id=call.user_id))

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
        usage, prompt_tokens = await self._usage(result, call.messages)
        finished_at = time.time()
        latency_ms = result.duration_s * 1000
        ttft_ms = None if result.ttft_s is None else result.ttft_s * 1000
        cost = self.prices.cost(self.llm.model, usage)
        m.cost.labels(*labels).inc(cost)
        self._count_tokens(labels, usage)
        m.llm_duration.labels(*labels).observe(result.duration_s)
        if result.ttft_s is not None:
            m.ttft.labels(*labels).observe(result.ttft_s)
        m.requests.labels("ok").inc()
        m.e2e.labels("ok").observe(max(0.0, finished_at - call.stored_at))
        self.feedback.put(LlmResult(
            request_id=req.request_id, conversation_id=req.conversation_id, answer=result.text,
            usage=usage, model=result.model, latency_ms=latency_ms, ttft_ms=ttft_ms,
            finished_at=finished_at, cost_usd=cost, prompt_tokens=prompt_tokens,
            user_id=req.user_id,
        ))

    async def _finish_error(self, call: LlmCall, code: ErrorCode, message: str) -> None:
        req = call.request
        self.metrics.requests.labels(code.value).inc()
        self.metrics.e2e.labels("error").observe(max(0.0, time.time() - call.stored_at))
        self.feedback.put(LlmResult(
            request_id=req.request_id, conversation_id=req.conversation_id, answer=None,
            usage=Usage(), model=self.llm.model, latency_ms=0.0, ttft_ms=None,
            finished_at=time.time(), error=code, error_message=message, user_id=req.user_id,
        ))


async def _ignore(index: int, text: str) -> None:
    """A summary's tokens go to no client."""
