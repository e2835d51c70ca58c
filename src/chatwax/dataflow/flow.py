"""The dataflow: wiring only. Each step id names what happens to the data there.

    prompts (JetStream) -> parse -> accepted? --no--> rejection replies, dead letters ---> nats
                                      | yes
    feedback (loop) --Release--> merge -> by user -> user_limits --refused--> replies --> nats
         |                                              | admitted
         +---LlmResult-------------------------------> merge -> by conversation -> conversation
                                                                                     |
        LlmCall -> llm (Answerer: streams chunks/final, puts LlmResult on the loop) <---+
        Reply / Transcript -> nats;  Release -> feedback (the loop)  <-------------------+

The edges come in as an `Edges`: NATS and the answerer in a running process
(`Runtime.edges`), in-memory ones in tests and the restart benchmark. Every step that
touches what a client sent is guarded (`chatwax.dataflow.guard`): an item that makes it
fail leaves as a dead letter with an error reply, and the cluster keeps running.
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
from chatwax.core.protocol import DeadLetter, Inbound, Reply, Transcript
from chatwax.core.settings import Settings
from chatwax.core.summary import SummaryConfig
from chatwax.core.tokens import ESTIMATE, TokenCounter
from chatwax.dataflow.guard import GuardedLogic, guarded_map
from chatwax.dataflow.logic import (
    ConversationLogic,
    LimitEvent,
    TurnEvent,
    UserLimitsLogic,
)
from chatwax.dataflow.metrics import Metrics

log = logging.getLogger(__name__)


Outbound = Reply | Transcript | DeadLetter
"""What leaves the flow for NATS: replies, completed turns, dead letters."""


@dataclass(frozen=True)
class Edges:
    """Where the flow's data comes from and goes."""

    prompts: Source[Inbound]
    feedback: Source[LlmResult | SummaryResult | Release]
    llm: Sink[LlmCall | SummaryCall]
    replies: Sink[Outbound]
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
        prompts_per_minute=settings.user_prompts_per_minute,
        max_conversations=settings.user_max_conversations,
        stale_after_s=max(900.0, 2 * (settings.llm_timeout_s + settings.retry_max_time_s)),
    )


def _conversation_key(event: TurnEvent) -> str:
    if isinstance(event, LlmResult | SummaryResult):
        return event.conversation_id
    return event.request.conversation_id


Parsed = Accepted | Forget | Rejected | DeadLetter | Reply


def _is_valid(parsed: Parsed) -> TypeGuard[Accepted | Forget]:
    return isinstance(parsed, Accepted | Forget)


def _is_release(item: LlmResult | SummaryResult | Release) -> TypeGuard[Release]:
    return isinstance(item, Release)


def _is_admitted(item: Accepted | Forget | Reply) -> TypeGuard[Accepted | Forget]:
    return isinstance(item, Accepted | Forget)


def _release_slot(event: TurnEvent) -> list[Release]:
    """A prompt the conversation step could not take still frees its user's slot."""
    if isinstance(event, Accepted):
        return [Release(event.request.user_id, event.request.request_id, 0)]
    return []


def _user_key(event: LimitEvent) -> str:
    return event.user_id if isinstance(event, Release) else event.request.user_id


def build_flow(settings: Settings, edges: Edges, metrics: Metrics,
               counter: TokenCounter = ESTIMATE) -> Dataflow:
    """The chatwax dataflow on the given edges; `counter` counts tokens for trimming."""
    cfg = conversation_config(settings, counter)
    limits = limits_config(settings)
    max_chars = settings.max_prompt_chars

    def rejection_reply(rejected: Parsed) -> Reply | DeadLetter | None:
        if not isinstance(rejected, Rejected):  # a failed parse: its dead letter, reply
            assert isinstance(rejected, Reply | DeadLetter)
            return rejected
        metrics.refused(rejected.code)
        if rejected.reply_to is None:
            log.warning("dropped a malformed prompt with no reply address: %s",
                        rejected.message)
        return rejected.reply()

    flow = Dataflow("chatwax")
    raw = op.input("prompts", flow, edges.prompts)
    parsed = op.flat_map("parse", raw, guarded_map(
        "parse", lambda m: parse_inbound(m, max_chars), metrics))
    checked = op.branch("accepted", parsed, _is_valid)
    rejections = op.filter_map("rejection_reply", checked.falses, rejection_reply)
    looped = op.branch("is_release", op.input("feedback", flow, edges.feedback), _is_release)
    admission = op.merge("limits_in", checked.trues, looped.trues)
    limited = op.key_rm("limited", op.stateful(
        "user_limits", op.key_on("by_user", admission, _user_key),
        lambda s: GuardedLogic("user_limits", lambda r: UserLimitsLogic(limits, metrics, r),
                               s, metrics)))
    admitted = op.branch("admitted", limited, _is_admitted)
    finished = cast(op.Stream[LlmResult | SummaryResult], looped.falses)
    turn_events = op.merge("turn_events", admitted.trues, finished)
    keyed = op.key_on("by_conversation", turn_events, _conversation_key)
    effects = op.key_rm(
        "effects",
        op.stateful("conversation", keyed, lambda s: GuardedLogic(
            "conversation", lambda r: ConversationLogic(cfg, metrics, r), s, metrics,
            settle=_release_slot)),
    )
    split = op.branch("is_llm_call", effects, lambda e: isinstance(e, LlmCall | SummaryCall))
    calls = cast(op.Stream[LlmCall | SummaryCall], split.trues)
    ended = op.branch("is_release_effect", split.falses, lambda e: isinstance(e, Release))
    releases = cast(op.Stream[Release], ended.trues)
    outbound = cast(op.Stream[Outbound],
                    op.merge("outbound", rejections, admitted.falses, ended.falses))
    op.output("llm", calls, edges.llm)
    op.output("loopback", releases, edges.loopback)
    op.output("nats", outbound, edges.replies)
    return flow
