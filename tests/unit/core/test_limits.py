"""Per-user admission: token quota over a rolling window and concurrent prompts."""

from __future__ import annotations

import pytest

from chatwax.core.errors import ErrorCode
from chatwax.core.intake import Accepted
from chatwax.core.limits import LimitsConfig, Release, UserLimits
from chatwax.core.protocol import ErrorEvent, PromptRequest, Reply


def _req(rid: str) -> Accepted:
    return Accepted(PromptRequest(rid, "alice", "c", "q", f"_INBOX.{rid}", 0.0), 0.0)


def _code(out: Accepted | Reply) -> ErrorCode | None:
    if isinstance(out, Reply):
        assert isinstance(out.event, ErrorEvent)
        return out.event.code
    return None


def test_concurrency_limit_counts_unanswered_prompts() -> None:
    lim, cfg = UserLimits(), LimitsConfig(max_concurrent=2)
    assert _code(lim.admit(_req("a"), cfg, 0.0)) is None
    assert _code(lim.admit(_req("b"), cfg, 0.0)) is None
    assert _code(lim.admit(_req("c"), cfg, 0.0)) is ErrorCode.TOO_MANY_REQUESTS
    lim.release(Release("alice", "a", 10), 1.0)
    assert _code(lim.admit(_req("c"), cfg, 1.0)) is None


def test_token_quota_over_a_rolling_window() -> None:
    lim, cfg = UserLimits(), LimitsConfig(token_quota=100, window_s=60)
    lim.admit(_req("a"), cfg, 0.0)
    lim.release(Release("alice", "a", 100), 0.0)
    refused = lim.admit(_req("b"), cfg, 30.0)
    assert _code(refused) is ErrorCode.QUOTA_EXCEEDED
    assert isinstance(refused, Reply) and "100 of 100" in refused.event.message
    assert "try again in 30 s" in refused.event.message  # type: ignore[union-attr]
    assert _code(lim.admit(_req("b"), cfg, 61.0)) is None  # the spend left the window


def test_redelivered_prompt_is_admitted_once() -> None:
    lim, cfg = UserLimits(), LimitsConfig(max_concurrent=1)
    assert _code(lim.admit(_req("a"), cfg, 0.0)) is None
    assert _code(lim.admit(_req("a"), cfg, 0.0)) is None  # same request, no new slot
    assert len(lim.in_flight) == 1


def test_a_lost_release_cannot_lock_a_user_out_forever() -> None:
    lim, cfg = UserLimits(), LimitsConfig(max_concurrent=1, stale_after_s=100)
    lim.admit(_req("a"), cfg, 0.0)
    assert _code(lim.admit(_req("b"), cfg, 50.0)) is ErrorCode.TOO_MANY_REQUESTS
    assert _code(lim.admit(_req("b"), cfg, 150.0)) is None


def test_limits_off_admit_everything_and_idle_state_is_dropped() -> None:
    lim, cfg = UserLimits(), LimitsConfig()
    for i in range(50):
        assert _code(lim.admit(_req(f"r{i}"), cfg, 0.0)) is None
    for i in range(50):
        lim.release(Release("alice", f"r{i}", 0), 0.0)
    assert lim.idle


def _conv(rid: str, conversation: str) -> Accepted:
    return Accepted(PromptRequest(rid, "alice", conversation, "q", f"_INBOX.{rid}", 0.0), 0.0)


def test_prompt_rate_allows_a_burst_then_one_per_interval() -> None:
    lim, cfg = UserLimits(), LimitsConfig(prompts_per_minute=6)
    assert [_code(lim.admit(_req(f"b{i}"), cfg, 0.0)) for i in range(6)] == [None] * 6
    refused = lim.admit(_req("b6"), cfg, 0.0)
    assert _code(refused) is ErrorCode.TOO_MANY_REQUESTS
    assert isinstance(refused, Reply) and "6 a minute" in refused.event.message
    assert "try again in 10 s" in refused.event.message  # type: ignore[union-attr]
    assert _code(lim.admit(_req("b7"), cfg, 9.0)) is ErrorCode.TOO_MANY_REQUESTS
    assert _code(lim.admit(_req("b8"), cfg, 10.5)) is None  # one refilled after 10 s
    assert _code(lim.admit(_req("b9"), cfg, 10.5)) is ErrorCode.TOO_MANY_REQUESTS


def test_a_refilled_bucket_is_not_state() -> None:
    lim, cfg = UserLimits(), LimitsConfig(prompts_per_minute=60)
    lim.admit(_req("a"), cfg, 0.0)
    lim.release(Release("alice", "a", 0), 0.5)
    lim.settle(cfg, 0.5)
    assert not lim.idle  # still one prompt short of a full bucket
    lim.settle(cfg, 2.0)
    assert lim.idle


def test_conversations_per_user_are_capped_and_forget_frees_one() -> None:
    lim, cfg = UserLimits(), LimitsConfig(max_conversations=2)
    assert _code(lim.admit(_conv("a", "c1"), cfg, 0.0)) is None
    assert _code(lim.admit(_conv("b", "c2"), cfg, 0.0)) is None
    assert _code(lim.admit(_conv("c", "c1"), cfg, 0.0)) is None  # an old one goes on
    refused = lim.admit(_conv("d", "c3"), cfg, 0.0)
    assert _code(refused) is ErrorCode.CONVERSATION_LIMIT
    lim.forget("c1")
    assert _code(lim.admit(_conv("e", "c3"), cfg, 0.0)) is None
    assert lim.conversations == {"c2", "c3"}


def test_snapshots_are_plain_data_and_round_trip() -> None:
    lim, cfg = UserLimits(), LimitsConfig(prompts_per_minute=5, max_conversations=3)
    lim.admit(_conv("a", "c1"), cfg, 10.0)
    lim.release(Release("alice", "a", 7), 11.0)
    snap = lim.to_snapshot()
    assert type(snap) is dict and snap["v"] == 1
    assert UserLimits.from_snapshot(snap) == lim


def test_an_earlier_builds_object_is_read_and_unknown_snapshots_are_refused() -> None:
    old = UserLimits({"r": 1.0}, [(1.0, 5)])
    assert UserLimits.from_snapshot(old) == UserLimits({"r": 1.0}, [(1.0, 5)])
    for bad in ({"v": 99}, ("not", "limits"), b"bytes"):
        with pytest.raises(ValueError, match="snapshot"):
            UserLimits.from_snapshot(bad)
