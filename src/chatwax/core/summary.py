"""Running summaries of long conversations, made off the request path.

When a conversation's unfolded turns outgrow `trigger` times the token budget, its oldest
turns are folded, with the previous summary, into a new summary by an LLM call nobody
waits for; the newest turns that fill `keep` times the budget stay as they are. Until the new
summary arrives, calls use the last one and the turns that still fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from chatwax.core.history import Message, Turn
from chatwax.core.tokens import ESTIMATE, TokenCounter

SUMMARIZER_PROMPT: Final = (
    "You summarize a conversation between a user and an assistant, so that the assistant "
    "can go on with it later. Keep every fact, name, number, preference and decision the "
    "user gave, and what the assistant answered or promised; leave out greetings and "
    "filler. Write plain prose, at most {max_tokens} tokens."
)
"""The summarizer's system prompt; its first words mark a summary request in test servers."""
SUMMARIZER_MARK: Final = "You summarize a conversation"


@dataclass(frozen=True, slots=True)
class SummaryConfig:
    enabled: bool = False
    trigger: float = 0.75
    """Fold when the unfolded turns need more than this share of the budget."""
    keep: float = 0.5
    """After folding, the newest turns that fit this share of the budget stay."""
    max_tokens: int = 256
    model: str = ""
    """The model that writes summaries; empty: the conversation's own."""


def to_fold(history: Sequence[Turn], budget: int, cfg: SummaryConfig,
            counter: TokenCounter = ESTIMATE) -> int:
    """How many of the oldest turns to fold now (0: none). The newest turn always stays."""
    if not cfg.enabled or len(history) < 2:
        return 0
    sizes = [t.size(counter) for t in history]
    if sum(sizes) <= cfg.trigger * budget:
        return 0
    kept, room = 0, cfg.keep * budget
    for size in reversed(sizes):
        if kept and room - size < 0:
            break
        room -= size
        kept += 1
    return len(history) - kept


def summary_messages(previous: str, turns: Sequence[Turn], max_tokens: int) -> list[Message]:
    """The summarizer's request: the last summary and the turns to fold into it."""
    lines = []
    if previous:
        lines += ["Summary so far:", previous, ""]
    lines.append("Conversation to add:")
    for t in turns:
        lines += [f"User: {t.prompt}", f"Assistant: {t.answer}"]
    lines += ["", "Write the updated summary."]
    return [{"role": "system", "content": SUMMARIZER_PROMPT.format(max_tokens=max_tokens)},
            {"role": "user", "content": "\n".join(lines)}]
