"""A conversation's history and the messages one LLM call sends.

History is kept in whole turns; a call sends the system prompt, the running summary of
older turns (when there is one), the newest turns that fit the token budget, and the new
prompt. A turn is kept or left out whole, so the model never sees half an exchange.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from chatwax.core.tokens import ESTIMATE, TokenCounter, message_tokens

Message = dict[str, str]

SUMMARY_PREFIX: Final = "Summary of the earlier conversation:\n"
"""How the running summary reaches the model: a system message before the recent turns."""


@dataclass(slots=True)
class Turn:
    request_id: str
    prompt: str
    answer: str
    tokens: int = -1
    """Both messages' tokens as counted when the turn ended; -1: not counted (estimate)."""

    def size(self, counter: TokenCounter = ESTIMATE) -> int:
        if self.tokens >= 0:
            return self.tokens
        return message_tokens(counter, self.prompt) + message_tokens(counter, self.answer)

    def __reduce__(self) -> tuple[type[Turn], tuple[str, str, str, int]]:
        # Positional fields: smaller snapshots, and loading a million of them at a restart
        # takes half the time of pickle's default state dict.
        return Turn, (self.request_id, self.prompt, self.answer, self.tokens)


@dataclass(frozen=True, slots=True)
class BuiltPrompt:
    messages: list[Message]
    tokens: int
    dropped_turns: int


def build_messages(system_prompt: str, history: Sequence[Turn], prompt: str, budget: int,
                   counter: TokenCounter = ESTIMATE, summary: str = "") -> BuiltPrompt:
    """System prompt, summary, then the newest past turns that fit the budget, then the
    prompt. Older turns go first. The system prompt, summary and prompt are always sent."""
    used = message_tokens(counter, prompt)
    if system_prompt:
        used += message_tokens(counter, system_prompt)
    if summary:
        used += message_tokens(counter, SUMMARY_PREFIX + summary)
    kept: list[Turn] = []
    for turn in reversed(history):
        size = turn.size(counter)
        if used + size > budget:
            break
        used += size
        kept.append(turn)
    kept.reverse()
    messages: list[Message] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    if summary:
        messages.append({"role": "system", "content": SUMMARY_PREFIX + summary})
    for turn in kept:
        messages.append({"role": "user", "content": turn.prompt})
        messages.append({"role": "assistant", "content": turn.answer})
    messages.append({"role": "user", "content": prompt})
    return BuiltPrompt(messages, used, len(history) - len(kept))


def trim_history(history: list[Turn], budget: int,
                 counter: TokenCounter = ESTIMATE) -> list[Turn]:
    """Keep only the newest turns that could ever be sent again; the rest is transcript."""
    used = 0
    start = len(history)
    for i in range(len(history) - 1, -1, -1):
        used += history[i].size(counter)
        if used > budget:
            break
        start = i
    return history[start:]
