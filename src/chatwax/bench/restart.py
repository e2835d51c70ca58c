"""`chatwax bench --restart-conversations N`: how long a restart takes with N conversations
in recovery.

Seeding N conversations through a live stack would take N / throughput seconds (about
15 minutes for 100,000), so the store is filled by running the real flow in this process
on N prompts with an instant in-process answer in place of the LLM: the same steps, the
same state objects, the same recovery partitions a `chatwax up` cluster uses. Then a
`chatwax up` stack starts on that store, and the clock runs from its start until a prompt
in a seeded conversation is answered as that conversation's second turn.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bytewax.recovery import RecoveryConfig
from bytewax.testing import run_main
from prometheus_client import CollectorRegistry

from chatwax.bench.edges import Discard, InstantLoop, PartitionedPrompts
from chatwax.bench.measure import proc_stats
from chatwax.bench.ports import free_run
from chatwax.client.chat import ChatClient
from chatwax.core.conversation import LlmCall, LlmResult
from chatwax.core.intake import Inbound
from chatwax.core.settings import Settings
from chatwax.core.wire import FinalEvent, PromptRequest, Usage, partition_for
from chatwax.dataflow.flow import build_flow
from chatwax.dataflow.metrics import Metrics
from chatwax.dataflow.runspec import READY_MARKER, default_partitions
from chatwax.dev.echo_llm import serve_in_thread
from chatwax.dev.options import StackOptions
from chatwax.dev.stack import Stack


def _answer(call: LlmCall) -> LlmResult:
    """An instant answer in place of the LLM's."""
    return LlmResult(call.request.request_id, call.request.conversation_id,
                     "a seeded answer " * 20, Usage(60, 60), "echo-1", 1.0, 1.0, time.time(),
                     user_id=call.request.user_id)


def seed(recovery_dir: Path, partitions: int, conversations: int) -> None:
    """Recovery partitions holding `conversations` one-turn conversations of 1,000 users."""
    from bytewax.recovery import init_db_dir

    recovery_dir.mkdir(parents=True, exist_ok=True)
    init_db_dir(recovery_dir, partitions)
    (recovery_dir / READY_MARKER).write_text(f"{partitions}\n")
    now = time.time()
    settings = Settings(openai_base_url="http://127.0.0.1:9/v1", model="echo-1",
                        user_max_concurrent=0, user_prompts_per_minute=0,
                        user_max_conversations=0, user_token_quota=0)
    prompts = [Inbound(partition_for(f"user-{i % 1000}", settings.partitions), i + 1,
                       PromptRequest(f"seed-{i:08d}", f"user-{i % 1000}", f"conv-{i:08d}",
                                     f"seeded question {i}", "chatwax.replies.seed").encode(),
                       None, now) for i in range(conversations)]
    loop = InstantLoop(conversations, _answer)  # a result per prompt
    edges = loop.edges(PartitionedPrompts(prompts, settings.partitions), Discard())
    flow = build_flow(settings, edges, Metrics(CollectorRegistry()))
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
        reply = await client.ask("user-1", conversation, "and now?",
                                 timeout=deadline - time.monotonic())
        return await reply.result()
    finally:
        await client.close()


def restart_time(conversations: int, processes: int = 2) -> RestartResult:
    with tempfile.TemporaryDirectory(prefix="chatwax-restart-") as tmp, \
            serve_in_thread(model="echo-1") as llm:
        data = Path(tmp)
        began = time.monotonic()
        seed(data / "recovery", default_partitions(processes), conversations)
        seed_s = time.monotonic() - began
        store = sum(p.stat().st_size for p in (data / "recovery").iterdir()) / 2**20

        opts = StackOptions(
            processes=processes, ui=False, data_dir=data, nats_port=free_run(1, 25222),
            nats_monitor_port=free_run(1, 29222), cluster_port=free_run(processes, 22201),
            metrics_port=free_run(processes, 23130), health_port=free_run(processes, 23330),
            restart=False, ready_timeout_s=900,
            extra_env={"OPENAI_BASE_URL": llm.base_url, "CHATWAX_MODEL": "echo-1",
                       "CHATWAX_LOG_LEVEL": "WARNING"})
        stack = Stack(opts)
        started = time.monotonic()
        try:
            stack.start()
            final = asyncio.run(_ask_until_answered(stack.nats_url, "conv-00000001",
                                                    started + 1200))
            answered = time.monotonic() - started
            rss = [round(proc_stats(c.proc.pid)[1], 1) for c in stack.children if c.dataflow]
        finally:
            stack.stop()
    return RestartResult(conversations, round(seed_s, 1), round(store, 1), round(answered, 2),
                         final.turn, rss)
