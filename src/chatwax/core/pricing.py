"""What tokens cost: a price table per model, in US dollars per million tokens.

Defaults cover common OpenAI models (list prices; check your contract). Local and
unknown models cost nothing. `CHATWAX_PRICES` adds or overrides entries, e.g.
`gpt-4o-mini=0.15:0.60;my-model=1:2` (input:output per million tokens).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from chatwax.core.errors import ConfigError
from chatwax.core.wire import Usage


@dataclass(frozen=True, slots=True)
class Price:
    input_per_million: float
    output_per_million: float

    def cost(self, usage: Usage) -> float:
        return (usage.input_tokens * self.input_per_million
                + usage.output_tokens * self.output_per_million) / 1_000_000


FREE: Final = Price(0.0, 0.0)

DEFAULT_PRICES: Final[Mapping[str, Price]] = {
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1": Price(2.00, 8.00),
    "o4-mini": Price(1.10, 4.40),
    "o3-mini": Price(1.10, 4.40),
    "o3": Price(2.00, 8.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
}


def parse_prices(spec: str) -> dict[str, Price]:
    """`model=in:out;model=in:out` -> prices; a malformed entry names itself."""
    out: dict[str, Price] = {}
    for entry in filter(None, (e.strip() for e in spec.split(";"))):
        model, sep, rest = entry.partition("=")
        inp, sep2, outp = rest.partition(":")
        try:
            if not (sep and sep2 and model.strip()):
                raise ValueError
            out[model.strip()] = Price(float(inp), float(outp))
        except ValueError:
            raise ConfigError(
                f"CHATWAX_PRICES entry {entry!r} is not 'model=input:output'"
            ) from None
    return out


class PriceTable:
    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self.prices = {**DEFAULT_PRICES, **(overrides or {})}
        # Longest names first, so "gpt-4o-mini-2024-07-18" matches gpt-4o-mini, not gpt-4o.
        self._by_length = sorted(self.prices, key=len, reverse=True)

    def price(self, model: str) -> Price:
        if model in self.prices:
            return self.prices[model]
        for name in self._by_length:
            if model.startswith(name):
                return self.prices[name]
        return FREE

    def cost(self, model: str, usage: Usage) -> float:
        return self.price(model).cost(usage)
