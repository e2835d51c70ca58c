"""What `chatwax bench` runs: the load scenarios, and which of them `--only` picks.

`--only TEXT` picks the scenarios whose name contains TEXT, in any case. The restart and
export measurements are not scenarios: `--only restart` and `--only export` name them, so
a filter meant for scenario names (`--only t`) never starts a 1,000,000-conversation
restart by accident.
"""

from __future__ import annotations

from dataclasses import dataclass


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


SCENARIOS = (
    Scenario("overhead 50/s", rate=50),
    Scenario("throughput 150/s", rate=150),
    Scenario("ceiling 300/s", rate=300),
    Scenario("sustained 300/s for 30 s", rate=300, duration=30),
    Scenario("1 process x 1 worker", rate=150, processes=1, workers=1),
    Scenario("1 process x 2 workers", rate=150, processes=1, workers=2),
    Scenario("tutorial baseline 50/s", rate=50, baseline=True),
)

RESTART = "restart"
EXPORT = "export"


@dataclass(frozen=True)
class Selection:
    """The scenarios and measurements one `chatwax bench` run makes."""

    scenarios: tuple[Scenario, ...]
    restart: bool
    """The restart measurement: by default, or with `--only restart`."""
    export: bool
    """The export measurement: only with `--only export` (it needs its own stream)."""


def select(only: str | None, scenarios: tuple[Scenario, ...] = SCENARIOS) -> Selection:
    """What `--only` picks: no filter (None or empty) runs every scenario and the restart."""
    if not only:
        return Selection(scenarios, restart=True, export=False)
    wanted = only.casefold()
    return Selection(tuple(sc for sc in scenarios if wanted in sc.name.casefold()),
                     restart=wanted == RESTART, export=wanted == EXPORT)
