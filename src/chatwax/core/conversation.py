"""One conversation's state machine: turn ordering, history, summaries, and the effects it
asks for.

`Conversation` takes accepted prompts, LLM results and summary results and returns effects
to carry out (start a call or a summary, reply with an error, store an answer's transcript
and then send its final reply). Nothing here does I/O or knows about Bytewax; a user's
state holds their conversations (`chatwax.core.user`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chatwax.core.errors import ErrorCode
from chatwax.core.history import (
    Message,
    Turn,
    build_messages,
    trim_history,
)
from chatwax.core.intake import Accepted
from chatwax.core.replies import Reply
from chatwax.core.summary import SummaryConfig, summary_messages, to_fold
from chatwax.core.tokens import ESTIMATE, MESSAGE_OVERHEAD_TOKENS, TokenCounter, message_tokens
from chatwax.core.wire import FinalEvent, PromptRequest, Transcript, Usage


@dataclass(frozen=True, slots=True)
class LlmCall:
    """Start streaming an answer for `request` with these messages."""

    request: PromptRequest
    messages: list[Message]
    turn: int
    stored_at: float
    est_tokens: int
    dropped_turns: int = 0


@dataclass(frozen=True, slots=True)
class LlmResult:
    """How a call ended; fed back into the conversation that started it."""

    request_id: str
    conversation_id: str
    answer: str | None
    usage: Usage
    model: str
    latency_ms: float
    ttft_ms: float | None
    finished_at: float
    error: ErrorCode | None = None
    cost_usd: float = 0.0
    prompt_tokens: int | None = None
    """The new prompt as one message, when a tokenizer counted it (the server's, for a
    server that reports no usage): then the turn's size is exact, not estimated."""
    error_message: str = ""
    user_id: str = field(kw_only=True)
    """Whose state the result goes back to."""


@dataclass(frozen=True, slots=True)
class SummaryCall:
    """Fold these turns (and the last summary) into a new summary; nobody waits for it."""

    call_id: str
    user_id: str
    conversation_id: str
    messages: list[Message]
    folds: tuple[str, ...]
    """Request ids of the turns the new summary replaces."""
    folded_tokens: int


@dataclass(frozen=True, slots=True)
class SummaryResult:
    call_id: str
    conversation_id: str
    summary: str | None
    usage: Usage
    model: str
    latency_ms: float
    finished_at: float
    cost_usd: float = 0.0
    user_id: str = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class Answered:
    """A finished turn: its transcript is stored first, then its final reply sent, so a
    client that has the final can read the turn back at once."""

    transcript: Transcript
    final: Reply


Effect = LlmCall | SummaryCall | Reply | Transcript | Answered


@dataclass(frozen=True)
class ConversationConfig:
    system_prompt: str
    prompt_budget: int
    provider: str
    input_limit: int = 1 << 30
    """Context window minus the output reserve: a prompt that cannot fit is refused."""
    counter: TokenCounter = ESTIMATE
    summary: SummaryConfig = field(default_factory=SummaryConfig)


