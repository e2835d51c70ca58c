"""The dataflow: wiring only. Each step id names what happens to the data there.

    prompts (JetStream, partitioned by user)
      -> parse -> accepted? --no--> rejection replies, dead letters -----------------> nats
                    | yes
    results (loop) -+-> merge -> by user -> user (UserLogic) --LlmCall/SummaryCall--> llm
                                                  |                                      |
                                                  +-- replies, answers, transcripts -> nats
    llm: the answerer streams chunks to the client and puts each result on the loop.

One stateful step keyed by user owns a turn from admission to the stored answer: limits,
quotas and the user's conversations are one state, snapshotted with the source positions.
What re-enters the flow from outside recovery is only the LLM's results; a result lost in a
crash is asked for again (the conversation still has the call in flight when it resumes).
An answer leaves as one item: its transcript is stored, then its final reply sent.

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
    Answered,
    ConversationConfig,
    Effect,
    LlmCall,
    LlmResult,
    SummaryCall,
    SummaryResult,
)
from chatwax.core.intake import Accepted, Forget, Inbound, Rejected, parse_inbound
from chatwax.core.limits import LimitsConfig
from chatwax.core.replies import Reply
from chatwax.core.settings import Settings
from chatwax.core.summary import SummaryConfig
from chatwax.core.tokens import ESTIMATE, TokenCounter
from chatwax.core.user import UserConfig
from chatwax.core.wire import Transcript
from chatwax.dataflow.deadletter import DeadLetter
from chatwax.dataflow.guard import GuardedLogic, guarded_map
from chatwax.dataflow.logic import UserEvent, UserLogic, user_of
from chatwax.dataflow.metrics import Metrics

log = logging.getLogger(__name__)

Outbound = Reply | Transcript | Answered | DeadLetter
"""What leaves the flow for NATS: replies, answers (stored, then sent), summaries' records
and dead letters."""
Looped = LlmResult | SummaryResult
"""What comes back from the LLM: the only input from outside the recovery's reach."""


@dataclass(frozen=True)
class Edges:
    """Where the flow's data comes from and goes."""

    prompts: Source[Inbound]
    results: Source[Looped]
    llm: Sink[LlmCall | SummaryCall]
    replies: Sink[Outbound]


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


def user_config(settings: Settings, counter: TokenCounter = ESTIMATE) -> UserConfig:
    return UserConfig(
        conversation=conversation_config(settings, counter),
        limits=LimitsConfig(
            token_quota=settings.user_token_quota, window_s=settings.user_quota_window_s,
            max_concurrent=settings.user_max_concurrent,
            prompts_per_minute=settings.user_prompts_per_minute,
            max_conversations=settings.user_max_conversations),
        # One retention for state and transcripts: a conversation whose transcripts
        # expired leaves the dataflow's state at the same age.
        retention_s=settings.transcript_max_age_s,
    )


Parsed = Accepted | Forget | Rejected | DeadLetter | Reply


def _is_valid(parsed: Parsed) -> TypeGuard[Accepted | Forget]:
    return isinstance(parsed, Accepted | Forget)


def _is_call(effect: Effect | DeadLetter) -> bool:
    return isinstance(effect, LlmCall | SummaryCall)


def build_flow(settings: Settings, edges: Edges, metrics: Metrics,
               counter: TokenCounter = ESTIMATE) -> Dataflow:
    """The chatwax dataflow on the given edges; `counter` counts tokens for trimming."""
    cfg = user_config(settings, counter)
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
    results = op.input("results", flow, edges.results)
    events = cast(op.Stream[UserEvent], op.merge("events", checked.trues, results))
    effects = op.key_rm("effects", op.stateful(
        "user", op.key_on("by_user", events, user_of),
        lambda resume: GuardedLogic("user", lambda r: UserLogic(cfg, metrics, r), resume,
                                    metrics)))
    split = op.branch("is_call", effects, _is_call)
    calls = cast(op.Stream[LlmCall | SummaryCall], split.trues)
    outbound = cast(op.Stream[Outbound], op.merge("outbound", rejections, split.falses))
    op.output("llm", calls, edges.llm)
    op.output("nats", outbound, edges.replies)
    return flow
