"""`chatwax bench --only`: the scenarios whose name holds the text, in any case; the
restart and export measurements only when named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chatwax import cli
from chatwax.bench import suite
from chatwax.bench.measure import Result
from chatwax.bench.restart import RestartResult
from chatwax.bench.scenarios import SCENARIOS, Scenario, select


def names(only: str | None) -> list[str]:
    return [sc.name for sc in select(only).scenarios]


def test_a_filter_for_scenario_names_never_starts_the_restart() -> None:
    chosen = select("t")
    assert names("t") == ["throughput 150/s", "sustained 300/s for 30 s",
                          "tutorial baseline 50/s"]
    assert not chosen.restart and not chosen.export


def test_the_text_is_looked_for_in_the_name_in_any_case() -> None:
    assert names("CEILING") == ["ceiling 300/s"]
    assert names("300/s") == ["ceiling 300/s", "sustained 300/s for 30 s"]
    assert names("overhead 50/s") == ["overhead 50/s"]
    assert names("ceiling 300/s and more") == []  # the text in the name, not the reverse


def test_restart_and_export_run_alone_when_named() -> None:
    restart, export = select("restart"), select("Export")
    assert restart.scenarios == () and restart.restart and not restart.export
    assert export.scenarios == () and export.export and not export.restart


@pytest.mark.parametrize("only", [None, ""])
def test_no_filter_runs_every_scenario_and_the_restart(only: str | None) -> None:
    chosen = select(only)
    assert chosen.scenarios == SCENARIOS and chosen.restart and not chosen.export


def test_chatwax_bench_only_runs_what_the_filter_picks(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The command end to end, with the measurements themselves stubbed out."""
    ran: list[str] = []

    def scenario(sc: Scenario, *args: Any) -> Result:
        ran.append(sc.name)
        return Result(sc, sent=1, answered=1)

    def restart(conversations: int) -> RestartResult:
        ran.append("restart")
        return RestartResult(conversations, 0.0, 0.0, 0.0, 2, [])

    monkeypatch.setattr(suite, "run_scenario", scenario)
    monkeypatch.setattr(suite, "restart_time", restart)
    monkeypatch.setattr(suite, "export_rate", lambda n: ran.append("export") or [])
    monkeypatch.setattr(suite, "conversation_memory", lambda: 1.0)
    monkeypatch.setattr(suite, "plot", lambda results, path: False)

    assert cli.main(["bench", "--only", "T", "--out", str(tmp_path)]) == 0
    assert ran == ["throughput 150/s", "sustained 300/s for 30 s", "tutorial baseline 50/s"]
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["restart"] is None and len(report["scenarios"]) == 3

    ran.clear()
    assert cli.main(["bench", "--only", "restart", "--restart-conversations", "10",
                     "--out", str(tmp_path)]) == 0
    assert ran == ["restart"]
