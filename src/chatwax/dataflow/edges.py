"""The dataflow's Bytewax sinks and the results source: thin adapters onto the runtime.

    user --LlmCall--> LlmSink -> Answerer --LlmResult--> results queue
    results queue -> ResultSource -> back into the flow (routed to the user's key)
    replies, answers, transcripts and dead letters -> ReplySink -> NATS
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from chatwax.core.conversation import Answered, LlmCall, LlmResult, SummaryCall, SummaryResult
from chatwax.core.replies import Reply
from chatwax.core.wire import Transcript
from chatwax.dataflow import guard
from chatwax.dataflow.answerer import Answerer, Feedback
from chatwax.dataflow.deadletter import DeadLetter
from chatwax.dataflow.flow import Outbound
from chatwax.dataflow.link import NatsLink

MAX_BATCH = 512


class ReplySink(DynamicSink[Outbound]):
    """The one writer of what the flow sends: replies go out on core NATS; an answer's
    transcript is stored, then its final reply sent; summaries' records and dead letters
    are stored. An item that cannot be encoded becomes a dead letter itself."""

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
        answers: list[tuple[Transcript, bytes, str, bytes]] = []
        dead: list[DeadLetter] = []
        for item in items:
            try:
                if isinstance(item, Reply):
                    replies.append((item.subject, item.event.encode()))
                elif isinstance(item, Answered):
                    answers.append((item.transcript, item.transcript.encode(),
                                    item.final.subject, item.final.event.encode()))
                elif isinstance(item, Transcript):
                    transcripts.append((item, item.encode()))
                else:
                    dead.append(item)
            except Exception as exc:  # noqa: BLE001 - set aside, never stop the cluster
                dead.extend(d for d in guard.failed("nats", item, exc, self._link.metrics)
                            if isinstance(d, DeadLetter))
        self._link.publish_many(replies)
        self._link.publish_transcripts(transcripts)
        self._link.publish_answers(answers)
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


class ResultSource(DynamicSource[LlmResult | SummaryResult]):
    """Finished calls of this process, fed back into the dataflow.

    Every worker drains the same process-wide queue; Bytewax routes each result by its
    user to the worker that owns that state. Each poll is reported to
    `on_poll(worker_index)`: the health endpoint learns from it that the worker runs.
    """

    def __init__(self, feedback: Feedback, poll_ms: float,
                 on_poll: Callable[[int], None] | None = None) -> None:
        self.feedback = feedback
        self.poll_ms = poll_ms
        self.on_poll = on_poll

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ResultPart:
        return _ResultPart(self.feedback, self.poll_ms, worker_index, self.on_poll)


class _ResultPart(StatelessSourcePartition[LlmResult | SummaryResult]):
    def __init__(self, feedback: Feedback, poll_ms: float, worker: int,
                 on_poll: Callable[[int], None] | None) -> None:
        self._results = feedback
        self._poll = timedelta(milliseconds=poll_ms)
        self._worker = worker
        self._on_poll = on_poll

    def next_batch(self) -> list[LlmResult | SummaryResult]:
        if self._on_poll is not None:
            self._on_poll(self._worker)
        batch: list[LlmResult | SummaryResult] = []
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
