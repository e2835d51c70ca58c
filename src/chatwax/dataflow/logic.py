"""Bytewax's stateful operator around the pure per-user and per-conversation logic.

The adapters add what only a running dataflow has: the clock, snapshots for recovery,
resumption after a restart, and metrics. The decisions live in `chatwax.core`.
"""

from __future__ import annotations

import logging
import pickle
import time
from datetime import UTC, datetime

import bytewax.operators as op

from chatwax.core.conversation import (
    Conversation,
    ConversationConfig,
    Effect,
    LlmResult,
    SummaryResult,
)
from chatwax.core.errors import ErrorCode
from chatwax.core.intake import Accepted, Forget
from chatwax.core.limits import LimitsConfig, Release, UserLimits
from chatwax.core.protocol import ErrorEvent, Reply
from chatwax.dataflow.metrics import Metrics

log = logging.getLogger("chatwax.audit")

TurnEvent = Accepted | Forget | LlmResult | SummaryResult
LimitEvent = Accepted | Forget | Release

PackedConversation = tuple[bool, bytes]
"""A conversation's snapshot: whether a call of it was in flight, and the pickled state.

Bytes, not objects, so that a restart hands each conversation over without building it:
a resumed conversation stays packed until its next prompt (most never get one before the
next restart), which makes resuming a million conversations faster and their memory
smaller (docs/performance.md, "Restart")."""


def count_refusals(metrics: Metrics,
                   effects: list[Effect] | list[Accepted | Forget | Reply]) -> None:
    for e in effects:
        if isinstance(e, Reply) and isinstance(e.event, ErrorEvent):
            metrics.refused(e.event.code)


class UserLimitsLogic(op.StatefulLogic[LimitEvent, Accepted | Forget | Reply, object]):
    """Per-user admission: token quota, concurrent prompts, prompt rate, conversations."""

    def __init__(self, cfg: LimitsConfig, metrics: Metrics, resume: object | None) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.state = UserLimits() if resume is None else UserLimits.from_snapshot(resume)

    def on_item(self, value: LimitEvent) -> tuple[list[Accepted | Forget | Reply], bool]:
        # A prompt is judged at the time it was stored, not read: a prompt read again after
        # a restart (from the same snapshot of this state) gets the same decision.
        now = value.stored_at if isinstance(value, Accepted) else time.time()
        out: list[Accepted | Forget | Reply] = []
        if isinstance(value, Forget):
            self.state.forget(value.request.conversation_id)
            out.append(value)
        elif isinstance(value, Release):
            self.state.release(value, now)
        else:
            out.append(self.state.admit(value, self.cfg, now))
            count_refusals(self.metrics, out)
        self.state.settle(self.cfg, now)
        return out, self.DISCARD if self.state.idle else self.RETAIN

    def snapshot(self) -> dict[str, object]:
        return self.state.to_snapshot()


class ConversationLogic(op.StatefulLogic[TurnEvent, Effect, PackedConversation]):
    """Adapts the pure `Conversation` to Bytewax's stateful operator."""

    def __init__(self, cfg: ConversationConfig, metrics: Metrics,
                 resume: PackedConversation | Conversation | None) -> None:
        self.cfg = cfg
        self.metrics = metrics
        # The conversation, or its pickled bytes until it is first used after a restart.
        self._held: Conversation | bytes | None
        if isinstance(resume, tuple):
            busy, self._held = resume
        else:  # None, or a snapshot of a release that stored `Conversation` objects
            self._held = resume
            busy = resume is not None and resume.busy
        # A resumed conversation had its call (or summary) cut off by the restart: start
        # it again.
        self._restart = busy
        if resume is not None:
            metrics.active_conversations.inc()

    @property
    def state(self) -> Conversation | None:
        """The conversation, unpacked on first use after a restart."""
        held = self._held
        if isinstance(held, bytes):
            held = self._held = pickle.loads(held)
        return held

    @state.setter
    def state(self, value: Conversation | None) -> None:
        self._held = value

    def on_item(self, value: TurnEvent) -> tuple[list[Effect], bool]:
        if isinstance(value, Forget):
            return self._forget(value)
        if isinstance(value, LlmResult | SummaryResult):
            if self.state is None:
                return [], self.DISCARD
            if isinstance(value, SummaryResult):
                return self._summary(value), self.RETAIN
            return self.state.on_result(value, self.cfg), self.RETAIN
        if self.state is None:
            self.state = Conversation(owner=value.request.user_id)
            self.metrics.active_conversations.inc()
        effects = self.state.on_prompt(value, self.cfg)
        count_refusals(self.metrics, effects)
        return effects, self.RETAIN

    def _summary(self, result: SummaryResult) -> list[Effect]:
        assert self.state is not None
        before = self.state.folded
        effects = self.state.on_summary(result, self.cfg)
        self.metrics.summaries.labels("ok" if result.summary is not None else "error").inc()
        self.metrics.summary_turns_folded.inc(self.state.folded - before)
        return effects

    def _forget(self, forget: Forget) -> tuple[list[Effect], bool]:
        req = forget.request
        if self.state is not None and self.state.owner != req.user_id:
            return [Reply.error(req.reply_to, req.request_id, ErrorCode.CONVERSATION_FORBIDDEN,
                                f"conversation '{req.conversation_id}' belongs to another "
                                "user")], self.RETAIN
        state = self.state or Conversation(owner=req.user_id)
        effects = state.forget(req)
        if self.state is not None:
            self.metrics.active_conversations.dec()
        self.state = None
        # Ids only: what was said is gone, and the log must not keep it either.
        log.info("forgot conversation %s of user %s", req.conversation_id, req.user_id)
        return effects, self.DISCARD

    def on_notify(self) -> tuple[list[Effect], bool]:
        self._restart = False
        if self.state is None:
            return [], self.DISCARD
        return self.state.restart_in_flight(self.cfg), self.RETAIN

    def notify_at(self) -> datetime | None:
        return datetime.now(UTC) if self._restart else None

    def snapshot(self) -> PackedConversation:
        if isinstance(self._held, bytes):  # untouched since the restart: as it was
            return False, self._held
        assert self._held is not None
        return self._held.busy, pickle.dumps(self._held, pickle.HIGHEST_PROTOCOL)
