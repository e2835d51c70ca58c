"""In-memory edges for the real flow: the restart benchmark seeds recovery stores with them,
and tests run the flow under `bytewax.testing` with them.

`InstantLoop` stands in for the answerer and its results queue: each call is answered at
once by a function, and results come back through one queue, as they do in a process.
Its source ends once `expected` prompt results came back.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from bytewax.inputs import (
    DynamicSource,
    FixedPartitionedSource,
    Source,
    StatefulSourcePartition,
    StatelessSourcePartition,
)
from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition

from chatwax.core.conversation import LlmCall, LlmResult, SummaryCall, SummaryResult
from chatwax.core.intake import Inbound
from chatwax.dataflow.flow import Edges, Outbound

T = TypeVar("T")
Looped = LlmResult | SummaryResult


class _CallSink(DynamicSink[T]):
    """Calls `fn` with every item, from whichever worker writes it."""

    def __init__(self, fn: Callable[[T], None]) -> None:
        self.fn = fn

    def build(self, step_id: str, worker_index: int, worker_count: int
              ) -> StatelessSinkPartition[T]:
        fn = self.fn

        class Part(StatelessSinkPartition[T]):
            def write_batch(self, items: list[T]) -> None:
                for item in items:
                    fn(item)

        return Part()


class InstantLoop:
    """Every `LlmCall` answered at once by `answer` (and every `SummaryCall` by
    `summarize`); results fed back. The results source ends after `expected` prompt
    results (summaries are not counted)."""

    def __init__(self, expected: int, answer: Callable[[LlmCall], LlmResult],
                 summarize: Callable[[SummaryCall], SummaryResult] | None = None) -> None:
        self.expected = expected
        self.answer = answer
        self.summarize = summarize
        self.summaries: list[SummaryCall] = []
        self.calls: list[LlmCall] = []
        self._queue: queue.SimpleQueue[Looped] = queue.SimpleQueue()
        self._returned = 0
        self._lock = threading.Lock()

    def _on_call(self, call: LlmCall | SummaryCall) -> None:
        if isinstance(call, SummaryCall):
            with self._lock:
                self.summaries.append(call)
            if self.summarize is not None:
                self._queue.put(self.summarize(call))
            return
        with self._lock:
            self.calls.append(call)
        self._queue.put(self.answer(call))

    def llm(self) -> DynamicSink[LlmCall | SummaryCall]:
        return _CallSink(self._on_call)

    def results(self) -> DynamicSource[Looped]:
        loop = self

        class Source(DynamicSource[Looped]):
            def build(self, step_id: str, worker_index: int, worker_count: int
                      ) -> StatelessSourcePartition[Looped]:
                return _LoopPart(loop)

        return Source()

    def _drain(self) -> list[Looped]:
        with self._lock:
            if self._returned >= self.expected:
                raise StopIteration
            out: list[Looped] = []
            while len(out) < 10_000:
                try:
                    out.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._returned += sum(1 for x in out if isinstance(x, LlmResult))
            return out

    def edges(self, prompts: Source[Inbound], replies: Sink[Outbound]) -> Edges:
        """The flow's edges with this loop in place of the answerer."""
        return Edges(prompts=prompts, results=self.results(), llm=self.llm(), replies=replies)


class _LoopPart(StatelessSourcePartition[Looped]):
    def __init__(self, loop: InstantLoop) -> None:
        self._loop = loop

    def next_batch(self) -> list[Looped]:
        return self._loop._drain()

    def next_awake(self) -> datetime | None:
        return datetime.now(UTC) + timedelta(milliseconds=1)


class PartitionedPrompts(FixedPartitionedSource[Inbound, None]):
    """Prompts under the prompt source's partition names, with no position to resume from."""

    def __init__(self, items: Sequence[Inbound], partitions: int, batch: int = 5_000) -> None:
        self.items, self.partitions, self.batch = list(items), partitions, batch

    def list_parts(self) -> list[str]:
        return [str(p) for p in range(self.partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: None
                   ) -> StatefulSourcePartition[Inbound, None]:
        mine = [m for m in self.items if str(m.partition) == for_part]
        size = self.batch

        class Part(StatefulSourcePartition[Inbound, None]):
            def next_batch(self) -> list[Inbound]:
                if not mine:
                    raise StopIteration
                batch = mine[:size]
                del mine[:size]
                return batch

            def snapshot(self) -> None:
                return None

        return Part()


class Discard(DynamicSink[T]):
    """Drops everything (replies nobody listens to)."""

    def build(self, step_id: str, worker_index: int, worker_count: int
              ) -> StatelessSinkPartition[T]:
        class Part(StatelessSinkPartition[T]):
            def write_batch(self, items: list[T]) -> None:
                pass

        return Part()
