"""Untrusted JSON is bounded before it is parsed: every bad payload is one ProtocolError."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatwax.core import safejson, wire
from chatwax.core.errors import ErrorCode, ProtocolError

BASE = {"request_id": "r1", "user_id": "u", "conversation_id": "c", "prompt": "hi",
        "reply_to": "_INBOX.x"}


def _with(**fields: object) -> bytes:
    return json.dumps({**BASE, **fields}).encode()


KILLERS = {
    # The three messages that stopped every dataflow process (issue #19), and their kin.
    "array nested 5,000 deep": b"[" * 5000 + b"]" * 5000,
    "created_at of 5,000 digits": _with(created_at=0).replace(b"0}", b"9" * 5000 + b"}"),
    "created_at of 400 digits": _with(created_at=int("9" * 400)),
    "object nested 2,000 deep": b'{"a":' * 2000 + b"1" + b"}" * 2000,
    "1e999": _with(created_at=0).replace(b"0}", b"1e999}"),
    "NaN": _with(created_at=0).replace(b"0}", b"NaN}"),
    "created_at 1e300": _with(created_at=1e300),
    "negative created_at": _with(created_at=-5),
    "lone surrogate in the prompt": _with(prompt="\ud800 hi"),
    "id with a trailing newline": _with(user_id="alice\n"),
    "reply_to with a trailing newline": _with(reply_to="_INBOX.x\n"),
    "not UTF-8": b'{"prompt": "\xff"}',
    "larger than any prompt": _with(prompt="x" * 200_000),
}


@pytest.mark.parametrize("name", KILLERS)
def test_known_killers_are_refused_with_a_reason(name: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        wire.decode_prompt(KILLERS[name], max_prompt_chars=32_000)
    assert caught.value.code in (ErrorCode.BAD_REQUEST, ErrorCode.PROMPT_TOO_LARGE)
    assert caught.value.message


def test_a_valid_prompt_still_parses() -> None:
    req = wire.decode_prompt(_with(created_at=1_700_000_000.5), max_prompt_chars=100)
    assert req.created_at == 1_700_000_000.5 and req.user_id == "u"


def test_size_is_checked_before_parsing() -> None:
    limit = wire.max_inbound_bytes(10)
    with pytest.raises(ProtocolError) as caught:
        safejson.loads(b" " * (limit + 1), limit)
    assert caught.value.code is ErrorCode.PROMPT_TOO_LARGE


def test_the_largest_valid_prompt_fits_the_byte_limit() -> None:
    """Control characters take 6 bytes each in JSON: still within the limit."""
    chars = 1000
    data = _with(prompt="\x01" * chars, request_id="r" * 64, user_id="u" * 64,
                 conversation_id="c" * 128, reply_to="_INBOX." + "x" * 248,
                 created_at=1_700_000_000.123456)
    assert len(data) <= wire.max_inbound_bytes(chars)
    assert wire.decode_prompt(data, chars).prompt == "\x01" * chars


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=safejson.MAX_DEPTH),
       st.sampled_from([(b"[", b"]"), (b'{"k":', b"}")]))
def test_nesting_within_the_limit_parses(depth: int, pair: tuple[bytes, bytes]) -> None:
    opening, closing = pair
    assert safejson.loads(opening * depth + b"1" + closing * depth, 1 << 20) is not None


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=2 * safejson.MAX_DEPTH + 1, max_value=20_000))
def test_nesting_past_twice_the_limit_is_refused(depth: int) -> None:
    with pytest.raises(ProtocolError):
        safejson.loads(b"[" * depth + b"]" * depth, 1 << 20)


def test_brackets_inside_strings_do_not_count() -> None:
    data = json.dumps({"prompt": "[" * 5000 + '"' + "{" * 100}).encode()
    assert safejson.loads(data, 1 << 20)["prompt"].startswith("[[[")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2048) | st.text(alphabet="[]{}\",:0123456789.eE-+ aN\\u",
                                          max_size=400).map(str.encode))
def test_any_bytes_parse_or_raise_only_a_protocol_error(data: bytes) -> None:
    try:
        safejson.loads(data, 1 << 20)
    except ProtocolError as exc:
        assert exc.message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512) | st.dictionaries(
    st.sampled_from(["request_id", "user_id", "conversation_id", "turn", "prompt", "answer",
                     "model", "usage", "created_at"]),
    st.none() | st.integers() | st.text(max_size=8) | st.lists(st.integers(), max_size=2),
).map(lambda o: json.dumps(o).encode()))
def test_a_transcript_record_is_read_or_skipped_never_an_exception(data: bytes) -> None:
    """Readers of the transcripts stream (history, usage, export) skip what they cannot
    read; anyone with publish rights could have written it."""
    got = wire.decode_stored(data)
    assert got is None or isinstance(got, wire.Transcript)


def test_a_valid_transcript_is_read_back() -> None:
    t = wire.Transcript("r", "u", "c", 1, "p", "a", "m", "local", wire.Usage(1, 2),
                            3.0, None, 1.0, 2.0)
    assert wire.decode_stored(t.encode()) == t
    assert wire.decode_stored(b'{"request_id": "r", "turn": "x"}') is None
