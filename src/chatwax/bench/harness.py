"""`chatwax bench`: load against a real local stack with its own OpenAI-compatible server.

For each scenario it starts the echo server (fixed latency, answers padded to N tokens),
a `chatwax up --no-ui` stack, and sends prompts at a fixed rate over many conversations,
then reports throughput, end-to-end latency, overhead (end-to-end minus the server's own
time), time-to-first-token overhead, errors, and CPU and peak RSS per dataflow process.
The tutorial's design runs in the same harness as the baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chatwax.client.chat import ChatClient
from chatwax.core.protocol import ChunkEvent, ErrorEvent, FinalEvent
from chatwax.core.settings import Settings
from chatwax.dev.stack import Stack, StackOptions, port_free, wait_http


@dataclass(frozen=True)
class Scenario:
    name: str
    rate: float
    processes: int = 2
    workers: int = 1
    conversations: int = 1000
    baseline: bool = False
    duration: float | None = None
    """Seconds of load; None: the run's `--duration`."""


@dataclass(frozen=True)
class Build:
    """Which code the dataflow processes run: this checkout, or another commit's `src`."""

    label: str = "now"
    src: Path | None = None


@dataclass
class Result:
    scenario: Scenario
    sent: int = 0
    answered: int = 0
    errors: int = 0
    unanswered: int = 0
    throughput: float = 0.0
    e2e_ms: dict[str, float] = field(default_factory=dict)
    overhead_ms: dict[str, float] = field(default_factory=dict)
    ttft_overhead_ms: dict[str, float] = field(default_factory=dict)
    # Publish until the LLM server has the request: the pipeline's inbound share.
    inbound_ms: dict[str, float] = field(default_factory=dict)
    cpu_s: list[float] = field(default_factory=list)
    peak_rss_mb: list[float] = field(default_factory=list)
    steady: float = 0.0
    """Answers per second finished while the load ran (from 1 s in to its end): the
    sustained rate, without the wait for the last answers."""
    build: str = "now"

    @property
    def cpu_per_1000(self) -> float:
        """Dataflow CPU seconds (all processes) per 1,000 answered prompts."""
        return round(1000 * sum(self.cpu_s) / self.answered, 2) if self.answered else 0.0


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    values = sorted(values)

    def at(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]

    return {"p50": round(at(0.50), 2), "p95": round(at(0.95), 2), "p99": round(at(0.99), 2),
            "mean": round(statistics.fmean(values), 2)}


def free_run(count: int, start: int) -> int:
    port = start
    while not all(port_free(port + i) for i in range(count)):
        port += count
    return port


