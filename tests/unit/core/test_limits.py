"""Per-user admission: token quota, unanswered prompts, prompt rate, conversations."""

from __future__ import annotations

from chatwax.core.errors import ErrorCode
from chatwax.core.intake import Accepted
from chatwax.core.limits import Allowance, LimitsConfig
from chatwax.core.replies import Reply
from chatwax.core.wire import ErrorEvent, PromptRequest


def _req(rid: str) -> Accepted:
    return Accepted(PromptRequest(rid, "alice", "c", "q", f"_INBOX.{rid}", 0.0), 0.0)


def _admit(a: Allowance, cfg: LimitsConfig, now: float, waiting: int = 0,
           conversations: int = 0, new: bool = False) -> ErrorCode | None:
    got = a.admit(_req("x"), cfg, now, waiting=waiting, conversations=conversations, new=new)
    if got is None:
        return None
    assert isinstance(got, Reply) and isinstance(got.event, ErrorEvent)
    return got.event.code


def test_unanswered_prompts_are_capped() -> None:
    a, cfg = Allowance(), LimitsConfig(max_concurrent=2)
    assert _admit(a, cfg, 0.0, waiting=1) is None
    assert _admit(a, cfg, 0.0, waiting=2) is ErrorCode.TOO_MANY_REQUESTS


def test_token_quota_over_a_rolling_window() -> None:
    a, cfg = Allowance(), LimitsConfig(token_quota=100, window_s=60)
    a.spend(100, 0.0)
    refused = a.admit(_req("b"), cfg, 30.0, waiting=0, conversations=1, new=False)
    assert isinstance(refused, Reply) and isinstance(refused.event, ErrorEvent)
    assert refused.event.code is ErrorCode.QUOTA_EXCEEDED
    assert "100 of 100" in refused.event.message and "try again in 30 s" in refused.event.message
    assert _admit(a, cfg, 61.0) is None  # the spend left the window


def test_prompt_rate_allows_a_burst_then_one_per_interval() -> None:
    a, cfg = Allowance(), LimitsConfig(prompts_per_minute=6)
    assert [_admit(a, cfg, 0.0) for _ in range(6)] == [None] * 6
    refused = a.admit(_req("b6"), cfg, 0.0, waiting=0, conversations=0, new=False)
    assert isinstance(refused, Reply) and isinstance(refused.event, ErrorEvent)
    assert refused.event.code is ErrorCode.TOO_MANY_REQUESTS
    assert "6 a minute" in refused.event.message and "try again in 10 s" in refused.event.message
    assert _admit(a, cfg, 9.0) is ErrorCode.TOO_MANY_REQUESTS
    assert _admit(a, cfg, 10.5) is None  # one refilled after 10 s
    assert _admit(a, cfg, 10.5) is ErrorCode.TOO_MANY_REQUESTS


def test_the_bucket_refills_to_the_rate_and_no_further() -> None:
    a, cfg = Allowance(), LimitsConfig(prompts_per_minute=60)
    assert _admit(a, cfg, 0.0) is None
    assert a.bucket == 59.0
    assert _admit(a, cfg, 3600.0) is None  # an hour later: full (60), then one taken
    assert a.bucket == 59.0


def test_a_new_conversation_past_the_cap_is_refused_an_old_one_goes_on() -> None:
    a, cfg = Allowance(), LimitsConfig(max_conversations=2)
    assert _admit(a, cfg, 0.0, conversations=2, new=False) is None
    assert _admit(a, cfg, 0.0, conversations=2, new=True) is ErrorCode.CONVERSATION_LIMIT
    assert _admit(a, cfg, 0.0, conversations=1, new=True) is None


def test_limits_off_admit_everything() -> None:
    a, cfg = Allowance(), LimitsConfig()
    a.spend(10**9, 0.0)
    assert all(_admit(a, cfg, 0.0, waiting=10**6, conversations=10**6, new=True) is None
               for _ in range(50))


def test_snapshots_are_plain_data_and_round_trip() -> None:
    a, cfg = Allowance(), LimitsConfig(prompts_per_minute=5)
    _admit(a, cfg, 10.0)
    a.spend(7, 11.0)
    snap = a.to_snapshot()
    assert type(snap) is dict
    assert Allowance.from_snapshot(snap) == a
