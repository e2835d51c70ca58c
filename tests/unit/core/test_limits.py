"""Per-user admission: token quota over a rolling window and concurrent prompts."""

from __future__ import annotations

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
