"""The dataflow's Bytewax sinks and the feedback source: thin adapters onto the runtime.

    conversation --LlmCall--> LlmSink -> Answerer --LlmResult--> feedback queue
    conversation --Release--> FeedbackSink ---------------------> feedback queue
    feedback queue -> FeedbackSource -> back into the flow (routed by key)
    replies, transcripts and dead letters -> ReplySink -> NATS
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from chatwax.core.conversation import LlmCall, LlmResult, SummaryCall, SummaryResult
from chatwax.core.limits import Release
from chatwax.core.protocol import DeadLetter, Reply, Transcript
from chatwax.dataflow import guard
from chatwax.dataflow.answerer import Answerer, Feedback
from chatwax.dataflow.flow import Outbound
from chatwax.dataflow.link import NatsLink

MAX_BATCH = 512


class ReplySink(DynamicSink[Outbound]):
    """Replies go out on core NATS, completed turns into the transcripts stream, dead
    letters into theirs. An item that cannot be encoded becomes a dead letter itself."""

    def __init__(self, link: NatsLink) -> None:
        self.link = link

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ReplyPart:
        return _ReplyPart(self.link)


class _ReplyPart(StatelessSinkPartition[Outbound]):
    def __init__(self, link: NatsLink) -> None:
        self._link = link

    def write_batch(self, items: list[Outbound]) -> None:
        replies: list[tuple[str, bytes]] = []
        transcripts: list[tuple[Transcript, bytes]] = []
        dead: list[DeadLetter] = []
        for item in items:
            try:
                if isinstance(item, Reply):
                    replies.append((item.subject, item.event.encode()))
                elif isinstance(item, Transcript):
                    transcripts.append((item, item.encode()))
                else:
                    dead.append(item)
            except Exception as exc:  # noqa: BLE001 - set aside, never stop the cluster
                dead.extend(d for d in guard.failed("nats", item, exc, self._link.metrics)
                            if isinstance(d, DeadLetter))
        self._link.publish_many(replies)
        self._link.publish_transcripts(transcripts)
        self._link.publish_dead_letters(dead)


class LlmSink(DynamicSink[LlmCall | SummaryCall]):
    """Where the conversation step's calls and summaries go: to this process's answerer."""

    def __init__(self, answerer: Answerer) -> None:
        self.answerer = answerer

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _LlmPart:
        return _LlmPart(self.answerer)


class _LlmPart(StatelessSinkPartition[LlmCall | SummaryCall]):
    def __init__(self, answerer: Answerer) -> None:
        self._answerer = answerer

    def write_batch(self, items: list[LlmCall | SummaryCall]) -> None:
        self._answerer.submit(items)


class FeedbackSink(DynamicSink[Release]):
    """Ended requests, looped back to the per-user limits step through this process."""

    def __init__(self, feedback: Feedback) -> None:
        self.feedback = feedback

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _FeedbackSinkPart:
        return _FeedbackSinkPart(self.feedback)


class _FeedbackSinkPart(StatelessSinkPartition[Release]):
    def __init__(self, feedback: Feedback) -> None:
        self._queue = feedback

    def write_batch(self, items: list[Release]) -> None:
        for item in items:
            self._queue.put(item)


class FeedbackSource(DynamicSource[LlmResult | SummaryResult | Release]):
    """Finished calls and ended requests of this process, fed back into the dataflow.

    Every worker drains the same process-wide queue; Bytewax routes each item by its key
    (conversation or user) to the worker that owns that state. Each poll is reported to
    `on_poll(worker_index)`: the health endpoint learns from it that the worker runs.
    """

    def __init__(self, feedback: Feedback, poll_ms: float,
                 on_poll: Callable[[int], None] | None = None) -> None:
        self.feedback = feedback
        self.poll_ms = poll_ms
        self.on_poll = on_poll

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _FeedbackPart:
        return _FeedbackPart(self.feedback, self.poll_ms, worker_index, self.on_poll)


class _FeedbackPart(StatelessSourcePartition[LlmResult | SummaryResult | Release]):
    def __init__(self, feedback: Feedback, poll_ms: float, worker: int,
                 on_poll: Callable[[int], None] | None) -> None:
        self._results = feedback
        self._poll = timedelta(milliseconds=poll_ms)
        self._worker = worker
        self._on_poll = on_poll

    def next_batch(self) -> list[LlmResult | SummaryResult | Release]:
        if self._on_poll is not None:
            self._on_poll(self._worker)
        batch: list[LlmResult | SummaryResult | Release] = []
        try:
            while len(batch) < MAX_BATCH:
                batch.append(self._results.get_nowait())
        except queue.Empty:
            pass
        return batch

    def next_awake(self) -> datetime | None:
        if not self._results.empty():
            return None
        return datetime.now(UTC) + self._poll
