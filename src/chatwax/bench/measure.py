"""What a scenario run measured, and the two ways it is measured: latency percentiles from
the client's samples, CPU and peak memory of a process from /proc."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from chatwax.bench.scenarios import Scenario


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
    """p50, p95, p99 (nearest rank) and the mean, in the units given, to 0.01."""
    if not values:
        return {}
    values = sorted(values)

    def at(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]

    return {"p50": round(at(0.50), 2), "p95": round(at(0.95), 2), "p99": round(at(0.99), 2),
            "mean": round(statistics.fmean(values), 2)}


def proc_stats(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and peak RSS in MB, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    hwm = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmHWM"))
    return cpu, int(hwm.split()[1]) / 1024
