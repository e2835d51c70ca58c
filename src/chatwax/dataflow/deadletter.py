"""A dead letter: a message that made a dataflow step fail, set aside instead of stopping
the cluster (`chatwax.dataflow.guard` makes them, the reply sink stores them).

It travels through the flow like a reply, and is stored in the dead-letter stream as the
original bytes with the original headers and why (docs/protocol.md, "Dead letters"): not
a JSON message, so it has no codec of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from nats.js.api import Header

from chatwax.core import wire

MAX_HEADER_CHARS: Final = 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Stored with the original bytes and headers, the step and the error (type and
    message, with the prompt's text cut out), and where it came from
    (`<partition>:<sequence>` of the prompts stream, when it came from there).
    """

    step: str
    error: str
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)
    origin: str = ""

    @property
    def subject(self) -> str:
        return f"{wire.DEAD_LETTERS_PREFIX}.{self.step}"

    def all_headers(self) -> dict[str, str]:
        """The original headers and why it is here. A message replayed after a restart that
        fails again at the same step is stored once (de-duplicated by step and origin)."""
        kept = {k: v for k, v in self.headers.items() if k != Header.MSG_ID}
        if self.origin:
            kept[Header.MSG_ID] = f"{self.step}:{self.origin}"
        return {**kept, wire.DEAD_STEP_HEADER: self.step,
                wire.DEAD_ERROR_HEADER: " ".join(self.error.split())[:MAX_HEADER_CHARS],
                wire.DEAD_ORIGIN_HEADER: self.origin}
