"""Bytewax's stateful operator around the pure per-user state (`chatwax.core.user`).

The adapter adds what only a running dataflow has: the clock, snapshots for recovery,
timers (calls to start again after a restart, conversations to let go after the retention
age), and metrics. The decisions live in `chatwax.core`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import bytewax.operators as op

from chatwax.core.conversation import Effect, LlmResult, SummaryResult
from chatwax.core.intake import Accepted, Forget
from chatwax.core.replies import Reply
from chatwax.core.user import UserConfig, UserState
from chatwax.core.wire import ErrorEvent
from chatwax.dataflow.metrics import Metrics

log = logging.getLogger("chatwax.audit")

UserEvent = Accepted | Forget | LlmResult | SummaryResult


def user_of(event: UserEvent) -> str:
    """The key: every event of a turn goes to the state of the user it belongs to."""
    if isinstance(event, LlmResult | SummaryResult):
        return event.user_id
    return event.request.user_id


def count_refusals(metrics: Metrics, effects: list[Effect]) -> None:
    for e in effects:
        if isinstance(e, Reply) and isinstance(e.event, ErrorEvent):
            metrics.refused(e.event.code)


class UserLogic(op.StatefulLogic[UserEvent, Effect, dict[str, Any]]):
    """One user's admission, quotas and conversations, as one keyed state."""

    def __init__(self, cfg: UserConfig, metrics: Metrics, resume: object | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.clock = clock
        self.state = UserState("") if resume is None else UserState.from_snapshot(resume)
        self._held = self.state.count()
        metrics.active_conversations.inc(self._held)

    def on_item(self, value: UserEvent) -> tuple[list[Effect], bool]:
        state, cfg = self.state, self.cfg
        state.user_id = state.user_id or user_of(value)
        if isinstance(value, Accepted):
            # Judged at the time it was stored: read again after a restart (from the same
            # snapshot), a prompt gets the same decision.
            effects = state.on_prompt(value, cfg, value.stored_at)
            count_refusals(self.metrics, effects)
        elif isinstance(value, LlmResult):
            effects = state.on_result(value, cfg, self.clock())
        elif isinstance(value, SummaryResult):
            effects = self._summary(value)
        else:
            effects = state.forget(value)
            # Ids only: what was said is gone, and the log must not keep it either.
            log.info("forgot %s of user %s", value.request.conversation_id or
                     "every conversation", value.request.user_id)
        return effects, self._settle()

    def _summary(self, result: SummaryResult) -> list[Effect]:
        conv = self.state.get(result.conversation_id)
        before = conv.folded if conv is not None else 0
        effects = self.state.on_summary(result, self.cfg, self.clock())
        self.metrics.summaries.labels("ok" if result.summary is not None else "error").inc()
        if conv is not None:
            self.metrics.summary_turns_folded.inc(conv.folded - before)
        return effects

    def on_notify(self) -> tuple[list[Effect], bool]:
        effects = self.state.restart_in_flight(self.cfg) if self.state.restart_due else []
        expired = self.state.expire(self.cfg, self.clock())
        if expired:
            self.metrics.conversations_expired.inc(expired)
        return effects, self._settle()

    def notify_at(self) -> datetime | None:
        if self.state.restart_due:
            return datetime.now(UTC)
        due = self.state.next_expiry(self.cfg)
        return None if due is None else datetime.fromtimestamp(due, UTC)

    def snapshot(self) -> dict[str, Any]:
        return self.state.snapshot()

    def _settle(self) -> bool:
        held = self.state.count()
        self.metrics.active_conversations.inc(held - self._held)
        self._held = held
        return self.DISCARD if self.state.empty else self.RETAIN
