"""Export formatting and PII scrubbing, without I/O."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatwax.core.export import (
    EMAIL_MARK,
    PHONE_MARK,
    Selection,
    conversation_lines,
    scrub_pii,
)
from chatwax.core.wire import Transcript, Usage


def _t(rid: str, turn: int, prompt: str, answer: str, kind: str = "turn") -> Transcript:
    return Transcript(rid, "alice", "c1", turn, prompt, answer, "m", "p", Usage(3, 4), 10.0,
                      1.0, float(turn), float(turn) + 0.5, kind=kind)


@pytest.mark.parametrize("text", [
    "mail ada@example.com now", "A.Lovelace+ml@math.cam.ac.uk", "x_y-z@sub-domain.io",
])
def test_emails_are_replaced(text: str) -> None:
    out = scrub_pii(text)
    assert EMAIL_MARK in out and "@" not in out


@pytest.mark.parametrize("text", [
    "+1 (555) 123-4567", "555-123-4567", "+44 20 7946 0958", "0151 496 0000", "(030) 1234567",
    "+49 30 12345678", "5551234567", "555.123.4567",
])
def test_phone_numbers_are_replaced(text: str) -> None:
    assert scrub_pii(f"call {text} today") == f"call {PHONE_MARK} today"


@pytest.mark.parametrize("text", [
    "2024-01-05", "order 12345", "version 3.11.4", "pi is 3.14159", "room 101", "1/2/2024",
    "it costs 1,299 dollars", "between 9 and 17",
])
def test_dates_amounts_and_versions_stay(text: str) -> None:
    assert scrub_pii(text) == text


@given(st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8})?@[a-z]{2,10}\.(com|org|de|io)", fullmatch=True),
       st.text(alphabet="abc ", max_size=10))
def test_any_plain_address_is_scrubbed(address: str, around: str) -> None:
    assert address not in scrub_pii(f"{around} {address} {around}")


def test_openai_format_is_system_then_alternating_turns_each_once() -> None:
    records = [_t("r2", 2, "and you?", "fine"), _t("r1", 1, "hi", "hello"),
               _t("r1", 1, "hi", "hello"),  # re-published after a restart
               _t("sum-r1", 1, "", "they said hi", kind="summary")]
    (line,) = conversation_lines("openai-jsonl", "be brief", records, Selection(), False)
    assert line.endswith("\n")
    assert json.loads(line) == {"messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "and you?"}, {"role": "assistant", "content": "fine"},
    ]}


def test_raw_format_keeps_every_record_with_its_usage_and_scrubs_on_demand() -> None:
    records = [_t("r1", 1, "I am ada@example.com", "hi"),
               _t("sum-r1", 1, "", "ada@example.com said hi", kind="summary")]
    lines = conversation_lines("jsonl", "sys", records, Selection(), True)
    objs = [json.loads(x) for x in lines]
    assert [o["kind"] for o in objs] == ["turn", "summary"]
    assert objs[0]["usage"] == {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7,
                                "counted": "server"}
    assert objs[0]["prompt"] == f"I am {EMAIL_MARK}"
    assert objs[1]["answer"] == f"{EMAIL_MARK} said hi"


def test_min_turns_and_the_time_window_select() -> None:
    records = [_t("r1", 1, "hi", "hello")]
    assert conversation_lines("openai-jsonl", "", records, Selection(min_turns=2), False) == []
    window = Selection(since=10.0, until=20.0)
    assert [window.keeps(t) for t in (9.9, 10.0, 19.9, 20.0)] == [False, True, True, False]


def test_times_are_spans_back_from_now_or_iso_dates() -> None:
    from chatwax.core.errors import ConfigError
    from chatwax.core.export import parse_time

    assert parse_time("24h", 100_000.0) == 100_000.0 - 86_400
    assert parse_time("2026-11-01", 0.0) == 1_793_491_200.0
    assert parse_time("2026-11-01T01:00+01:00", 0.0) == 1_793_491_200.0
    with pytest.raises(ConfigError, match="'yesterday'"):
        parse_time("yesterday", 0.0)
