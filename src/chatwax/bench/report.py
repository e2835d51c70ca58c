"""What `chatwax bench` shows and keeps: the results table, the export table, the restart
line, `bench.json` and the plot `bench.png`."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from chatwax.bench.export import ExportRun
from chatwax.bench.measure import Result
from chatwax.bench.restart import RestartResult


def table(results: list[Result]) -> str:
    """One row per scenario run, columns aligned; `-` where nothing was measured."""
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


def export_table(runs: list[ExportRun]) -> str:
    """One row per export run: format, size, rate and the exporter's peak memory."""
    lines = ["format        conversations  records  seconds  records/s  MB/s  output MB  "
             "peak RSS MB"]
    for r in runs:
        lines.append(f"{r.format:<13} {r.conversations:>13,} {r.records:>8,} {r.seconds:>8} "
                     f"{r.records_per_s:>10,} {r.mb_per_s:>5} {r.output_mb:>10} "
                     f"{r.peak_rss_mb:>12}")
    return "\n".join(lines)


def restart_line(restart: RestartResult) -> str:
    """The restart measurement in one line."""
    return (f"restart: answered {restart.answered_after_s} s after start (turn "
            f"{restart.turn} of a seeded conversation); recovery store {restart.store_mb} MB; "
            f"peak RSS per process {' + '.join(map(str, restart.peak_rss_mb))} MB")


def write_json(path: Path, results: list[Result], memory: float,
               restart: RestartResult | None, exports: list[ExportRun]) -> None:
    """Everything the run measured, for comparing runs later."""
    path.write_text(json.dumps(
        {"scenarios": [{**asdict(r), "cpu_per_1000": r.cpu_per_1000} for r in results],
         "bytes_per_idle_conversation": memory,
         "restart": asdict(restart) if restart else None,
         "export": [asdict(e) for e in exports]}, indent=2))


def plot(results: list[Result], path: Path) -> bool:
    """Throughput and overhead bars per scenario run; False without matplotlib or results."""
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
