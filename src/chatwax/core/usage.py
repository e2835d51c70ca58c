"""Who spent how many tokens: per-user, per-model and per-conversation usage.

Prometheus holds only bounded labels, so per-user numbers come from the transcripts
stream, where every completed turn records its model, usage, latency and cost. The
aggregation is pure; `chatwax.client.transcripts` reads the stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from chatwax.core.errors import ConfigError
from chatwax.core.units import parse_duration
from chatwax.core.wire import Transcript

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


def _count(row: UsageRow, t: Transcript) -> None:
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


def _ranked(rows: dict[str, UsageRow]) -> list[UsageRow]:
    return sorted(rows.values(), key=lambda r: (-r.total_tokens, r.key))


MINUTE = 60.0


@dataclass(slots=True)
class UsageReport:
    """Every view of the usage pages and `chatwax usage`, built in one pass over the
    stream: records are added one at a time and never kept (a record carries a whole
    prompt and answer). What stays is a row per user, model and conversation, the tokens
    per model per minute, and the request ids seen (a record stored twice counts once)."""

    by: dict[GroupBy, dict[str, UsageRow]] = field(
        default_factory=lambda: {"user": {}, "model": {}, "conversation": {}})
    minutes: dict[tuple[float, str], int] = field(default_factory=dict)
    """(start of the minute, model) -> tokens."""
    seen: set[str] = field(default_factory=set)

    def add(self, t: Transcript) -> None:
        if t.request_id in self.seen:
            return
        self.seen.add(t.request_id)
        for by, rows in self.by.items():
            key = _key(t, by)
            _count(rows.setdefault(key, UsageRow(key)), t)
        minute = (t.finished_at // MINUTE * MINUTE, t.model)
        self.minutes[minute] = self.minutes.get(minute, 0) + t.usage.total_tokens

    def rows(self, by: GroupBy) -> list[UsageRow]:
        """One row per key, most tokens first."""
        return _ranked(self.by[by])

    def series(self) -> tuple[str, list[tuple[float, str, int]]]:
        """Tokens over time by model, in buckets that fit the span (a minute up to 6 h,
        an hour up to 7 days, else a day): (bucket name, [(start, model, tokens)])."""
        if not self.minutes:
            return "1min", []
        starts = [m for m, _ in self.minutes]
        span = max(starts) - min(starts)
        name, size = (("1min", MINUTE) if span <= 6 * 3600 else
                      ("1h", 3600.0) if span <= 7 * 86_400 else ("1D", 86_400.0))
        out: dict[tuple[float, str], int] = {}
        for (start, model), tokens in self.minutes.items():
            key = (start // size * size, model)
            out[key] = out.get(key, 0) + tokens
        return name, sorted((s, m, n) for (s, m), n in out.items())


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
