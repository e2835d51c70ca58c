"""Per-user limits: a token quota over a rolling window, a cap on unanswered prompts, a
prompt rate (a token bucket) and a cap on the conversations a user keeps in state.

These are what keeps one user from taking what everyone shares: the LLM's time and the
dataflow's memory and recovery store. Each refusal is an error reply saying what the limit
is and, where waiting helps, when to try again.
"""

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
    prompts_per_minute: int = 0
    max_conversations: int = 0
    stale_after_s: float = 900.0
    """An admitted request never released (its release was lost in a crash) stops
    counting after this long, so a user can never be locked out for good."""


@dataclass(slots=True)
class UserLimits:
    """One user's admitted-but-unanswered requests, recent token spending, prompt rate
    allowance and conversations."""

    in_flight: dict[str, float] = field(default_factory=dict)
    spent: list[tuple[float, int]] = field(default_factory=list)
    allowance: float | None = None
    """Prompts the user may still send at once (the bucket); None: a full bucket."""
    allowance_at: float = 0.0
    conversations: set[str] = field(default_factory=set)

    def admit(self, item: Accepted, cfg: LimitsConfig, now: float) -> Accepted | Reply:
        req = item.request
        self.in_flight = {r: t for r, t in self.in_flight.items() if now - t < cfg.stale_after_s}
        self.spent = [(t, n) for t, n in self.spent if now - t < cfg.window_s]
        if req.request_id in self.in_flight:
            return item  # re-delivered: already admitted once
        refused = self._rate(item, cfg, now) or self._conversation_cap(item, cfg)
        if refused is not None:
            return refused
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
        if cfg.max_conversations:
            self.conversations.add(req.conversation_id)
        return item

    def _rate(self, item: Accepted, cfg: LimitsConfig, now: float) -> Reply | None:
        """A token bucket: `prompts_per_minute` at once, refilled at that rate."""
        rate = cfg.prompts_per_minute
        if not rate:
            return None
        left = rate if self.allowance is None else self.allowance
        left = min(float(rate), left + max(0.0, now - self.allowance_at) * rate / 60.0)
        self.allowance_at = now
        if left < 1.0:
            self.allowance = left
            req = item.request
            return Reply.error(
                req.reply_to, req.request_id, ErrorCode.TOO_MANY_REQUESTS,
                f"too many prompts: the limit is {rate} a minute; try again in "
                f"{_duration((1.0 - left) * 60.0 / rate)}",
            )
        self.allowance = left - 1.0
        return None

    def _conversation_cap(self, item: Accepted, cfg: LimitsConfig) -> Reply | None:
        req = item.request
        cap = cfg.max_conversations
        if not cap or req.conversation_id in self.conversations or len(self.conversations) < cap:
            return None
        return Reply.error(
            req.reply_to, req.request_id, ErrorCode.CONVERSATION_LIMIT,
            f"you have {len(self.conversations)} conversations, the most one user may keep; "
            "continue one of them, or have the operator forget old ones",
        )

    def forget(self, conversation_id: str) -> None:
        """A conversation is forgotten: it no longer counts, and neither does the user's
        recent spending or rate (they describe what was forgotten)."""
        self.conversations.discard(conversation_id)
        self.in_flight.clear()
        self.spent.clear()
        self.allowance = None

    def release(self, r: Release, now: float) -> None:
        self.in_flight.pop(r.request_id, None)
        if r.tokens:
            self.spent.append((now, r.tokens))

    @property
    def idle(self) -> bool:
        """Nothing worth keeping: a full bucket, no spending, nothing held."""
        return (not self.in_flight and not self.spent and not self.conversations
                and self.allowance is None)

    def settle(self, cfg: LimitsConfig, now: float) -> None:
        """Forget what no longer limits anything: a bucket refilled to full."""
        if self.allowance is not None and cfg.prompts_per_minute and (
                self.allowance + (now - self.allowance_at) * cfg.prompts_per_minute / 60.0
                >= cfg.prompts_per_minute):
            self.allowance = None

    def to_snapshot(self) -> dict[str, object]:
        """Plain data for recovery: a later build reads it without this class."""
        return {"v": 1, "in_flight": dict(self.in_flight), "spent": list(self.spent),
                "allowance": self.allowance, "allowance_at": self.allowance_at,
                "conversations": sorted(self.conversations)}

    @classmethod
    def from_snapshot(cls, snap: object) -> UserLimits:
        """Read a snapshot of this build, or the `UserLimits` object earlier builds kept."""
        if isinstance(snap, dict):
            if snap.get("v") != 1:
                raise ValueError(f"unknown user limits snapshot version {snap.get('v')!r}")
            return cls(dict(snap["in_flight"]), [(float(t), int(n)) for t, n in snap["spent"]],
                       snap["allowance"], float(snap["allowance_at"]),
                       set(snap["conversations"]))
        if isinstance(snap, cls):  # a release before plain snapshots: two fields
            return cls(dict(snap.in_flight), list(snap.spent))
        raise ValueError(f"not a user limits snapshot: {type(snap).__name__}")


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
