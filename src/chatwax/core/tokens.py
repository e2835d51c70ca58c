"""Counting tokens: the one counter that history trimming, summaries and usage share.

A `TokenCounter` counts the tokens of a text. The dataflow picks the best one it has for
its model (`chatwax.llm.tokenizers`): the model's own tokenizer where one is available
offline, else `Estimate`. Every count says which it was, so that an estimate is never
taken for an exact number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

CHARS_PER_TOKEN: Final = 4
MESSAGE_OVERHEAD_TOKENS: Final = 4
"""Every chat message costs a few tokens of framing on top of its text (role, separators)."""


class TokenCounter(Protocol):
    @property
    def kind(self) -> str:
        """"tokenizer" (the model's own) or "estimate"."""
        ...

    def count(self, text: str) -> int:
        """Tokens of `text` alone, without message framing."""
        ...


@dataclass(frozen=True, slots=True)
class Estimate:
    """About four characters a token: what is left when no tokenizer is at hand."""

    @property
    def kind(self) -> str:
        return "estimate"

    def count(self, text: str) -> int:
        return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


ESTIMATE: Final = Estimate()


def message_tokens(counter: TokenCounter, text: str) -> int:
    """One chat message of `text`: its tokens and its framing."""
    return counter.count(text) + MESSAGE_OVERHEAD_TOKENS


def messages_tokens(counter: TokenCounter, messages: Iterable[dict[str, str]]) -> int:
    return sum(message_tokens(counter, m["content"]) for m in messages)
