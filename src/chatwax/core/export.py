"""Transcripts as training data: which turns go out, in which shape, without which PII.

Pure functions over `Transcript`s; `chatwax.client.export` reads the stream and writes the
file. One line per conversation in OpenAI's chat fine-tuning format (`openai-jsonl`), or
one line per stored record with its usage (`jsonl`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from chatwax.core.errors import ConfigError
from chatwax.core.usage import parse_since
from chatwax.core.wire import Transcript

Format = Literal["openai-jsonl", "jsonl"]
FORMATS: Final[tuple[Format, ...]] = ("openai-jsonl", "jsonl")

_EMAIL: Final = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE: Final = re.compile(
    r"(?<![\w+])"                         # not inside a word or a longer number
    r"(?:\+\d{1,3}[\s.-]?)?"              # country code
    r"(?:\(\d{1,4}\)[\s.-]?)?"            # area code in parentheses
    r"\d{2,4}(?:[\s.-]?\d{2,4}){1,4}"     # digit groups
    r"(?![\w])"
)
_DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$|^\d{1,2}[./-]\d{1,2}[./-]\d{2,4}$")
EMAIL_MARK: Final = "[email]"
PHONE_MARK: Final = "[phone]"


def _phone(m: re.Match[str]) -> str:
    text = m.group(0)
    digits = sum(c.isdigit() for c in text)
    if not 7 <= digits <= 15 or _DATE.match(text):
        return text  # too short or long for a phone number, or a date
    if text.isdigit() and not 10 <= digits <= 15:
        return text  # a bare run of digits: an amount or an id, unless it is phone-long
    return PHONE_MARK


def scrub_pii(text: str) -> str:
    """E-mail addresses and phone numbers replaced by `[email]` and `[phone]`."""
    return _PHONE.sub(_phone, _EMAIL.sub(EMAIL_MARK, text))


def parse_time(text: str, now: float) -> float:
    """`--since`/`--until`: a span back from now (`24h`, `7d`) or a date or time in ISO
    8601 (`2026-11-01`, `2026-11-01T12:00`, UTC unless it says otherwise), as unix seconds."""
    try:
        span = parse_since(text)
    except ConfigError:
        try:
            when = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ConfigError(f"{text!r} is neither a span like 24h or 7d nor a date like "
                              "2026-11-01 or 2026-11-01T12:00") from None
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    return 0.0 if span is None else now - span


@dataclass(frozen=True, slots=True)
class Selection:
    """Which records go out: stored in [since, until) (unix seconds), of one user, from
    conversations with at least `min_turns` turns in that window."""

    since: float | None = None
    until: float | None = None
    user: str | None = None
    min_turns: int = 1

    def keeps(self, stored_at: float) -> bool:
        return ((self.since is None or stored_at >= self.since)
                and (self.until is None or stored_at < self.until))


def unique(records: Iterable[Transcript], kind: str = "turn") -> list[Transcript]:
    """The conversation's records of one kind in order, each once (a record re-published
    after a restart is stored twice)."""
    seen: dict[str, Transcript] = {}
    for t in records:
        if t.kind == kind:
            seen.setdefault(t.request_id, t)
    return sorted(seen.values(), key=lambda t: (t.turn, t.finished_at))


def openai_record(system_prompt: str, turns: Sequence[Transcript], scrub: bool) -> dict[str, Any]:
    """One conversation as OpenAI's chat fine-tuning format reads it."""
    clean = scrub_pii if scrub else _same
    messages = [{"role": "system", "content": clean(system_prompt)}] if system_prompt else []
    for t in turns:
        messages.append({"role": "user", "content": clean(t.prompt)})
        messages.append({"role": "assistant", "content": clean(t.answer)})
    return {"messages": messages}


def raw_record(t: Transcript, scrub: bool) -> dict[str, Any]:
    """One stored record with its usage, as the stream holds it (text scrubbed on demand)."""
    obj = json.loads(t.encode())
    if scrub:
        obj["prompt"] = scrub_pii(t.prompt)
        obj["answer"] = scrub_pii(t.answer)
    return obj


def conversation_lines(fmt: Format, system_prompt: str, records: Sequence[Transcript],
                       selection: Selection, scrub: bool) -> list[str]:
    """The lines one conversation contributes (none if it has too few turns)."""
    turns = unique(records)
    if len(turns) < max(selection.min_turns, 1):
        return []
    if fmt == "openai-jsonl":
        return [_line(openai_record(system_prompt, turns, scrub))]
    ordered = sorted([*turns, *unique(records, "summary")], key=lambda t: t.finished_at)
    return [_line(raw_record(t, scrub)) for t in ordered]


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def _same(text: str) -> str:
    return text