def proc_stats(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and peak RSS in MB, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    hwm = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmHWM"))
    return cpu, int(hwm.split()[1]) / 1024


async def drive(url: str, sc: Scenario, duration: float, latency: float, r: Result,
                llm: Any = None) -> None:
    client = await ChatClient.connect(Settings(nats_url=url))
    sent_at: dict[str, float] = {}
    done_at: list[float] = []
    e2e: list[float] = []
    ttft: list[float] = []
    tasks: list[asyncio.Task[None]] = []

    async def one(i: int) -> None:
        conv = f"bench-{i % sc.conversations}"
        start = time.perf_counter()
        first: float | None = None
        sent_at[f"prompt {i}"] = time.time()
        try:
            pending = await client.send(f"u{i % sc.conversations}", conv, f"prompt {i}")
            async for event in pending.events(timeout=duration + 30):
                if isinstance(event, ChunkEvent) and first is None:
                    first = time.perf_counter()
                elif isinstance(event, FinalEvent):
                    r.answered += 1
                    done_at.append(time.perf_counter() - began)
                    e2e.append((time.perf_counter() - start) * 1000)
                    if first is not None:
                        ttft.append((first - start) * 1000)
                elif isinstance(event, ErrorEvent):
                    r.errors += 1
            await pending.close()
        except Exception:  # noqa: BLE001 - counted: not answered within the run
            r.unanswered += 1

    began = time.perf_counter()
    i = 0
    while (now := time.perf_counter() - began) < duration:
        due = i / sc.rate
        if due > now:
            await asyncio.sleep(due - now)
        tasks.append(asyncio.create_task(one(i)))
        i += 1
    r.sent = i
    await asyncio.wait(tasks, timeout=30)
    elapsed = time.perf_counter() - began
    r.unanswered = r.sent - r.answered - r.errors
    r.throughput = round(r.answered / elapsed, 1)
    r.steady = round(sum(1 for t in done_at if 1.0 <= t < duration) / (duration - 1.0), 1)
    r.e2e_ms = percentiles(e2e)
    r.overhead_ms = percentiles([x - latency * 1000 for x in e2e])
    r.ttft_overhead_ms = percentiles([x - latency * 1000 for x in ttft])
    if llm is not None:
        arrivals = {str(e["messages"][-1]["content"]): e["received_at"] for e in llm.requests()}
        r.inbound_ms = percentiles([(arrivals[p] - t) * 1000 for p, t in sent_at.items()
                                    if p in arrivals])
    await client.close()


class EchoProcess:
    """The echo LLM server in its own process, so the load generator's work does not
    delay the server's answers (and the overhead measured is the pipeline's)."""

    def __init__(self, latency: float, tokens: int) -> None:
        port = free_run(1, 26000)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chatwax.dev.echo_llm", "--port", str(port), "--latency",
             str(latency), "--pad-to", str(tokens), "--answer-tokens-max", str(tokens)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"{self.base_url}/models", 20, self.proc, "echo LLM server")

    def requests(self) -> list[dict[str, Any]]:
        url = self.base_url.removesuffix("/v1") + "/_test/requests"
        with urllib.request.urlopen(url, timeout=30) as resp:
            return list(json.loads(resp.read()))

    def __enter__(self) -> EchoProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def start_profiles(stack: Stack, sc: Scenario, duration: float, folder: Path
                   ) -> list[subprocess.Popen[bytes]]:
    """py-spy on every dataflow process for the scenario's run: collapsed stacks (one line
    per distinct stack, with its sample count), threads apart, idle samples left out."""
    folder.mkdir(parents=True, exist_ok=True)
    slug = sc.name.replace(" ", "-").replace("/", "")
    procs = []
    for child in (c for c in stack.children if c.dataflow):
        out = folder / f"{slug}.{child.name}.txt"
        procs.append(subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
             str(child.proc.pid), "--duration", str(int(duration)), "--rate", "200",
             "--format", "raw", "--threads",
             "--nonblocking", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def run_scenario(sc: Scenario, duration: float, latency: float, tokens: int,
                 profile: Path | None = None, build: Build = Build()) -> Result:
    duration = sc.duration or duration
    result = Result(sc, build=build.label)
    code = {"PYTHONPATH": str(build.src)} if build.src else {}
    with tempfile.TemporaryDirectory(prefix="chatwax-bench-") as tmp, \
            EchoProcess(latency, tokens) as llm:
        opts = StackOptions(
            processes=sc.processes, workers=sc.workers, ui=False, data_dir=Path(tmp),
            nats_port=free_run(1, 24222), nats_monitor_port=free_run(1, 28222),
            cluster_port=free_run(sc.processes, 22101), metrics_port=free_run(sc.processes, 23030),
            health_port=free_run(sc.processes, 23230),
            restart=False,
            dataflow_command=(("-m", "chatwax.bench.baseline") if sc.baseline
                              else StackOptions.dataflow_command),
            extra_env={"OPENAI_BASE_URL": llm.base_url, "CHATWAX_MODEL": "echo-1",
                       "CHATWAX_USER_MAX_CONCURRENT": "0", "CHATWAX_LLM_MAX_CONCURRENCY": "2048",
                       # Load, not people: no per-user rate, quota or conversation cap.
                       "CHATWAX_USER_PROMPTS_PER_MINUTE": "0", "CHATWAX_USER_TOKEN_QUOTA": "0",
                       "CHATWAX_USER_MAX_CONVERSATIONS": "0",
                       "CHATWAX_LOG_LEVEL": "WARNING", **code},
        )
        stack = Stack(opts)
        stack.start()
        spies = start_profiles(stack, sc, duration, profile) if profile else []
        try:
            asyncio.run(drive(stack.nats_url, sc, duration, latency, result, llm))
            for spy in spies:
                spy.wait(30)
            for child in stack.children:
                if child.dataflow:
                    cpu, rss = proc_stats(child.proc.pid)
                    result.cpu_s.append(round(cpu, 1))
                    result.peak_rss_mb.append(round(rss, 1))
        finally:
            stack.stop()
    return result


def conversation_memory(count: int = 20_000) -> float:
    """Bytes of Python state per idle conversation (one turn), beyond the turn's text.

    What the user step holds for a resumed conversation of a user with 20: its packed
    bytes, the entry in the user's maps, and a share of the user's logic object. Bytewax's
    own per-key bookkeeping is not included.
    """
    import pickle
    import tracemalloc

    from prometheus_client import CollectorRegistry

    from chatwax.core.conversation import Conversation, ConversationConfig
    from chatwax.core.history import Turn
    from chatwax.core.user import UserConfig, UserState
    from chatwax.dataflow.logic import UserLogic
    from chatwax.dataflow.metrics import Metrics

    metrics = Metrics(CollectorRegistry())
    cfg = UserConfig(ConversationConfig("system", 4000, "local"))
    snapshots = []
    text = 0
    per_user = 20
    for u in range(count // per_user):
        user = UserState(f"user-{u:06d}")
        for i in range(u * per_user, (u + 1) * per_user):
            conv = Conversation(owner=user.user_id, turns=1)
            prompt, answer = f"question {i} " * 8, f"answer {i} " * 30
            text += len(prompt) + len(answer)  # ASCII: one byte a character, pickled too
            conv.history.append(Turn(f"{i:032x}", prompt, answer))
            user.live[f"conv-{i:08d}"] = conv
            user.last_active[f"conv-{i:08d}"] = 0.0
        snapshots.append(pickle.dumps(user.snapshot()))
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    held = [UserLogic(cfg, metrics, pickle.loads(s)) for s in snapshots]
    used = sum(d.size_diff for d in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    assert sum(h.state.count() for h in held) == count // per_user * per_user
    return round((used - text) / count, 1)


SCENARIOS = (
    Scenario("overhead 50/s", rate=50),
    Scenario("throughput 150/s", rate=150),
    Scenario("ceiling 300/s", rate=300),
    Scenario("sustained 300/s for 30 s", rate=300, duration=30),
    Scenario("1 process x 1 worker", rate=150, processes=1, workers=1),
    Scenario("1 process x 2 workers", rate=150, processes=1, workers=2),
    Scenario("tutorial baseline 50/s", rate=50, baseline=True),
)


def table(results: list[Result]) -> str:
    head = ("scenario", "code", "offered/s", "answered/s", "steady/s", "err", "unanswered",
            "e2e p50", "e2e p99", "ovh p50", "ovh p99", "ttft ovh p50", "inbound p50",
            "cpu s", "cpu s/1000", "peak MB")
    rows = [head]
    for r in results:
        rows.append((r.scenario.name, r.build, f"{r.scenario.rate:g}", f"{r.throughput:g}",
                     f"{r.steady:g}", str(r.errors), str(r.unanswered),
                     str(r.e2e_ms.get("p50", "-")),
                     str(r.e2e_ms.get("p99", "-")), str(r.overhead_ms.get("p50", "-")),
                     str(r.overhead_ms.get("p99", "-")), str(r.ttft_overhead_ms.get("p50", "-")),
                     str(r.inbound_ms.get("p50", "-")),
                     "+".join(map(str, r.cpu_s)), f"{r.cpu_per_1000:g}",
                     "+".join(map(str, r.peak_rss_mb))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def plot(results: list[Result], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if not results:  # e.g. `--only restart`
        return False
    names = [f"{r.scenario.name} ({r.build})" for r in results]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    a.barh(names, [r.throughput for r in results], color="#3b82f6")
    a.set_xlabel("answered prompts / s")
    a.set_title("Throughput")
    b.barh(names, [r.overhead_ms.get("p99", 0) for r in results], color="#fcd9a0", label="p99")
    b.barh(names, [r.overhead_ms.get("p50", 0) for r in results], color="#10b981", label="p50")
    b.set_xscale("symlog")
    b.set_xlabel("ms beyond the LLM's own time")
    b.set_title("Pipeline overhead")
    b.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return True


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """The `src` folder of another commit, checked out beside this one for the run."""
    root = Path(__file__).resolve().parents[3]
    with tempfile.TemporaryDirectory(prefix="chatwax-before-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(tree), ref],
                       check=True, capture_output=True)
        try:
            yield tree / "src"
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force",
                            str(tree)], capture_output=True)


def export_table(runs: list[Any]) -> str:
    lines = ["format        conversations  records  seconds  records/s  MB/s  output MB  "
             "peak RSS MB"]
    for r in runs:
        lines.append(f"{r.format:<13} {r.conversations:>13,} {r.records:>8,} {r.seconds:>8} "
                     f"{r.records_per_s:>10,} {r.mb_per_s:>5} {r.output_mb:>10} "
                     f"{r.peak_rss_mb:>12}")
    return "\n".join(lines)


def main(duration: float, latency: float, tokens: int, only: str | None, out: Path,
         restart_conversations: int = 100_000, export_conversations: int = 20_000,
         profile: bool = False, before: str | None = None,
         sustained: float | None = None) -> int:
    """Every scenario (those whose name contains `only`), then the restart and export
    measurements; `sustained` shortens the sustained scenario (`--quick`)."""
    builds = [Build()]
    with contextlib.ExitStack() as cleanup:
        if before:
            builds.insert(0, Build(f"before ({before})", cleanup.enter_context(checkout(before))))
        results = []
        for sc in SCENARIOS:
            if only and only not in sc.name:
                continue
            if sustained and sc.duration:
                sc = dataclasses.replace(sc, duration=sustained)
            for build in ([Build()] if sc.baseline else builds):
                print(f"running: {sc.name} [{build.label}] ({sc.duration or duration:g} s)",
                      flush=True)
                results.append(run_scenario(sc, duration, latency, tokens,
                                            out / "profiles" if profile else None, build))
    if results:
        print(table(results))
    memory = conversation_memory()
    print(f"state per idle conversation beyond its history text: {memory} bytes")
    restart = None
    if restart_conversations and (not only or only in "restart"):
        from chatwax.bench.restart import restart_time

        print(f"running: restart with {restart_conversations:,} conversations in recovery",
              flush=True)
        restart = restart_time(restart_conversations)
        print(f"restart: answered {restart.answered_after_s} s after start (turn "
              f"{restart.turn} of a seeded conversation); recovery store {restart.store_mb} MB; "
              f"peak RSS per process {' + '.join(map(str, restart.peak_rss_mb))} MB")
    exports = []
    if export_conversations and only and only in "export":
        from chatwax.bench.export import export_rate

        print(f"running: chatwax export of {export_conversations:,} conversations",
              flush=True)
        exports = export_rate(export_conversations)
        print(export_table(exports))
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(
        {"scenarios": [{**asdict(r), "cpu_per_1000": r.cpu_per_1000} for r in results],
         "bytes_per_idle_conversation": memory,
         "restart": asdict(restart) if restart else None,
         "export": [asdict(e) for e in exports]}, indent=2))
    if plot(results, out / "bench.png"):
        print(f"plot: {out / 'bench.png'}")
    return 0
