"""The dataflow: wiring only. Each step id names what happens to the data there.

    prompts (JetStream) -> parse -> accepted? --no--> rejection replies -----------------> nats
                                      | yes
    feedback (loop) --Release--> merge -> by user -> user_limits --refused--> replies --> nats
         |                                              | admitted
         +---LlmResult-------------------------------> merge -> by conversation -> conversation
                                                                                     |
        LlmCall -> llm (Answerer: streams chunks/final, puts LlmResult on the loop) <---+
        Reply / Transcript -> nats;  Release -> feedback (the loop)  <-------------------+

The edges come in as an `Edges`: NATS and the answerer in a running process
(`Runtime.edges`), in-memory ones in tests and the restart benchmark.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TypeGuard, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from chatwax.core.conversation import (
    ConversationConfig,
    LlmCall,
    LlmResult,
    SummaryCall,
    SummaryResult,
)
from chatwax.core.intake import Accepted, Forget, Rejected, parse_inbound
from chatwax.core.limits import LimitsConfig, Release
from chatwax.core.protocol import Inbound, Reply, Transcript
from chatwax.core.settings import Settings
from chatwax.core.summary import SummaryConfig
from chatwax.core.tokens import ESTIMATE, TokenCounter
from chatwax.dataflow.logic import (
    ConversationLogic,
    LimitEvent,
    TurnEvent,
    UserLimitsLogic,
)
from chatwax.dataflow.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Edges:
    """Where the flow's data comes from and goes."""

    prompts: Source[Inbound]
    feedback: Source[LlmResult | SummaryResult | Release]
    llm: Sink[LlmCall | SummaryCall]
    replies: Sink[Reply | Transcript]
    loopback: Sink[Release]


def conversation_config(settings: Settings, counter: TokenCounter = ESTIMATE
                        ) -> ConversationConfig:
    return ConversationConfig(
        system_prompt=settings.system_prompt,
        prompt_budget=settings.prompt_token_budget,
        provider=settings.provider,
        input_limit=settings.context_tokens - settings.max_output_tokens,
        counter=counter,
        summary=SummaryConfig(
            enabled=settings.summaries, trigger=settings.summary_trigger,
            keep=settings.summary_keep, max_tokens=settings.summary_tokens,
            model=settings.summary_model or settings.model),
    )


def limits_config(settings: Settings) -> LimitsConfig:
    return LimitsConfig(
        token_quota=settings.user_token_quota, window_s=settings.user_quota_window_s,
        max_concurrent=settings.user_max_concurrent,
        stale_after_s=max(900.0, 2 * (settings.llm_timeout_s + settings.retry_max_time_s)),
    )


def _conversation_key(event: TurnEvent) -> str:
    if isinstance(event, LlmResult | SummaryResult):
        return event.conversation_id
    return event.request.conversation_id


def _is_valid(parsed: Accepted | Forget | Rejected) -> TypeGuard[Accepted | Forget]:
    return isinstance(parsed, Accepted | Forget)


def _is_release(item: LlmResult | SummaryResult | Release) -> TypeGuard[Release]:
    return isinstance(item, Release)


def _is_admitted(item: Accepted | Forget | Reply) -> TypeGuard[Accepted | Forget]:
    return isinstance(item, Accepted | Forget)


def _user_key(event: LimitEvent) -> str:
    return event.user_id if isinstance(event, Release) else event.request.user_id


def build_flow(settings: Settings, edges: Edges, metrics: Metrics,
               counter: TokenCounter = ESTIMATE) -> Dataflow:
    """The chatwax dataflow on the given edges; `counter` counts tokens for trimming."""
    cfg = conversation_config(settings, counter)
    limits = limits_config(settings)
    max_chars = settings.max_prompt_chars

    def rejection_reply(rejected: Accepted | Forget | Rejected) -> Reply | None:
        assert isinstance(rejected, Rejected)  # the `accepted` branch's falses
        metrics.refused(rejected.code)
        if rejected.reply_to is None:
            log.warning("dropped a malformed prompt with no reply address: %s",
                        rejected.message)
        return rejected.reply()

    flow = Dataflow("chatwax")
    raw = op.input("prompts", flow, edges.prompts)
    parsed = op.map("parse", raw, lambda m: parse_inbound(m, max_chars))
    checked = op.branch("accepted", parsed, _is_valid)
    rejections = op.filter_map("rejection_reply", checked.falses, rejection_reply)
    looped = op.branch("is_release", op.input("feedback", flow, edges.feedback), _is_release)
    admission = op.merge("limits_in", checked.trues, looped.trues)
    limited = op.key_rm("limited", op.stateful(
        "user_limits", op.key_on("by_user", admission, _user_key),
        lambda s: UserLimitsLogic(limits, metrics, s)))
    admitted = op.branch("admitted", limited, _is_admitted)
    finished = cast(op.Stream[LlmResult | SummaryResult], looped.falses)
    turn_events = op.merge("turn_events", admitted.trues, finished)
    keyed = op.key_on("by_conversation", turn_events, _conversation_key)
    effects = op.key_rm(
        "effects",
        op.stateful("conversation", keyed, lambda s: ConversationLogic(cfg, metrics, s)),
    )
    split = op.branch("is_llm_call", effects, lambda e: isinstance(e, LlmCall | SummaryCall))
    calls = cast(op.Stream[LlmCall | SummaryCall], split.trues)
    ended = op.branch("is_release_effect", split.falses, lambda e: isinstance(e, Release))
    releases = cast(op.Stream[Release], ended.trues)
    outbound = cast(op.Stream[Reply | Transcript],
                    op.merge("outbound", rejections, admitted.falses, ended.falses))
    op.output("llm", calls, edges.llm)
    op.output("loopback", releases, edges.loopback)
    op.output("nats", outbound, edges.replies)
    return flow
