"""Per-user limits: a token quota over a rolling window and a cap on unanswered prompts."""

from __future__ import annotations

from dataclasses import dataclass, field

from chatwax.core.errors import ErrorCode
from chatwax.core.intake import Accepted
from chatwax.core.protocol import Reply


@dataclass(frozen=True, slots=True)
class Release:
    """A request of `user_id` has ended; `tokens` it spent count against the quota."""

    user_id: str
    request_id: str
    tokens: int


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    token_quota: int = 0
    window_s: float = 86_400.0
    max_concurrent: int = 0
    stale_after_s: float = 900.0
    """An admitted request never released (its release was lost in a crash) stops
    counting after this long, so a user can never be locked out for good."""


@dataclass(slots=True)
class UserLimits:
    """One user's admitted-but-unanswered requests and recent token spending."""

    in_flight: dict[str, float] = field(default_factory=dict)
    spent: list[tuple[float, int]] = field(default_factory=list)

    def admit(self, item: Accepted, cfg: LimitsConfig, now: float) -> Accepted | Reply:
        req = item.request
        self.in_flight = {r: t for r, t in self.in_flight.items() if now - t < cfg.stale_after_s}
        self.spent = [(t, n) for t, n in self.spent if now - t < cfg.window_s]
        if req.request_id in self.in_flight:
            return item  # re-delivered: already admitted once
        used = sum(n for _, n in self.spent)
        if cfg.token_quota and used >= cfg.token_quota:
            retry_in = self.spent[0][0] + cfg.window_s - now if self.spent else cfg.window_s
            return Reply.error(
                req.reply_to, req.request_id, ErrorCode.QUOTA_EXCEEDED,
                f"token quota used up: {used} of {cfg.token_quota} tokens in the last "
                f"{_duration(cfg.window_s)}; try again in {_duration(retry_in)}",
            )
        if cfg.max_concurrent and len(self.in_flight) >= cfg.max_concurrent:
            return Reply.error(
                req.reply_to, req.request_id, ErrorCode.TOO_MANY_REQUESTS,
                f"{len(self.in_flight)} prompts are still being answered; the limit is "
                f"{cfg.max_concurrent} at once",
            )
        self.in_flight[req.request_id] = now
        return item

    def release(self, r: Release, now: float) -> None:
        self.in_flight.pop(r.request_id, None)
        if r.tokens:
            self.spent.append((now, r.tokens))

    @property
    def idle(self) -> bool:
        return not self.in_flight and not self.spent


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
