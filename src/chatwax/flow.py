"""The dataflow: wiring only. Each step id names what happens to the data there.

    prompts (JetStream) -> parse -> accepted? --no--> rejection replies -----------------> nats
                                      | yes
    feedback (loop) --Release--> merge -> by user -> user_limits --refused--> replies --> nats
         |                                              | admitted
         +---LlmResult-------------------------------> merge -> by conversation -> conversation
                                                                                     |
        LlmCall -> llm (Answerer: streams chunks/final, puts LlmResult on the loop) <---+
        Reply / Transcript -> nats;  Release -> feedback (the loop)  <-------------------+
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TypeGuard, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from chatwax.metrics import METRICS
from chatwax.nats_io import Inbound, NatsSink, PromptSource, Reply
from chatwax.protocol import ErrorEvent, Transcript
from chatwax.replies import FeedbackSink, FeedbackSource, LlmSink
from chatwax.settings import Settings
from chatwax.steps import (
    Accepted,
    Conversation,
    ConversationConfig,
    Effect,
    LimitsConfig,
    LlmCall,
    LlmResult,
    Rejected,
    Release,
    UserLimits,
    parse_inbound,
)

log = logging.getLogger(__name__)

TurnEvent = Accepted | LlmResult
LimitEvent = Accepted | Release


class UserLimitsLogic(op.StatefulLogic[LimitEvent, Accepted | Reply, UserLimits]):
    """Per-user admission: token quota over a rolling window, concurrent prompts."""

    def __init__(self, cfg: LimitsConfig, resume: UserLimits | None) -> None:
        self.cfg = cfg
        self.state = resume or UserLimits()

    def on_item(self, value: LimitEvent) -> tuple[list[Accepted | Reply], bool]:
        now = time.time()
        if isinstance(value, Release):
            self.state.release(value, now)
            return [], self.DISCARD if self.state.idle else self.RETAIN
        out = self.state.admit(value, self.cfg, now)
        if isinstance(out, Reply) and isinstance(out.event, ErrorEvent):
            METRICS.rejected.labels(out.event.code.value).inc()
            METRICS.requests.labels(out.event.code.value).inc()
        return [out], self.DISCARD if self.state.idle else self.RETAIN

    def snapshot(self) -> UserLimits:
        return UserLimits(dict(self.state.in_flight), list(self.state.spent))


class ConversationLogic(op.StatefulLogic[TurnEvent, Effect, Conversation]):
    """Adapts the pure `Conversation` to bytewax's stateful operator."""

    def __init__(self, cfg: ConversationConfig, resume: Conversation | None) -> None:
        self.cfg = cfg
        self.state = resume
        # A resumed conversation had its call cut off by the restart: start it again.
        self._restart = resume is not None and resume.in_flight is not None
        if resume is not None:
            METRICS.active_conversations.inc()

    def on_item(self, value: TurnEvent) -> tuple[list[Effect], bool]:
        if isinstance(value, LlmResult):
            if self.state is None:
                return [], self.DISCARD
            return self.state.on_result(value, self.cfg), self.RETAIN
        if self.state is None:
            self.state = Conversation(owner=value.request.user_id)
            METRICS.active_conversations.inc()
        effects = self.state.on_prompt(value, self.cfg)
        for e in effects:
            if isinstance(e, Reply) and isinstance(e.event, ErrorEvent):
                METRICS.rejected.labels(e.event.code.value).inc()
                METRICS.requests.labels(e.event.code.value).inc()
        return effects, self.RETAIN

    def on_notify(self) -> tuple[list[Effect], bool]:
        self._restart = False
        if self.state is None:
            return [], self.DISCARD
        return self.state.restart_in_flight(self.cfg), self.RETAIN

    def notify_at(self) -> datetime | None:
        return datetime.now(UTC) if self._restart else None

    def snapshot(self) -> Conversation:
        # Turns and queued prompts are immutable once made, so copying the lists suffices.
        assert self.state is not None
        s = self.state
        return Conversation(s.owner, list(s.history), s.turns, list(s.pending), s.in_flight)


