"""The stateful adapter's snapshots and timers: what a restart hands back, and what it
starts again or lets go."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from chatwax.core.conversation import ConversationConfig, LlmCall, LlmResult
from chatwax.core.errors import ErrorCode
from chatwax.core.intake import Accepted, Forget
from chatwax.core.limits import LimitsConfig
from chatwax.core.replies import Reply
from chatwax.core.user import UnknownSnapshot, UserConfig
from chatwax.core.wire import ErrorEvent, ForgetRequest, PromptRequest, Usage
from chatwax.dataflow.logic import UserLogic
from chatwax.dataflow.metrics import Metrics

CFG = UserConfig(ConversationConfig(system_prompt="be brief", prompt_budget=200,
                                    provider="local"), retention_s=1000.0)


def _req(rid: str, prompt: str = "q", at: float = 1.0) -> Accepted:
    return Accepted(PromptRequest(rid, "alice", "c1", prompt, f"_INBOX.{rid}", at), at)


def _answered(logic: UserLogic, rid: str, prompt: str, answer: str) -> None:
    logic.on_item(_req(rid, prompt))
    logic.on_item(LlmResult(rid, "c1", answer, Usage(3, 4), "m", 10.0, 2.0, 5.0,
                            user_id="alice"))


def _metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def _resumed(logic: UserLogic, cfg: UserConfig = CFG, now: float = 2.0) -> UserLogic:
    """Bytewax pickles the snapshot and hands the unpickled value to the builder."""
    return UserLogic(cfg, _metrics(), pickle.loads(pickle.dumps(logic.snapshot())),
                     clock=lambda: now)


def test_a_resumed_user_answers_from_the_conversations_history() -> None:
    logic = UserLogic(CFG, _metrics(), None, clock=lambda: 2.0)
    _answered(logic, "r1", "my name is Ada", "hello Ada")
    resumed = _resumed(logic)
    assert resumed.notify_at() == datetime.fromtimestamp(2.0 + 1000.0, UTC)  # expiry only
    effects = resumed.on_item(_req("r2", "what is my name?"))[0]
    call = next(e for e in effects if isinstance(e, LlmCall))
    assert {"role": "user", "content": "my name is Ada"} in call.messages
    assert {"role": "assistant", "content": "hello Ada"} in call.messages


def test_a_call_cut_off_by_the_restart_is_started_again() -> None:
    logic = UserLogic(CFG, _metrics(), None)
    logic.on_item(_req("r1", "still thinking?"))  # the call is in flight
    resumed = _resumed(logic)
    when = resumed.notify_at()
    assert when is not None and when <= datetime.now(UTC)
    effects, _ = resumed.on_notify()
    assert [e.request.request_id for e in effects if isinstance(e, LlmCall)] == ["r1"]


def test_an_idle_user_leaves_state_and_recovery_when_the_timer_fires() -> None:
    logic = UserLogic(CFG, _metrics(), None, clock=lambda: 5.0)
    _answered(logic, "r1", "secret", "noted")
    later = _resumed(logic, now=2000.0)
    effects, discard = later.on_notify()
    assert effects == [] and discard is later.DISCARD  # gone from recovery too


def test_a_forgotten_user_leaves_no_snapshot_behind() -> None:
    logic = UserLogic(CFG, _metrics(), None)
    _answered(logic, "r1", "secret", "noted")
    resumed = _resumed(logic)
    _, discard = resumed.on_item(Forget(ForgetRequest("f1", "alice", "", "_INBOX.f1")))
    assert discard is resumed.DISCARD and resumed.state.empty


def test_a_prompt_read_again_after_a_restart_gets_the_same_admission() -> None:
    """Limits judge a prompt by when it was stored: replayed from the same snapshot after
    a restart, hours later, the refusal the user saw is the decision again."""
    cfg = UserConfig(CFG.conversation, LimitsConfig(prompts_per_minute=2))
    first = UserLogic(cfg, _metrics(), None)
    for rid in ("a", "b"):
        first.on_item(_req(rid, at=1_000.0))
    snapshot = pickle.loads(pickle.dumps(first.snapshot()))
    third = _req("c", at=1_001.0)

    def decision(logic: UserLogic) -> ErrorCode | None:
        out, _ = logic.on_item(third)
        got = out[0]
        return got.event.code if isinstance(got, Reply) and isinstance(
            got.event, ErrorEvent) else None

    assert decision(first) is ErrorCode.TOO_MANY_REQUESTS
    assert decision(UserLogic(cfg, _metrics(), snapshot)) is ErrorCode.TOO_MANY_REQUESTS


def test_an_unknown_snapshot_version_is_refused_clearly() -> None:
    with pytest.raises(UnknownSnapshot, match="this build reads version 2"):
        UserLogic(CFG, _metrics(), {"v": 3, "user": "alice"})
