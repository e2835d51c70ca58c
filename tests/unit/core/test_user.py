"""One user's state without I/O: admission, conversations, forget, lifetime, snapshots."""

from __future__ import annotations

import pickle

import pytest

from chatwax.core.conversation import Answered, ConversationConfig, LlmCall, LlmResult
from chatwax.core.errors import ErrorCode
from chatwax.core.intake import Accepted, Forget
from chatwax.core.limits import LimitsConfig
from chatwax.core.replies import Reply
from chatwax.core.user import UnknownSnapshot, UserConfig, UserState
from chatwax.core.wire import AckEvent, ErrorEvent, ForgetRequest, PromptRequest, Usage

DAY = 86_400.0
CFG = UserConfig(ConversationConfig("be brief", 400, "local"), retention_s=30 * DAY)


def _prompt(rid: str, conv: str = "c1", at: float = 0.0, text: str = "q") -> Accepted:
    return Accepted(PromptRequest(rid, "alice", conv, text, f"_INBOX.{rid}", at), at)


def _result(rid: str, conv: str = "c1", answer: str | None = "a") -> LlmResult:
    return LlmResult(rid, conv, answer, Usage(3, 4), "m", 10.0, 2.0, 5.0,
                     None if answer else ErrorCode.LLM_TIMEOUT, user_id="alice")


def _turn(user: UserState, rid: str, conv: str = "c1", at: float = 0.0,
          cfg: UserConfig = CFG) -> list[object]:
    started = user.on_prompt(_prompt(rid, conv, at), cfg, at)
    assert [type(e) for e in started] == [LlmCall]
    return list(user.on_result(_result(rid, conv), cfg, at))


def _restored(user: UserState) -> UserState:
    return UserState.from_snapshot(pickle.loads(pickle.dumps(user.snapshot())))


def test_a_turn_is_admitted_called_and_answered_by_one_state() -> None:
    user = UserState("alice")
    (answered,) = _turn(user, "r1")
    assert isinstance(answered, Answered)
    assert answered.transcript.turn == 1 and answered.final.subject == "_INBOX.r1"
    assert user.allowance.spent == [(0.0, 7)]  # the quota counts the turn's tokens
    conv = user.get("c1")
    assert conv is not None and conv.turns == 1


def test_conversations_rest_packed_and_come_back_with_their_history() -> None:
    user = UserState("alice")
    _turn(user, "r1", "c1")
    _turn(user, "r2", "c2")
    back = _restored(user)
    assert back.live == {} and set(back.packed) == {"c1", "c2"}
    (call,) = back.on_prompt(_prompt("r3", "c1", text="again"), CFG, 1.0)
    assert isinstance(call, LlmCall)
    assert [m["content"] for m in call.messages[1:]] == ["q", "a", "again"]
    assert set(back.live) == {"c1"}  # only what was used is unpacked


def test_a_call_in_flight_at_a_snapshot_is_started_again_after_a_restart() -> None:
    user = UserState("alice")
    user.on_prompt(_prompt("r1"), CFG, 0.0)
    back = _restored(user)
    assert back.restart_due
    (call,) = back.restart_in_flight(CFG)
    assert isinstance(call, LlmCall) and call.request.request_id == "r1"
    assert not back.restart_due


def test_a_prompt_read_again_is_not_charged_twice() -> None:
    cfg = UserConfig(CFG.conversation, LimitsConfig(prompts_per_minute=1))
    user = UserState("alice")
    assert isinstance(user.on_prompt(_prompt("r1"), cfg, 0.0)[0], LlmCall)
    assert user.on_prompt(_prompt("r1"), cfg, 0.0) == []  # queued already: no refusal
    refused = user.on_prompt(_prompt("r2"), cfg, 0.0)[0]
    assert isinstance(refused, Reply) and isinstance(refused.event, ErrorEvent)
    assert refused.event.code is ErrorCode.TOO_MANY_REQUESTS


def test_unanswered_prompts_count_across_conversations_packed_or_not() -> None:
    cfg = UserConfig(CFG.conversation, LimitsConfig(max_concurrent=2))
    user = UserState("alice")
    user.on_prompt(_prompt("r1", "c1"), cfg, 0.0)
    back = _restored(user)  # c1's waiting prompt is counted from its packed entry
    back.on_prompt(_prompt("r2", "c2"), cfg, 0.0)
    refused = back.on_prompt(_prompt("r3", "c3"), cfg, 0.0)[0]
    assert isinstance(refused, Reply) and isinstance(refused.event, ErrorEvent)
    assert refused.event.code is ErrorCode.TOO_MANY_REQUESTS


