"""Per-user limits: a token quota over a rolling window, a cap on unanswered prompts, a
prompt rate (a token bucket) and a cap on the conversations a user keeps in state.

These are what keeps one user from taking what everyone shares: the LLM's time and the
dataflow's memory and recovery store. Each refusal is an error reply saying what the limit
is and, where waiting helps, when to try again. The caller passes the time: the time a
prompt was stored, so that a prompt read again after a restart is judged as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chatwax.core.errors import ErrorCode
from chatwax.core.intake import Accepted
from chatwax.core.replies import Reply


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    token_quota: int = 0
    window_s: float = 86_400.0
    max_concurrent: int = 0
    prompts_per_minute: int = 0
    max_conversations: int = 0


@dataclass(slots=True)
class Allowance:
    """One user's recent token spending and prompt rate allowance."""

    spent: list[tuple[float, int]] = field(default_factory=list)
    bucket: float | None = None
    """Prompts the user may still send at once; None: a full bucket."""
    bucket_at: float = 0.0

    def admit(self, item: Accepted, cfg: LimitsConfig, now: float, *, waiting: int,
              conversations: int, new: bool) -> Reply | None:
        """None to admit `item`, else the refusal. `waiting`: the user's prompts not
        answered yet; `conversations`: how many the user keeps; `new`: whether `item`
        starts one more."""
        self.spent = [(t, n) for t, n in self.spent if now - t < cfg.window_s]
        refused = self._rate(cfg, now)
        if refused:
            return _refuse(item, ErrorCode.TOO_MANY_REQUESTS, refused)
        if new and cfg.max_conversations and conversations >= cfg.max_conversations:
            return _refuse(item, ErrorCode.CONVERSATION_LIMIT,
                           f"you have {conversations} conversations, the most one user may "
                           "keep; continue one of them, or have the operator forget old ones")
        used = sum(n for _, n in self.spent)
        if cfg.token_quota and used >= cfg.token_quota:
            retry_in = self.spent[0][0] + cfg.window_s - now if self.spent else cfg.window_s
            return _refuse(item, ErrorCode.QUOTA_EXCEEDED,
                           f"token quota used up: {used} of {cfg.token_quota} tokens in the "
                           f"last {_duration(cfg.window_s)}; try again in "
                           f"{_duration(retry_in)}")
        if cfg.max_concurrent and waiting >= cfg.max_concurrent:
            return _refuse(item, ErrorCode.TOO_MANY_REQUESTS,
                           f"{waiting} prompts are still being answered; the limit is "
                           f"{cfg.max_concurrent} at once")
        self._take(cfg, now)
        return None

    def _refill(self, cfg: LimitsConfig, now: float) -> float:
        rate = cfg.prompts_per_minute
        left = rate if self.bucket is None else self.bucket
        return min(float(rate), left + max(0.0, now - self.bucket_at) * rate / 60.0)

    def _rate(self, cfg: LimitsConfig, now: float) -> str | None:
        """A token bucket: `prompts_per_minute` at once, refilled at that rate."""
        rate = cfg.prompts_per_minute
        if not rate:
            return None
        left = self._refill(cfg, now)
        if left >= 1.0:
            return None
        self.bucket, self.bucket_at = left, max(now, self.bucket_at)
        return (f"too many prompts: the limit is {rate} a minute; try again in "
                f"{_duration((1.0 - left) * 60.0 / rate)}")

    def _take(self, cfg: LimitsConfig, now: float) -> None:
        if not cfg.prompts_per_minute:
            return
        self.bucket = self._refill(cfg, now) - 1.0
        self.bucket_at = max(now, self.bucket_at)

    def spend(self, tokens: int, now: float) -> None:
        if tokens:
            self.spent.append((now, tokens))

    def to_snapshot(self) -> dict[str, Any]:
        return {"spent": list(self.spent), "bucket": self.bucket, "bucket_at": self.bucket_at}

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> Allowance:
        return cls([(float(t), int(n)) for t, n in snap["spent"]],
                   None if snap["bucket"] is None else float(snap["bucket"]),
                   float(snap["bucket_at"]))


def _refuse(item: Accepted, code: ErrorCode, message: str) -> Reply:
    req = item.request
    return Reply.error(req.reply_to, req.request_id, code, message)


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
