"""The order children stop in, and how often a dead dataflow process may be restarted."""

from __future__ import annotations

from typing import Any, cast

from chatwax.dev.supervise import Child, RestartBudget, stop_order


def child(name: str, dataflow: bool = False) -> Child:
    return Child(name, cast(Any, None), dataflow)


def test_the_last_started_stop_first_and_the_dataflow_processes_together() -> None:
    children = [child("nats"), child("model"), child("d0", True), child("d1", True),
                child("prometheus"), child("frontend")]
    assert [[c.name for c in group] for group in stop_order(children)] == [
        ["frontend"], ["prometheus"], ["d1", "d0"], ["model"], ["nats"]]
    assert stop_order([]) == []


def test_restarts_are_limited_within_a_sliding_window() -> None:
    budget = RestartBudget(most=2, window_s=60.0)
    assert budget.take(0.0) and budget.take(10.0)
    assert not budget.take(59.0)  # two in the last minute already
    assert budget.take(60.0)  # the first has left the window
    assert not budget.take(69.0)
    assert budget.take(130.0)
    assert not RestartBudget(most=0, window_s=60.0).take(0.0)
