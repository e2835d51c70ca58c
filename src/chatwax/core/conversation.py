"""One conversation's state machine: turn ordering, history, and the effects it asks for.

`Conversation` takes accepted prompts and LLM results and returns effects to carry out
(start a call, reply with an error, store a transcript, release a user's slot). Nothing here
does I/O or knows about Bytewax; the dataflow wires it into `op.stateful`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chatwax.core.errors import ErrorCode
from chatwax.core.history import Message, Turn, build_messages, estimate_tokens, trim_history
from chatwax.core.intake import Accepted
from chatwax.core.limits import Release
from chatwax.core.protocol import PromptRequest, Reply, Transcript, Usage


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


Effect = LlmCall | Reply | Transcript | Release


@dataclass(frozen=True, slots=True)
class ConversationConfig:
    system_prompt: str
    prompt_budget: int
    provider: str
    input_limit: int = 1 << 30
    """Context window minus the output reserve: a prompt that cannot fit is refused."""


@dataclass(slots=True)
class Conversation:
    """One conversation's state: owner, recent history, and prompts waiting their turn.

    One LLM call is in flight at a time (the head of `pending`), so turns are answered
    in the order they were stored and each call sees all earlier turns.
    """

    owner: str
    history: list[Turn] = field(default_factory=list)
    turns: int = 0
    pending: list[Accepted] = field(default_factory=list)
    in_flight: str | None = None

    def on_prompt(self, item: Accepted, cfg: ConversationConfig) -> list[Effect]:
        req = item.request
        done = Release(req.user_id, req.request_id, 0)
        if req.user_id != self.owner:
            return [Reply.error(
                req.reply_to, req.request_id, ErrorCode.CONVERSATION_FORBIDDEN,
                f"conversation '{req.conversation_id}' belongs to another user",
            ), done]
        if any(p.request.request_id == req.request_id for p in self.pending):
            return []  # a re-delivered prompt, already queued
        if any(t.request_id == req.request_id for t in self.history):
            return [done]  # a re-delivered prompt, already answered
        needed = estimate_tokens(req.prompt) + estimate_tokens(cfg.system_prompt)
        if needed > cfg.input_limit:
            return [Reply.error(
                req.reply_to, req.request_id, ErrorCode.PROMPT_TOO_LARGE,
                f"the prompt needs about {needed} tokens; the model takes {cfg.input_limit}",
            ), done]
        self.pending.append(item)
        return self._start_next(cfg)

    def on_result(self, result: LlmResult, cfg: ConversationConfig) -> list[Effect]:
        if result.request_id != self.in_flight or not self.pending:
            return []  # a stale result (e.g. from before a restart): ignore it
        done = self.pending.pop(0)
        self.in_flight = None
        effects: list[Effect] = [
            Release(self.owner, result.request_id, result.usage.total_tokens)]
        if result.answer is not None:
            req = done.request
            self.turns += 1
            self.history.append(Turn(req.request_id, req.prompt, result.answer))
            self.history = trim_history(self.history, cfg.prompt_budget)
            effects.append(Transcript(
                request_id=req.request_id, user_id=req.user_id,
                conversation_id=req.conversation_id, turn=self.turns, prompt=req.prompt,
                answer=result.answer, model=result.model, provider=cfg.provider,
                usage=result.usage, latency_ms=result.latency_ms, ttft_ms=result.ttft_ms,
                created_at=req.created_at, finished_at=result.finished_at,
                cost_usd=result.cost_usd,
            ))
        return effects + self._start_next(cfg)

    def restart_in_flight(self, cfg: ConversationConfig) -> list[Effect]:
        """After a restart nothing runs any more: start the head of the queue again."""
        self.in_flight = None
        return self._start_next(cfg)

    def _start_next(self, cfg: ConversationConfig) -> list[Effect]:
        if self.in_flight is not None or not self.pending:
            return []
        item = self.pending[0]
        built = build_messages(cfg.system_prompt, self.history, item.request.prompt,
                               cfg.prompt_budget)
        self.in_flight = item.request.request_id
        return [LlmCall(item.request, built.messages, self.turns + 1, item.stored_at,
                        built.est_tokens, built.dropped_turns)]
