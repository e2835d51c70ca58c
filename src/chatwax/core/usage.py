"""Who spent how many tokens: per-user, per-model and per-conversation usage.

Prometheus holds only bounded labels, so per-user numbers come from the transcripts
stream, where every completed turn records its model, usage, latency and cost. The
aggregation is pure; `chatwax.client.transcripts` reads the stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from chatwax.core.errors import ConfigError
from chatwax.core.protocol import Transcript
from chatwax.core.units import parse_duration

GroupBy = Literal["user", "model", "conversation"]


def parse_since(text: str) -> float | None:
    """`30m`, `24h`, `7d`, ... as seconds; `all` means no limit (None)."""
    if text == "all":
        return None
    problem = ConfigError(f"--since {text!r} is not like 30m, 24h, 7d or all")
    if not text.strip()[-1:].isalpha():
        raise problem  # a bare number is ambiguous here
    try:
        return parse_duration(text)
    except ConfigError:
        raise problem from None


@dataclass(slots=True)
class UsageRow:
    key: str
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms_sum: float = 0.0
    summaries: int = 0
    """Summary calls: their tokens and cost count, they are not turns."""
    estimated_tokens: int = 0
    """Of the tokens, those chatwax estimated because the server reported none."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def avg_latency_ms(self) -> float:
        return self.latency_ms_sum / self.turns if self.turns else 0.0


def _key(t: Transcript, by: GroupBy) -> str:
    if by == "user":
        return t.user_id
    if by == "model":
        return t.model
    return f"{t.user_id}/{t.conversation_id}"


def aggregate(transcripts: Iterable[Transcript], by: GroupBy) -> list[UsageRow]:
    """One row per key, most tokens first; each request counted once."""
    rows: dict[str, UsageRow] = {}
    seen: set[str] = set()
    for t in transcripts:
        if t.request_id in seen:
            continue
        seen.add(t.request_id)
        row = rows.setdefault(_key(t, by), UsageRow(_key(t, by)))
        if t.kind == "turn":
            row.turns += 1
            row.latency_ms_sum += t.latency_ms
        else:
            row.summaries += 1
        row.input_tokens += t.usage.input_tokens
        row.output_tokens += t.usage.output_tokens
        if t.usage.estimated:
            row.estimated_tokens += t.usage.total_tokens
        row.cost_usd += t.cost_usd
    return sorted(rows.values(), key=lambda r: (-r.total_tokens, r.key))


def total(rows: Iterable[UsageRow]) -> UsageRow:
    out = UsageRow("total")
    for r in rows:
        out.turns += r.turns
        out.input_tokens += r.input_tokens
        out.output_tokens += r.output_tokens
        out.cost_usd += r.cost_usd
        out.latency_ms_sum += r.latency_ms_sum
        out.summaries += r.summaries
        out.estimated_tokens += r.estimated_tokens
    return out


def format_table(rows: list[UsageRow], by: GroupBy) -> str:
    """A plain table; `estimated` is the part of `total` chatwax counted itself because
    the server reported no usage."""
    header = (by, "turns", "summaries", "input", "output", "total", "estimated", "cost USD",
              "avg ms")
    lines = [(r.key, str(r.turns), str(r.summaries), str(r.input_tokens), str(r.output_tokens),
              str(r.total_tokens), str(r.estimated_tokens), f"{r.cost_usd:.6f}",
              f"{r.avg_latency_ms:.0f}")
             for r in [*rows, total(rows)]]
    widths = [max(len(x) for x in col) for col in zip(header, *lines, strict=True)]

    def fmt(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(x) for x in lines[:-1]), rule, fmt(lines[-1])])
