"""The stateful adapters' snapshots: what a restart hands back, and what it restarts."""

from __future__ import annotations

import pickle

from prometheus_client import CollectorRegistry

from chatwax.core.conversation import Conversation, ConversationConfig, LlmCall, LlmResult
from chatwax.core.intake import Accepted, Forget
from chatwax.core.protocol import ForgetRequest, PromptRequest, Usage
from chatwax.dataflow.logic import ConversationLogic
from chatwax.dataflow.metrics import Metrics

CFG = ConversationConfig(system_prompt="be brief", prompt_budget=200, provider="local")


def _req(rid: str, prompt: str = "q") -> Accepted:
    return Accepted(PromptRequest(rid, "alice", "c1", prompt, f"_INBOX.{rid}", 1.0), 1.0)


def _answered(logic: ConversationLogic, rid: str, prompt: str, answer: str) -> None:
    logic.on_item(_req(rid, prompt))
    logic.on_item(LlmResult(rid, "c1", answer, Usage(3, 4), "m", 10.0, 2.0, 5.0))


def _metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def test_a_resumed_conversation_is_the_one_snapshotted_and_answers_from_its_history() -> None:
    logic = ConversationLogic(CFG, _metrics(), None)
    _answered(logic, "r1", "my name is Ada", "hello Ada")
    snap = logic.snapshot()
    assert snap[0] is False  # nothing in flight
    # Bytewax pickles the snapshot and hands the unpickled value to the builder.
    resumed = ConversationLogic(CFG, _metrics(), pickle.loads(pickle.dumps(snap)))
    assert resumed.notify_at() is None  # nothing to restart
    assert resumed.snapshot() == snap  # untouched: handed back as it came
    effects = resumed.on_item(_req("r2", "what is my name?"))[0]
    call = next(e for e in effects if isinstance(e, LlmCall))
    assert {"role": "user", "content": "my name is Ada"} in call.messages
    assert {"role": "assistant", "content": "hello Ada"} in call.messages
    assert resumed.state is not None and resumed.state.turns == 1


def test_a_call_cut_off_by_the_restart_is_started_again() -> None:
    logic = ConversationLogic(CFG, _metrics(), None)
    logic.on_item(_req("r1", "still thinking?"))  # the call is in flight
    snap = logic.snapshot()
    assert snap[0] is True
    resumed = ConversationLogic(CFG, _metrics(), pickle.loads(pickle.dumps(snap)))
    assert resumed.notify_at() is not None
    effects, _ = resumed.on_notify()
    assert [e.request.request_id for e in effects if isinstance(e, LlmCall)] == ["r1"]


def test_snapshots_of_releases_that_stored_conversation_objects_still_resume() -> None:
    old = Conversation(owner="alice")
    old.on_prompt(_req("r1"), CFG)  # in flight when the old release stopped
    resumed = ConversationLogic(CFG, _metrics(), pickle.loads(pickle.dumps(old)))
    assert resumed.notify_at() is not None
    assert resumed.state is not None and resumed.state.in_flight == "r1"
    busy, packed = resumed.snapshot()  # written in the new form from now on
    assert busy is True and pickle.loads(packed).in_flight == "r1"


def test_a_forgotten_packed_conversation_leaves_no_snapshot_behind() -> None:
    logic = ConversationLogic(CFG, _metrics(), None)
    _answered(logic, "r1", "secret", "noted")
    resumed = ConversationLogic(CFG, _metrics(), logic.snapshot())
    _, discard = resumed.on_item(Forget(ForgetRequest("f1", "alice", "c1", "_INBOX.f1")))
    assert discard is resumed.DISCARD
    assert resumed.state is None


def test_a_prompt_read_again_after_a_restart_gets_the_same_admission() -> None:
    """Limits judge a prompt by when it was stored: replayed from the same snapshot after
    a restart, hours later, the refusal the user saw is the decision again."""
    from chatwax.core.errors import ErrorCode
    from chatwax.core.limits import LimitsConfig
    from chatwax.core.protocol import ErrorEvent, Reply
    from chatwax.dataflow.logic import UserLimitsLogic

    cfg = LimitsConfig(prompts_per_minute=2)
    first = UserLimitsLogic(cfg, _metrics(), None)
    for rid in ("a", "b"):
        first.on_item(Accepted(PromptRequest(rid, "alice", "c1", "q", f"_INBOX.{rid}", 1.0),
                               1_000.0))
    snapshot = pickle.loads(pickle.dumps(first.snapshot()))
    third = Accepted(PromptRequest("c", "alice", "c1", "q", "_INBOX.c", 1.0), 1_001.0)

    def decision(logic: UserLimitsLogic) -> ErrorCode | None:
        out, _ = logic.on_item(third)
        got = out[0]
        return got.event.code if isinstance(got, Reply) and isinstance(
            got.event, ErrorEvent) else None

    assert decision(first) is ErrorCode.TOO_MANY_REQUESTS
    assert decision(UserLimitsLogic(cfg, _metrics(), snapshot)) is ErrorCode.TOO_MANY_REQUESTS