def test_forget_drops_every_conversation_the_state_holds_and_says_how_many() -> None:
    user = UserState("alice")
    _turn(user, "r1", "c1")
    _turn(user, "r2", "c2")
    user = _restored(user)
    user.on_prompt(_prompt("r3", "c2"), CFG, 0.0)  # in flight
    user.on_prompt(_prompt("r4", "c2"), CFG, 0.0)  # waiting
    effects = user.forget(Forget(ForgetRequest("f1", "alice", "", "_INBOX.f1")))
    deleted = [e.subject for e in effects if isinstance(e, Reply)
               and isinstance(e.event, ErrorEvent)
               and e.event.code is ErrorCode.CONVERSATION_DELETED]
    assert deleted == ["_INBOX.r3", "_INBOX.r4"]
    ack = effects[-1]
    assert isinstance(ack, Reply) and isinstance(ack.event, AckEvent)
    assert ack.event.details == {"conversations": 2, "turns": 2, "waiting": 2}
    assert user.empty and user.allowance.spent == []
    # The same conversation id later starts empty: nothing of the old history comes back.
    (call,) = user.on_prompt(_prompt("r5", "c1", text="hello?"), CFG, 1.0)
    assert isinstance(call, LlmCall) and call.messages[1:] == [
        {"role": "user", "content": "hello?"}]


def test_forget_of_one_conversation_keeps_the_others() -> None:
    user = UserState("alice")
    _turn(user, "r1", "c1")
    _turn(user, "r2", "c2")
    user.forget(Forget(ForgetRequest("f1", "alice", "c1", "_INBOX.f1")))
    assert user.conversation_ids() == {"c2"} and user.allowance.spent


def test_idle_conversations_leave_after_the_retention_age_busy_ones_stay() -> None:
    user = UserState("alice")
    _turn(user, "r1", "old", at=0.0)
    user.on_prompt(_prompt("r2", "busy", at=0.0), CFG, 0.0)  # its call never came back
    _turn(user, "r3", "recent", at=20 * DAY)
    assert user.next_expiry(CFG) == 30 * DAY  # "old"; "busy" waits for its result
    assert user.expire(CFG, 29 * DAY) == 0
    assert user.expire(CFG, 30 * DAY) == 1
    assert user.conversation_ids() == {"busy", "recent"}
    assert user.expire(CFG, 50 * DAY) == 1
    assert user.conversation_ids() == {"busy"}
    assert user.next_expiry(CFG) is None  # no timer spins on a call still out
    assert UserState("x").next_expiry(UserConfig(CFG.conversation)) is None  # 0: forever


def test_a_year_of_traffic_holds_only_the_recent_conversations() -> None:
    """365 days in compressed time: every day 40 new conversations of one turn each, the
    timer expiring what is past the 30-day retention. State grows for 30 days, then stays
    flat: bounded by recent conversations, not by every conversation ever held."""
    user = UserState("alice")
    held, snapshot_bytes = [], []
    for day in range(365):
        now = day * DAY
        for i in range(40):
            _turn(user, f"d{day}-{i}", f"c{day}-{i}", at=now)
        due = user.next_expiry(CFG)
        while due is not None and due <= now:  # the timer fires at `due`
            user.expire(CFG, due)
            due = user.next_expiry(CFG)
        held.append(user.count())
        snapshot_bytes.append(len(pickle.dumps(user.snapshot())))
    assert max(held) == 30 * 40  # never more than the retention's worth
    assert held[-1] == held[100] == 30 * 40
    assert snapshot_bytes[-1] <= snapshot_bytes[60] * 1.05  # flat after the first month


def test_a_snapshot_of_an_unknown_version_is_refused_by_name() -> None:
    with pytest.raises(UnknownSnapshot, match=r"version 7.*reads version 2"):
        UserState.from_snapshot({"v": 7})
    with pytest.raises(UnknownSnapshot, match="'tuple'"):
        UserState.from_snapshot((False, b"an older build's conversation"))