@dataclass(slots=True)
class Conversation:
    """One conversation's state: owner, unfolded history, summary, and prompts waiting.

    One LLM call is in flight at a time (the head of `pending`), so turns are answered
    in the order they were stored and each call sees all earlier turns (or their summary).
    At most one summary call is in flight, beside it.
    """

    owner: str
    history: list[Turn] = field(default_factory=list)
    turns: int = 0
    pending: list[Accepted] = field(default_factory=list)
    in_flight: str | None = None
    summary: str = ""
    folded: int = 0
    """Turns folded into `summary` so far."""
    summarizing: SummaryCall | None = None

    def __reduce__(self) -> tuple[type[Conversation], tuple[Any, ...]]:
        # Positional fields, as for `Turn`: a restart loads every conversation's state.
        return Conversation, (self.owner, self.history, self.turns, self.pending,
                              self.in_flight, self.summary, self.folded, self.summarizing)

    def knows(self, request_id: str) -> bool:
        """Whether a prompt is queued or answered here already (read again after a
        restart): it is neither admitted nor charged a second time."""
        return (any(p.request.request_id == request_id for p in self.pending)
                or any(t.request_id == request_id for t in self.history))

    def on_prompt(self, item: Accepted, cfg: ConversationConfig) -> list[Effect]:
        req = item.request
        if self.knows(req.request_id):
            return []  # re-delivered: already queued or answered
        needed = (message_tokens(cfg.counter, req.prompt)
                  + message_tokens(cfg.counter, cfg.system_prompt))
        if needed > cfg.input_limit:
            return [Reply.error(
                req.reply_to, req.request_id, ErrorCode.PROMPT_TOO_LARGE,
                f"the prompt needs about {needed} tokens; the model takes {cfg.input_limit}",
            )]
        self.pending.append(item)
        return self._start_next(cfg)

    def on_result(self, result: LlmResult, cfg: ConversationConfig) -> list[Effect]:
        if result.request_id != self.in_flight or not self.pending:
            return []  # a stale result (e.g. from before a restart): ignore it
        req = self.pending.pop(0).request
        self.in_flight = None
        effects: list[Effect] = []
        if result.answer is None:
            effects.append(Reply.error(req.reply_to, req.request_id,
                                       result.error or ErrorCode.INTERNAL,
                                       result.error_message or "the answer failed"))
        else:
            self.turns += 1
            self.history.append(Turn(req.request_id, req.prompt, result.answer,
                                     _turn_tokens(req.prompt, result, cfg.counter)))
            effects.append(_answered(req, result, self.turns, cfg.provider))
            effects += self._fold_or_trim(req.conversation_id, cfg)
        return effects + self._start_next(cfg)

    def on_summary(self, result: SummaryResult, cfg: ConversationConfig) -> list[Effect]:
        call = self.summarizing
        if call is None or result.call_id != call.call_id:
            return []  # stale: from before a restart, or already replaced
        self.summarizing = None
        effects: list[Effect] = []
        if result.summary is None:  # failed: fall back to plain trimming
            self.history = trim_history(self.history, cfg.prompt_budget, cfg.counter)
            return effects
        folds = set(call.folds)
        self.summary = result.summary
        self.folded += len(folds)  # in the summary now, even if trimmed away meanwhile
        self.history = [t for t in self.history if t.request_id not in folds]
        effects.append(Transcript(
            request_id=call.call_id, user_id=self.owner,
            conversation_id=result.conversation_id, turn=self.turns, prompt="",
            answer=result.summary, model=result.model, provider=cfg.provider,
            usage=result.usage, latency_ms=result.latency_ms, ttft_ms=None,
            created_at=result.finished_at, finished_at=result.finished_at,
            cost_usd=result.cost_usd, kind="summary",
        ))
        return effects

    def drop(self) -> list[Effect]:
        """The conversation is forgotten: waiting prompts are told so (a call in flight is
        cut off: its result finds no conversation)."""
        return [Reply.error(item.request.reply_to, item.request.request_id,
                            ErrorCode.CONVERSATION_DELETED,
                            f"conversation '{item.request.conversation_id}' was deleted")
                for item in self.pending]

    def restart_in_flight(self, cfg: ConversationConfig) -> list[Effect]:
        """After a restart nothing runs any more: start the head of the queue again, and
        the summary that was being made."""
        self.in_flight = None
        effects: list[Effect] = []
        if self.summarizing is not None:
            effects.append(self.summarizing)
        return effects + self._start_next(cfg)

    @property
    def busy(self) -> bool:
        return self.in_flight is not None or self.summarizing is not None

    def _fold_or_trim(self, conversation_id: str, cfg: ConversationConfig) -> list[Effect]:
        """Start a summary of the oldest turns when they outgrow the budget; without
        summaries (or with one in flight for too long), drop what can never be sent."""
        budget = cfg.prompt_budget
        if self.summarizing is None:
            n = to_fold(self.history, budget, cfg.summary, cfg.counter)
            if n:
                folds = self.history[:n]
                self.summarizing = SummaryCall(
                    call_id=f"sum-{folds[-1].request_id}", user_id=self.owner,
                    conversation_id=conversation_id,
                    messages=summary_messages(self.summary, folds, cfg.summary.max_tokens),
                    folds=tuple(t.request_id for t in folds),
                    folded_tokens=sum(t.size(cfg.counter) for t in folds))
                return [self.summarizing]
        # Turns wait for their summary; but history stays bounded whatever happens.
        limit = 2 * budget if cfg.summary.enabled else budget
        self.history = trim_history(self.history, limit, cfg.counter)
        return []

    def _start_next(self, cfg: ConversationConfig) -> list[Effect]:
        if self.in_flight is not None or not self.pending:
            return []
        item = self.pending[0]
        built = build_messages(cfg.system_prompt, self.history, item.request.prompt,
                               cfg.prompt_budget, cfg.counter, self.summary)
        self.in_flight = item.request.request_id
        return [LlmCall(item.request, built.messages, self.turns + 1, item.stored_at,
                        built.tokens, built.dropped_turns)]


def _answered(req: PromptRequest, result: LlmResult, turn: int, provider: str) -> Answered:
    assert result.answer is not None
    transcript = Transcript(
        request_id=req.request_id, user_id=req.user_id, conversation_id=req.conversation_id,
        turn=turn, prompt=req.prompt, answer=result.answer, model=result.model,
        provider=provider, usage=result.usage, latency_ms=result.latency_ms,
        ttft_ms=result.ttft_ms, created_at=req.created_at, finished_at=result.finished_at,
        cost_usd=result.cost_usd)
    final = FinalEvent(
        request_id=req.request_id, conversation_id=req.conversation_id, text=result.answer,
        model=result.model, usage=result.usage, latency_ms=round(result.latency_ms, 3),
        ttft_ms=None if result.ttft_ms is None else round(result.ttft_ms, 3), turn=turn,
        cost_usd=result.cost_usd)
    return Answered(transcript, Reply(req.reply_to, final))


def _turn_tokens(prompt: str, result: LlmResult, counter: TokenCounter) -> int:
    """The turn's size in later calls, counted once: the answer as its usage counted it and
    the prompt as a tokenizer counted it, where those are exact; else by `counter`."""
    exact = result.usage.counted != "estimate"
    answer = (result.usage.output_tokens + MESSAGE_OVERHEAD_TOKENS
              if exact and result.usage.output_tokens
              else message_tokens(counter, result.answer or ""))
    asked = (result.prompt_tokens if exact and result.prompt_tokens is not None
             else message_tokens(counter, prompt))
    return asked + answer
