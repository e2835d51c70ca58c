"""Pure conversation logic: validation, history, prompt building, turn ordering.

Nothing here does I/O or knows about bytewax. `Conversation` is the per-conversation state
machine: it takes prompts and LLM results and returns the effects to carry out (start a
call, reply with an error, store a transcript). The flow wires it into `op.stateful`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from chatwax import protocol
from chatwax.errors import ErrorCode, ProtocolError
from chatwax.nats_io import Inbound, Reply
from chatwax.protocol import ErrorEvent, PromptRequest, Transcript, Usage

CHARS_PER_TOKEN: Final = 4
MESSAGE_OVERHEAD_TOKENS: Final = 4
"""Every chat message costs a few tokens of framing on top of its text."""

Message = dict[str, str]


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (~4 characters a token) used only for trimming.

    Usage metrics never use it: they come from the LLM server's own counts.
    """
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN + MESSAGE_OVERHEAD_TOKENS


# -- Validation ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejected:
    """An input that cannot be processed, with where (if anywhere) to say so."""

    reply_to: str | None
    request_id: str
    code: ErrorCode
    message: str

    def reply(self) -> Reply | None:
        if self.reply_to is None:
            return None
        return Reply(self.reply_to, ErrorEvent(self.request_id, self.code, self.message))


@dataclass(frozen=True, slots=True)
class Accepted:
    request: PromptRequest
    stored_at: float


def parse_inbound(msg: Inbound, max_prompt_chars: int) -> Accepted | Rejected:
    """Decode one stored prompt; malformed input becomes a `Rejected`, never an exception."""
    try:
        request = protocol.decode_prompt(msg.data, max_prompt_chars)
    except ProtocolError as exc:
        return Rejected(
            protocol.safe_reply_to(msg.reply_to), _salvage_request_id(msg.data), exc.code,
            exc.message,
        )
    return Accepted(request, msg.stored_at)


def _salvage_request_id(data: bytes) -> str:
    """Best effort: echo the request id of a bad message if one can be read safely."""
    try:
        obj = protocol.load_object(data)
        rid = protocol.check_id(obj.get("request_id"), "request_id", protocol.MAX_REQUEST_ID)
    except ProtocolError:
        return ""
    return rid


# -- History and prompt building ----------------------------------------------------------


@dataclass(slots=True)
class Turn:
    request_id: str
    prompt: str
    answer: str

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.prompt) + estimate_tokens(self.answer)


@dataclass(frozen=True, slots=True)
class BuiltPrompt:
    messages: list[Message]
    est_tokens: int
    dropped_turns: int


def build_messages(
    system_prompt: str, history: Sequence[Turn], prompt: str, budget: int
) -> BuiltPrompt:
    """System prompt, then the newest past turns that fit the budget, then the prompt.

    Older turns go first; a turn is kept or dropped whole so the model never sees half
    an exchange. The system prompt and the new prompt are always sent.
    """
    used = estimate_tokens(prompt) + (estimate_tokens(system_prompt) if system_prompt else 0)
    kept: list[Turn] = []
    for turn in reversed(history):
        if used + turn.tokens > budget:
            break
        used += turn.tokens
        kept.append(turn)
    kept.reverse()
    messages: list[Message] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    for turn in kept:
        messages.append({"role": "user", "content": turn.prompt})
        messages.append({"role": "assistant", "content": turn.answer})
    messages.append({"role": "user", "content": prompt})
    return BuiltPrompt(messages, used, len(history) - len(kept))


def trim_history(history: list[Turn], budget: int) -> list[Turn]:
    """Keep only the newest turns that could ever be sent again; the rest is transcript."""
    used = 0
    start = len(history)
    for i in range(len(history) - 1, -1, -1):
        used += history[i].tokens
        if used > budget:
            break
        start = i
    return history[start:]


# -- Effects the conversation asks for -------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class Release:
    """A request of `user_id` has ended; `tokens` it spent count against the quota."""

    user_id: str
    request_id: str
    tokens: int


Effect = LlmCall | Reply | Transcript | Release


# -- Per-user limits ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    token_quota: int = 0
    window_s: float = 86_400.0
    max_concurrent: int = 0
    stale_after_s: float = 900.0
    """An admitted request never released (its release was lost in a crash) stops
    counting after this long, so a user can never be locked out for good."""


@dataclass(slots=True)
class UserLimits:
    """One user's admitted-but-unanswered requests and recent token spending."""

    in_flight: dict[str, float] = field(default_factory=dict)
    spent: list[tuple[float, int]] = field(default_factory=list)

    def admit(self, item: Accepted, cfg: LimitsConfig, now: float) -> Accepted | Reply:
        req = item.request
        self.in_flight = {r: t for r, t in self.in_flight.items() if now - t < cfg.stale_after_s}
        self.spent = [(t, n) for t, n in self.spent if now - t < cfg.window_s]
        if req.request_id in self.in_flight:
            return item  # re-delivered: already admitted once
        used = sum(n for _, n in self.spent)
        if cfg.token_quota and used >= cfg.token_quota:
            retry_in = self.spent[0][0] + cfg.window_s - now if self.spent else cfg.window_s
            return Reply(req.reply_to, ErrorEvent(
                req.request_id, ErrorCode.QUOTA_EXCEEDED,
                f"token quota used up: {used} of {cfg.token_quota} tokens in the last "
                f"{_duration(cfg.window_s)}; try again in {_duration(retry_in)}",
            ))
        if cfg.max_concurrent and len(self.in_flight) >= cfg.max_concurrent:
            return Reply(req.reply_to, ErrorEvent(
                req.request_id, ErrorCode.TOO_MANY_REQUESTS,
                f"{len(self.in_flight)} prompts are still being answered; the limit is "
                f"{cfg.max_concurrent} at once",
            ))
        self.in_flight[req.request_id] = now
        return item

    def release(self, r: Release, now: float) -> None:
        self.in_flight.pop(r.request_id, None)
        if r.tokens:
            self.spent.append((now, r.tokens))

    @property
    def idle(self) -> bool:
        return not self.in_flight and not self.spent


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


# -- The conversation state machine ------------------------------------------------------


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
            return [Reply(req.reply_to, ErrorEvent(
                req.request_id, ErrorCode.CONVERSATION_FORBIDDEN,
                f"conversation '{req.conversation_id}' belongs to another user",
            )), done]
        if any(p.request.request_id == req.request_id for p in self.pending):
            return []  # a re-delivered prompt, already queued
        if any(t.request_id == req.request_id for t in self.history):
            return [done]  # a re-delivered prompt, already answered
        needed = estimate_tokens(req.prompt) + estimate_tokens(cfg.system_prompt)
        if needed > cfg.input_limit:
            return [Reply(req.reply_to, ErrorEvent(
                req.request_id, ErrorCode.PROMPT_TOO_LARGE,
                f"the prompt needs about {needed} tokens; the model takes {cfg.input_limit}",
            )), done]
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

