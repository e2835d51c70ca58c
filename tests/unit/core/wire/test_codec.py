"""The one codec: every wire message reads back as what was written, through the decoder
its readers use; unknown keys are ignored; a wrong shape is refused by name."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatwax.core import wire
from chatwax.core.errors import ErrorCode, ProtocolError
from chatwax.core.wire import (
    AckEvent,
    ChunkEvent,
    CompatPrompt,
    ErrorEvent,
    FinalEvent,
    ForgetRequest,
    PromptRequest,
    Transcript,
    Usage,
    commands,
    compat,
    messages,
)
from chatwax.core.wire.codec import Message, from_json, to_json

LIMIT = 1000
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)  # no lone surrogates
ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
prompts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=200).filter(
    str.strip)
reply_to = st.builds(str.__add__, st.sampled_from(wire.REPLY_PREFIXES),
                     st.from_regex(r"[A-Za-z0-9_-]{1,20}(\.[A-Za-z0-9_-]{1,8}){0,3}",
                                   fullmatch=True))
unix = st.floats(min_value=0, max_value=1e11, exclude_max=True)
numbers = st.floats(allow_nan=False, allow_infinity=False)  # what JSON (and safejson) carries
counts = st.integers(min_value=-(10**15), max_value=10**15)
usage = st.builds(Usage, counts, counts, st.sampled_from(wire.USAGE_SOURCES))

MESSAGES: dict[type[Message], st.SearchStrategy[Any]] = {
    PromptRequest: st.builds(PromptRequest, ids, ids, ids, prompts, reply_to, unix),
    ForgetRequest: st.builds(ForgetRequest, ids, ids, st.just("") | ids, reply_to),
    ChunkEvent: st.builds(ChunkEvent, text, counts, text),
    FinalEvent: st.builds(FinalEvent, text, text, text, text, usage, numbers,
                          st.none() | numbers, counts, numbers),
    ErrorEvent: st.builds(ErrorEvent, text, st.sampled_from(ErrorCode), text),
    AckEvent: st.builds(AckEvent, text, text, st.dictionaries(text, counts, max_size=4)),
    Transcript: st.builds(Transcript, text, text, text, counts, text, text, text, text, usage,
                          numbers, st.none() | numbers, numbers, numbers, numbers, text),
    CompatPrompt: st.builds(CompatPrompt, ids, prompts),
}
"""Every wire message, with values its checks accept."""

READERS: dict[type[Message], list[Callable[[bytes], Any]]] = {
    PromptRequest: [lambda d: wire.decode_prompt(d, LIMIT),
                    lambda d: wire.decode_inbound(d, LIMIT)],
    ForgetRequest: [lambda d: wire.decode_inbound(d, LIMIT, command=True)],
    ChunkEvent: [wire.decode_event],
    FinalEvent: [wire.decode_event],
    ErrorEvent: [wire.decode_event],
    AckEvent: [wire.decode_event],
    Transcript: [Transcript.decode, wire.decode_stored],
    CompatPrompt: [lambda d: wire.decode_compat(d, LIMIT)],
}
"""How each message is read where it is received."""


def test_every_wire_message_is_covered() -> None:
    defined = {c for module in (messages, commands, compat) for c in vars(module).values()
               if isinstance(c, type) and issubclass(c, Message) and c is not Message}
    assert defined == set(MESSAGES) == set(READERS)


@settings(max_examples=400, deadline=None)
@given(st.one_of(*MESSAGES.values()))
def test_every_message_round_trips_through_its_readers(message: Message) -> None:
    data = message.encode()
    for read in READERS[type(message)]:
        assert read(data) == message
    assert from_json(type(message), json.loads(data), max_prompt_chars=LIMIT) == message


@settings(max_examples=200, deadline=None)
@given(st.one_of(*MESSAGES.values()), st.dictionaries(st.text(max_size=8), text, max_size=3))
def test_unknown_and_derived_keys_are_ignored(message: Message, extra: dict[str, str]) -> None:
    """A newer sender may add keys; `total_tokens` and `retryable` are written, never read."""
    obj = {**extra, **to_json(message)}
    if isinstance(message, ErrorEvent):
        obj["retryable"] = not message.retryable
    if isinstance(message, FinalEvent | Transcript):
        obj["usage"]["total_tokens"] = -1
    data = json.dumps(obj).encode()
    assert all(read(data) == message for read in READERS[type(message)])


def test_derived_values_are_written_after_their_field() -> None:
    final = json.loads(FinalEvent("r", "c", "t", "m", Usage(1, 2), 1.0, None, 1).encode())
    assert list(final["usage"]) == ["input_tokens", "output_tokens", "total_tokens", "counted"]
    error = json.loads(ErrorEvent("r", ErrorCode.BUSY, "later").encode())
    assert list(error) == ["request_id", "code", "message", "type", "v", "retryable"]
    assert error["code"] == "busy" and error["retryable"] is True


def test_absent_keys_take_their_stand_ins() -> None:
    event = wire.decode_event(b'{"type": "final", "request_id": "r", "conversation_id": "c",'
                              b' "text": "t", "model": "m", "latency_ms": 1, "turn": 2}')
    assert event == FinalEvent("r", "c", "t", "m", Usage(0, 0, "server"), 1.0, None, 2, 0.0)
    assert wire.decode_event(b'{"type": "error"}') == ErrorEvent("", ErrorCode.INTERNAL, "")
    usage = from_json(Usage, {"input_tokens": "7", "counted": "guessed"})
    assert usage == Usage(7, 0, "estimate")


@pytest.mark.parametrize(("read", "data", "message"), [
    (wire.decode_event, b'{"type": "chunk", "request_id": "r", "index": "x", "delta": ""}',
     "malformed reply event (ValueError)"),
    (wire.decode_event, b'{"type": "ack"}', "malformed reply event (KeyError)"),
    (wire.decode_event, b'{"type": "final", "usage": [1]}', "malformed reply event (KeyError)"),
    (wire.decode_event, b'{"type": ["chunk"]}', "unknown event type ['chunk']"),
    (Transcript.decode, b'{"request_id": "r", "turn": "x"}', "malformed transcript (KeyError)"),
    (Transcript.decode, b'{"request_id": "r", "user_id": "u", "conversation_id": "c",'
     b' "turn": 1, "prompt": "", "answer": "", "model": "", "usage": [1]}',
     "malformed transcript (AttributeError)"),
])
def test_a_wrong_shape_is_refused_by_name(read: Callable[[bytes], Any], data: bytes,
                                          message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        read(data)
    assert info.value.code is ErrorCode.BAD_REQUEST and info.value.message == message
