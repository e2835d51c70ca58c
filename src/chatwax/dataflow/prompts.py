"""The prompts stream as a Bytewax source: one partition per stream partition subject.

The resume state is the last stream sequence handed to the dataflow, so with Bytewax
recovery a restarted cluster continues exactly where its last snapshot stood. Messages
arrive on the link's loop and wait in a deque that `next_batch` drains without blocking.
"""

from __future__ import annotations

import collections
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from nats.js import api

from chatwax.core import wire
from chatwax.core.intake import Inbound
from chatwax.dataflow.link import NatsLink

log = logging.getLogger(__name__)

MAX_BATCH = 512


class PromptSource(FixedPartitionedSource[Inbound, int]):
    """Reads the prompts stream on `link`.

    With no resume state, `from_start` says where to begin: the whole stream (recovery is
    on and this is the first start, so nothing has been answered yet) or only new prompts
    (no recovery: there is no position to continue from).
    """

    def __init__(self, link: NatsLink, poll_ms: float, from_start: bool = False) -> None:
        self.link = link
        self.poll_ms = poll_ms
        self.from_start = from_start

    def list_parts(self) -> list[str]:
        return [str(p) for p in range(self.link.partitions)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _PromptPartition:
        if resume_state is None and self.from_start:
            resume_state = 0
        return _PromptPartition(self.link, int(for_part), resume_state, self.poll_ms)


class _PromptPartition(StatefulSourcePartition[Inbound, int]):
    def __init__(self, link: NatsLink, partition: int, resume: int | None, poll_ms: float):
        self._link = link
        self._partition = partition
        self._buffer: collections.deque[Inbound] = collections.deque()
        self._poll = timedelta(milliseconds=poll_ms)
        self._pending_in_stream = 0
        self._backlog = link.metrics.prompts_pending.labels(str(partition))
        self._backlog.set(0)
        self._last_seq = (resume if resume is not None
                          else link.thread.call(self._stream_last_seq()))
        self._sub = link.thread.call(self._subscribe(self._last_seq + 1), timeout=30)

    async def _stream_last_seq(self) -> int:
        info = await self._link.js.stream_info(wire.PROMPTS_STREAM)
        return info.state.last_seq

    async def _subscribe(self, start_seq: int) -> Any:
        prompts = wire.prompt_subject(self._partition)
        commands = wire.command_subject(self._partition)

        async def on_msg(msg: Any) -> None:
            meta = msg.metadata
            stored = meta.timestamp.timestamp() if meta.timestamp else time.time()
            hdrs = msg.headers or {}
            self._pending_in_stream = meta.num_pending
            self._buffer.append(
                Inbound(self._partition, meta.sequence.stream, msg.data,
                        hdrs.get(wire.REPLY_TO_HEADER), stored,
                        command=msg.subject == commands, headers=hdrs)
            )

        return await self._link.js.subscribe(
            prompts,
            stream=wire.PROMPTS_STREAM,
            cb=on_msg,
            ordered_consumer=True,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            config=api.ConsumerConfig(opt_start_seq=max(start_seq, 1),
                                      filter_subjects=[prompts, commands]),
        )

    def next_batch(self) -> list[Inbound]:
        batch: list[Inbound] = []
        buf = self._buffer
        while buf and len(batch) < MAX_BATCH:
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
            self._link.thread.call(self._sub.unsubscribe(), timeout=5)
        except Exception:
            log.debug("unsubscribe failed at close", exc_info=True)