def _conversation_key(event: TurnEvent) -> str:
    if isinstance(event, LlmResult):
        return event.conversation_id
    return event.request.conversation_id


def _is_accepted(parsed: Accepted | Rejected) -> TypeGuard[Accepted]:
    return isinstance(parsed, Accepted)


def _rejection_reply(rejected: Accepted | Rejected) -> Reply | None:
    assert isinstance(rejected, Rejected)  # the `accepted` branch's falses
    METRICS.rejected.labels(rejected.code.value).inc()
    METRICS.requests.labels(rejected.code.value).inc()
    if rejected.reply_to is None:
        log.warning("dropped a malformed prompt with no reply address: %s", rejected.message)
    return rejected.reply()


def _is_release(item: LlmResult | Release) -> TypeGuard[Release]:
    return isinstance(item, Release)


def _is_admitted(item: Accepted | Reply) -> TypeGuard[Accepted]:
    return isinstance(item, Accepted)


def _user_key(event: LimitEvent) -> str:
    return event.user_id if isinstance(event, Release) else event.request.user_id


def build_flow(
    settings: Settings,
    *,
    prompts: Source[Inbound] | None = None,
    feedback: Source[LlmResult | Release] | None = None,
    llm: Sink[LlmCall] | None = None,
    replies: Sink[Reply | Transcript] | None = None,
    loopback: Sink[Release] | None = None,
    recovery: bool = False,
) -> Dataflow:
    """The chatwax dataflow; tests may swap the edges, production uses NATS and the LLM."""
    cfg = ConversationConfig(
        system_prompt=settings.system_prompt,
        prompt_budget=settings.prompt_token_budget,
        provider=settings.provider,
        input_limit=settings.context_tokens - settings.max_output_tokens,
    )
    limits = LimitsConfig(
        token_quota=settings.user_token_quota, window_s=settings.user_quota_window_s,
        max_concurrent=settings.user_max_concurrent,
        stale_after_s=max(900.0, 2 * (settings.llm_timeout_s + settings.retry_max_time_s)),
    )
    max_chars = settings.max_prompt_chars
    flow = Dataflow("chatwax")
    raw = op.input("prompts", flow, prompts or PromptSource(settings, from_start=recovery))
    parsed = op.map("parse", raw, lambda m: parse_inbound(m, max_chars))
    checked = op.branch("accepted", parsed, _is_accepted)
    rejections = op.filter_map("rejection_reply", checked.falses, _rejection_reply)
    looped = op.branch("is_release", op.input("feedback", flow,
                                              feedback or FeedbackSource(settings)), _is_release)
    admission = op.merge("limits_in", checked.trues, looped.trues)
    limited = op.key_rm("limited", op.stateful(
        "user_limits", op.key_on("by_user", admission, _user_key),
        lambda s: UserLimitsLogic(limits, s)))
    admitted = op.branch("admitted", limited, _is_admitted)
    finished = cast(op.Stream[LlmResult], looped.falses)
    turn_events = op.merge("turn_events", admitted.trues, finished)
    keyed = op.key_on("by_conversation", turn_events, _conversation_key)
    effects = op.key_rm(
        "effects", op.stateful("conversation", keyed, lambda s: ConversationLogic(cfg, s))
    )
    split = op.branch("is_llm_call", effects, lambda e: isinstance(e, LlmCall))
    calls = cast(op.Stream[LlmCall], split.trues)
    ended = op.branch("is_release_effect", split.falses, lambda e: isinstance(e, Release))
    releases = cast(op.Stream[Release], ended.trues)
    outbound = cast(op.Stream[Reply | Transcript],
                    op.merge("outbound", rejections, admitted.falses, ended.falses))
    op.output("llm", calls, llm or LlmSink(settings))
    op.output("loopback", releases, loopback or FeedbackSink(settings))
    op.output("nats", outbound, replies or NatsSink(settings))
    return flow


def flow() -> Dataflow:
    """Entry point for `python -m bytewax.run chatwax.flow:flow()`: settings from env."""
    return build_flow(Settings.from_env())
