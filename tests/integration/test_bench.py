"""A smoke run of the benchmark harness: it drives a real stack and produces a report.
(Numbers are the benchmark's business, not a test's: nothing here is timed.)"""

from __future__ import annotations

from pathlib import Path

from chatwax.bench.measure import Result
from chatwax.bench.report import plot, table
from chatwax.bench.runner import run_scenario
from chatwax.bench.scenarios import Scenario


def test_bench_harness_reports_throughput_latency_and_resources(tmp_path: Path) -> None:
    sc = Scenario("smoke", rate=5, processes=1, conversations=4)
    result = run_scenario(sc, duration=2.0, latency=0.05, tokens=10)
    assert isinstance(result, Result)
    assert result.sent >= 8 and result.answered == result.sent
    assert result.errors == 0 and result.unanswered == 0
    assert set(result.e2e_ms) == {"p50", "p95", "p99", "mean"}
    assert result.e2e_ms["p50"] >= 50  # at least the server's own latency
    assert len(result.cpu_s) == 1 and result.peak_rss_mb[0] > 10
    assert result.steady > 0 and result.cpu_per_1000 > 0
    text = table([result])
    assert text.splitlines()[0].startswith("scenario") and "smoke" in text
    plot([result], tmp_path / "bench.png")  # writes a PNG when matplotlib is installed


def test_bench_measures_state_per_idle_conversation() -> None:
    from chatwax.bench.memory import conversation_memory

    per_conversation = conversation_memory(2000)
    assert 100 < per_conversation < 100_000  # a measurement was made, of plausible size


def test_restart_measurement_resumes_seeded_conversations() -> None:
    """The seeded store is what a real cluster resumes from: the first prompt in a seeded
    conversation is answered as its second turn, with its first turn as history."""
    from chatwax.bench.restart import restart_time

    result = restart_time(300)
    assert result.conversations == 300
    assert result.turn == 2
    assert result.store_mb > 0 and len(result.peak_rss_mb) == 2
    assert result.answered_after_s > 0


def test_a_scenario_runs_another_commits_dataflow_side_by_side() -> None:
    """`--before REF`: the dataflow processes run that commit's code, checked out beside."""
    from chatwax.bench.builds import Build, checkout

    with checkout("HEAD") as src:
        assert (src / "chatwax" / "dataflow" / "process.py").exists()
        sc = Scenario("smoke", rate=5, processes=1, conversations=2)
        result = run_scenario(sc, duration=1.5, latency=0.05, tokens=5,
                              build=Build("before (HEAD)", src))
    assert not src.exists()  # the checkout is gone afterwards
    assert result.build == "before (HEAD)" and result.answered == result.sent > 0
    assert "before (HEAD)" in table([result])
