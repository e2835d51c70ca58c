"""The dataflow: wiring only. Each step id names what happens to the data there.

    prompts (JetStream) -> parse -> accepted? --no--> rejection replies --------------+
                                      |yes                                             v
    llm_results (loop) -------------> merge -> key by conversation -> conversation -> effects
                                                                      |  LlmCall -> llm (Answerer)
                                                                      +  Reply / Transcript -> nats
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TypeGuard, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from chatwax.metrics import METRICS
from chatwax.nats_io import Inbound, NatsSink, PromptSource, Reply
from chatwax.protocol import ErrorEvent, Transcript
from chatwax.replies import LlmSink, ResultSource
from chatwax.settings import Settings
from chatwax.steps import (
    Accepted,
    Conversation,
    ConversationConfig,
    Effect,
    LlmCall,
    LlmResult,
    Rejected,
    parse_inbound,
)

log = logging.getLogger(__name__)

TurnEvent = Accepted | LlmResult


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


def build_flow(
    settings: Settings,
    *,
    prompts: Source[Inbound] | None = None,
    results: Source[LlmResult] | None = None,
    llm: Sink[LlmCall] | None = None,
    replies: Sink[Reply | Transcript] | None = None,
    recovery: bool = False,
) -> Dataflow:
    """The chatwax dataflow; tests may swap the edges, production uses NATS and the LLM."""
    cfg = ConversationConfig(
        system_prompt=settings.system_prompt,
        prompt_budget=settings.prompt_token_budget,
        provider=settings.provider,
        input_limit=settings.context_tokens - settings.max_output_tokens,
    )
    max_chars = settings.max_prompt_chars
    flow = Dataflow("chatwax")
    raw = op.input("prompts", flow, prompts or PromptSource(settings, from_start=recovery))
    parsed = op.map("parse", raw, lambda m: parse_inbound(m, max_chars))
    checked = op.branch("accepted", parsed, _is_accepted)
    rejections = op.filter_map("rejection_reply", checked.falses, _rejection_reply)
    finished = op.input("llm_results", flow, results or ResultSource(settings))
    turn_events = op.merge("turn_events", checked.trues, finished)
    keyed = op.key_on("by_conversation", turn_events, _conversation_key)
    effects = op.key_rm(
        "effects", op.stateful("conversation", keyed, lambda s: ConversationLogic(cfg, s))
    )
    split = op.branch("is_llm_call", effects, lambda e: isinstance(e, LlmCall))
    calls = cast(op.Stream[LlmCall], split.trues)
    outbound = cast(op.Stream[Reply | Transcript],
                    op.merge("outbound", rejections, split.falses))
    op.output("llm", calls, llm or LlmSink(settings))
    op.output("nats", outbound, replies or NatsSink(settings))
    return flow


def flow() -> Dataflow:
    """Entry point for `python -m bytewax.run chatwax.flow:flow()`: settings from env."""
    return build_flow(Settings.from_env())
