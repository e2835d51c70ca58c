"""How a dataflow process paces its own restarts when the cluster has to re-form."""

from __future__ import annotations

from chatwax.dataflow.restarts import MAX_DELAY_S, QUICK_S, RestartState


def test_a_run_that_lasted_restarts_at_once_and_forgets_earlier_trouble() -> None:
    delay, nxt = RestartState(quick=5, started_at=0).after(run_started=100, now=100 + QUICK_S)
    assert delay == 0 and nxt.quick == 0 and nxt.started_at == 100 + QUICK_S


def test_quick_failures_back_off_up_to_a_cap() -> None:
    state, delays = RestartState(), []
    for _ in range(10):
        delay, state = state.after(run_started=0, now=1)
        delays.append(delay)
    assert delays[:4] == [0.5, 1, 2, 4]
    assert max(delays) == MAX_DELAY_S and delays == sorted(delays)


def test_the_state_survives_exec_through_the_environment() -> None:
    state = RestartState(quick=3, started_at=1234.5)
    assert RestartState.from_env({"CHATWAX_RESTART_STATE": state.encode()}) == state
    assert RestartState.from_env({}) == RestartState()
    assert RestartState.from_env({"CHATWAX_RESTART_STATE": "garbage"}) == RestartState()
