"""A conversation's history and the messages one LLM call sends.

History is kept in whole turns and trimmed to a token budget, newest first, so the model
never sees half an exchange. Token counts before a call are estimates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

CHARS_PER_TOKEN: Final = 4
MESSAGE_OVERHEAD_TOKENS: Final = 4
"""Every chat message costs a few tokens of framing on top of its text."""

Message = dict[str, str]


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (~4 characters a token) used only for trimming.

    Usage metrics never use it: they come from the LLM server's own counts.
    """
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN + MESSAGE_OVERHEAD_TOKENS


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
