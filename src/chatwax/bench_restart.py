"""`chatwax bench --restart N`: how long a restart takes with N conversations in recovery.

Seeding N conversations through a live stack would take N / throughput seconds (about
15 minutes for 100,000), so the store is filled by running the real flow in this process
on N prompts with an instant in-process answer in place of the LLM: the same steps, the
same state objects, the same recovery partitions a `chatwax up` cluster uses. Then a
`chatwax up` stack starts on that store, and the clock runs from its start until a prompt
in a seeded conversation is answered as that conversation's second turn.
"""

from __future__ import annotations

import asyncio
import queue
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bytewax.inputs import (
    DynamicSource,
    FixedPartitionedSource,
    StatefulSourcePartition,
    StatelessSourcePartition,
)
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig
from bytewax.testing import run_main

from chatwax.bench import free_run, proc_stats
from chatwax.client import ChatClient
from chatwax.cluster import READY_MARKER
from chatwax.echo_llm import serve_in_thread
from chatwax.nats_io import Inbound, Reply
from chatwax.protocol import FinalEvent, PromptRequest, Transcript, Usage
from chatwax.settings import Settings
from chatwax.stack import Stack, StackOptions
from chatwax.steps import LlmCall, LlmResult, Release

Looped = LlmResult | Release
T = TypeVar("T")


class _Prompts(FixedPartitionedSource[Inbound, None]):
    """The seed prompts, under the prompt source's partition names, with no stream
    position to resume from (the restarted cluster reads its fresh stream from the start)."""

    def __init__(self, items: list[Inbound], partitions: int) -> None:
        self.items, self.partitions = items, partitions

    def list_parts(self) -> list[str]:
        return [str(p) for p in range(self.partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: None
                   ) -> StatefulSourcePartition[Inbound, None]:
        mine = [m for m in self.items if str(m.partition) == for_part]

        class Part(StatefulSourcePartition[Inbound, None]):
            def next_batch(self) -> list[Inbound]:
                if not mine:
                    raise StopIteration
                batch = mine[-5_000:]
                del mine[-5_000:]
                return batch

            def snapshot(self) -> None:
                return None

        return Part()


class _Discard(DynamicSink[Reply | Transcript]):
    def build(self, step_id: str, worker_index: int, worker_count: int
              ) -> StatelessSinkPartition[Reply | Transcript]:
        class Part(StatelessSinkPartition[Reply | Transcript]):
            def write_batch(self, items: list[Reply | Transcript]) -> None:
                pass

        return Part()


class _ToLoop(DynamicSink[T]):
    """Puts what a step emits onto the in-process loop, converted by `convert`."""

    def __init__(self, loop: queue.SimpleQueue[Looped], convert: Callable[[T], Looped]) -> None:
        self.loop, self.convert = loop, convert

    def build(self, step_id: str, worker_index: int, worker_count: int
              ) -> StatelessSinkPartition[T]:
        sink = self

        class Part(StatelessSinkPartition[T]):
            def write_batch(self, items: list[T]) -> None:
                for item in items:
                    sink.loop.put(sink.convert(item))

        return Part()


def _answer(call: LlmCall) -> LlmResult:
    """An instant answer in place of the LLM's."""
    return LlmResult(call.request.request_id, call.request.conversation_id,
                     "a seeded answer " * 20, Usage(60, 60), "echo-1", 1.0, 1.0, time.time())


def _same(release: Release) -> Release:
    return release


class _Feedback(DynamicSource[Looped]):
    """The loop's other end; finishes once every conversation's turn has come back."""

    def __init__(self, loop: queue.SimpleQueue[Looped], expect: int) -> None:
        self.loop, self.expect = loop, expect

    def build(self, step_id: str, worker_index: int, worker_count: int
              ) -> StatelessSourcePartition[Looped]:
        src = self

        class Part(StatelessSourcePartition[Looped]):
            seen = 0

            def next_batch(self) -> list[Looped]:
                if self.seen >= src.expect:
                    raise StopIteration
                out: list[Looped] = []
                while len(out) < 10_000:
                    try:
                        out.append(src.loop.get_nowait())
                    except queue.Empty:
                        break
                self.seen += len(out)
                return out

        return Part()


def seed(recovery_dir: Path, partitions: int, conversations: int) -> None:
    """Recovery partitions holding `conversations` one-turn conversations of 1,000 users."""
    from bytewax.recovery import init_db_dir

    from chatwax.flow import build_flow

    recovery_dir.mkdir(parents=True, exist_ok=True)
    init_db_dir(recovery_dir, partitions)
    (recovery_dir / READY_MARKER).write_text(f"{partitions}\n")
    now = time.time()
    settings = Settings(openai_base_url="http://127.0.0.1:9/v1", model="echo-1",
                        user_max_concurrent=0)
    prompts = [Inbound(i % settings.partitions, i + 1, PromptRequest(
        f"seed-{i:08d}", f"user-{i % 1000}", f"conv-{i:08d}", f"seeded question {i}",
        "chatwax.replies.seed").encode(), None, now) for i in range(conversations)]
    loop: queue.SimpleQueue[Looped] = queue.SimpleQueue()
    flow = build_flow(settings, prompts=_Prompts(prompts, settings.partitions),
                      feedback=_Feedback(loop, 2 * conversations),
                      llm=_ToLoop(loop, _answer), replies=_Discard(),
                      loopback=_ToLoop(loop, _same), recovery=True)
    run_main(flow, epoch_interval=None, recovery_config=RecoveryConfig(str(recovery_dir)))


@dataclass
class RestartResult:
    conversations: int
    seed_s: float
    store_mb: float
    answered_after_s: float
    turn: int
    peak_rss_mb: list[float]


async def _ask_until_answered(url: str, conversation: str, deadline: float) -> FinalEvent:
    """Connect and ask as soon as NATS is up; the prompt waits in the stream until the
    restarted dataflow reads it."""
    while True:
        try:
            client = await ChatClient.connect(Settings(nats_url=url))
            break
        except Exception:  # NATS not up yet
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
    try:
        async for event in client.ask("user-1", conversation, "and now?",
                                      timeout=deadline - time.monotonic()):
            if isinstance(event, FinalEvent):
                return event
        raise RuntimeError("no answer")
    finally:
        await client.close()


def restart_time(conversations: int, processes: int = 2) -> RestartResult:
    with tempfile.TemporaryDirectory(prefix="chatwax-restart-") as tmp, \
            serve_in_thread(model="echo-1") as llm:
        data = Path(tmp)
        began = time.monotonic()
        seed(data / "recovery", processes, conversations)
        seed_s = time.monotonic() - began
        store = sum(p.stat().st_size for p in (data / "recovery").iterdir()) / 2**20

        opts = StackOptions(
            processes=processes, ui=False, data_dir=data, nats_port=free_run(1, 25222),
            nats_monitor_port=free_run(1, 29222), cluster_port=free_run(processes, 22201),
            metrics_port=free_run(processes, 23130), restart=False,
            extra_env={"OPENAI_BASE_URL": llm.base_url, "CHATWAX_MODEL": "echo-1",
                       "CHATWAX_LOG_LEVEL": "WARNING"})
        stack = Stack(opts)
        started = time.monotonic()
        try:
            stack.start()
            final = asyncio.run(_ask_until_answered(stack.nats_url, "conv-00000001",
                                                    started + 300))
            answered = time.monotonic() - started
            rss = [round(proc_stats(c.proc.pid)[1], 1) for c in stack.children if c.dataflow]
        finally:
            stack.stop()
    return RestartResult(conversations, round(seed_s, 1), round(store, 1), round(answered, 2),
                         final.turn, rss)
