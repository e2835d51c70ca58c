"""A whole `chatwax bench` run, in order: the scenarios (each build side by side), the state
per idle conversation, the restart and export measurements, then the report.

For each scenario it starts the echo server (fixed latency, answers padded to N tokens),
a `chatwax up --no-ui` stack, and sends prompts at a fixed rate over many conversations,
then reports throughput, end-to-end latency, overhead (end-to-end minus the server's own
time), time-to-first-token overhead, errors, and CPU and peak RSS per dataflow process.
The tutorial's design runs in the same harness as the baseline.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from chatwax.bench.builds import NOW, Build, checkout
from chatwax.bench.export import ExportRun, export_rate
from chatwax.bench.measure import Result
from chatwax.bench.memory import conversation_memory
from chatwax.bench.report import export_table, plot, restart_line, table, write_json
from chatwax.bench.restart import RestartResult, restart_time
from chatwax.bench.runner import run_scenario
from chatwax.bench.scenarios import Scenario, select


@dataclass(frozen=True)
class Options:
    """What `chatwax bench` was asked for (see its `--help`)."""

    duration: float
    latency: float
    tokens: int
    only: str | None
    out: Path
    restart_conversations: int = 100_000
    export_conversations: int = 20_000
    profile: bool = False
    before: str | None = None
    sustained: float | None = None
    """Seconds for the sustained scenario instead of its own (`--quick`)."""


def run_scenarios(scenarios: tuple[Scenario, ...], opts: Options) -> list[Result]:
    """Each scenario with this checkout's dataflow, and first with `--before`'s if given
    (the tutorial baseline is the same code in both, so it runs once)."""
    builds = [NOW]
    with contextlib.ExitStack() as cleanup:
        if opts.before:
            builds.insert(0, Build(f"before ({opts.before})",
                                   cleanup.enter_context(checkout(opts.before))))
        results = []
        for sc in scenarios:
            if opts.sustained and sc.duration:
                sc = dataclasses.replace(sc, duration=opts.sustained)
            for build in ([NOW] if sc.baseline else builds):
                print(f"running: {sc.name} [{build.label}] ({sc.duration or opts.duration:g} s)",
                      flush=True)
                results.append(run_scenario(sc, opts.duration, opts.latency, opts.tokens,
                                            opts.out / "profiles" if opts.profile else None,
                                            build))
    return results


def measure_restart(conversations: int) -> RestartResult:
    """Time a restart with `conversations` in recovery, and say how it went."""
    print(f"running: restart with {conversations:,} conversations in recovery", flush=True)
    restart = restart_time(conversations)
    print(restart_line(restart))
    return restart


def measure_export(conversations: int) -> list[ExportRun]:
    """Time `chatwax export` on a stream of `conversations`, and show the table."""
    print(f"running: chatwax export of {conversations:,} conversations", flush=True)
    exports = export_rate(conversations)
    print(export_table(exports))
    return exports


def run(opts: Options) -> int:
    """The scenarios `--only` picks, then the restart and export measurements it picks;
    the report goes to stdout and `opts.out`."""
    chosen = select(opts.only)
    results = run_scenarios(chosen.scenarios, opts)
    if results:
        print(table(results))
    memory = conversation_memory()
    print(f"state per idle conversation beyond its history text: {memory} bytes")
    restart = None
    if opts.restart_conversations and chosen.restart:
        restart = measure_restart(opts.restart_conversations)
    exports = []
    if opts.export_conversations and chosen.export:
        exports = measure_export(opts.export_conversations)
    opts.out.mkdir(parents=True, exist_ok=True)
    write_json(opts.out / "bench.json", results, memory, restart, exports)
    if plot(results, opts.out / "bench.png"):
        print(f"plot: {opts.out / 'bench.png'}")
    return 0
