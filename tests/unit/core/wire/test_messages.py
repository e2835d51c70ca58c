"""The wire contract: what is accepted, what is refused, and with which code."""

from __future__ import annotations

import json

import pytest

from chatwax.core import wire
from chatwax.core.errors import ErrorCode, ProtocolError
from chatwax.core.wire import ChunkEvent, ErrorEvent, FinalEvent, PromptRequest, Transcript, Usage


def _prompt(**over: object) -> bytes:
    obj: dict[str, object] = {
        "v": 1, "request_id": "r1", "user_id": "alice", "conversation_id": "c1",
        "prompt": "hello", "reply_to": "_INBOX.abc",
    }
    obj.update(over)
    return json.dumps({k: v for k, v in obj.items() if v is not ...}).encode()


def test_valid_prompt_round_trips() -> None:
    req = PromptRequest("r1", "alice", "c1", "hello", "_INBOX.x", created_at=12.5)
    assert wire.decode_prompt(req.encode(), 100) == req


@pytest.mark.parametrize(
    ("payload", "code", "fragment"),
    [
        (b"{not json", ErrorCode.BAD_REQUEST, "not valid JSON"),
        (b"\xff\xfe", ErrorCode.BAD_REQUEST, "UTF-8"),
        (b"[1, 2]", ErrorCode.BAD_REQUEST, "JSON object"),
        (_prompt(prompt=...), ErrorCode.BAD_REQUEST, "'prompt'"),
        (_prompt(prompt="   "), ErrorCode.BAD_REQUEST, "'prompt'"),
        (_prompt(prompt=42), ErrorCode.BAD_REQUEST, "'prompt'"),
        (_prompt(prompt="x" * 101), ErrorCode.PROMPT_TOO_LARGE, "101 characters"),
        (_prompt(user_id=...), ErrorCode.BAD_REQUEST, "'user_id'"),
        (_prompt(user_id="a.b"), ErrorCode.BAD_REQUEST, "'user_id' may only"),
        (_prompt(user_id="a*"), ErrorCode.BAD_REQUEST, "'user_id' may only"),
        (_prompt(user_id="u" * 65), ErrorCode.BAD_REQUEST, "longer than 64"),
        (_prompt(conversation_id="c >"), ErrorCode.BAD_REQUEST, "'conversation_id'"),
        (_prompt(request_id=7), ErrorCode.BAD_REQUEST, "'request_id'"),
        (_prompt(reply_to="chatwax.prompts.1"), ErrorCode.BAD_REQUEST, "'reply_to' must start"),
        (_prompt(reply_to="_INBOX.*"), ErrorCode.BAD_REQUEST, "not a valid NATS subject"),
        (_prompt(reply_to="_INBOX..x"), ErrorCode.BAD_REQUEST, "not a valid NATS subject"),
        (_prompt(v=2), ErrorCode.UNSUPPORTED_VERSION, "version 2"),
        (_prompt(created_at="yesterday"), ErrorCode.BAD_REQUEST, "'created_at'"),
    ],
)
def test_invalid_prompts_are_refused_with_a_clear_code(
    payload: bytes, code: ErrorCode, fragment: str
) -> None:
    with pytest.raises(ProtocolError) as info:
        wire.decode_prompt(payload, max_prompt_chars=100)
    assert info.value.code is code
    assert fragment in info.value.message


def test_a_too_long_prompt_is_refused_as_such_whatever_else_is_wrong() -> None:
    """The prompt (then `created_at`) is checked before the ids: a client that sends too
    much text hears `prompt_too_large`, not a complaint about another field."""
    with pytest.raises(ProtocolError) as info:
        wire.decode_prompt(_prompt(prompt="x" * 101, user_id="a.b", created_at="x"), 100)
    assert info.value.code is ErrorCode.PROMPT_TOO_LARGE
    with pytest.raises(ProtocolError, match="'created_at'"):
        wire.decode_prompt(_prompt(user_id="a.b", created_at="x"), 100)


def test_events_round_trip_and_errors_say_if_retryable() -> None:
    final = FinalEvent("r1", "c1", "hi there", "m", Usage(3, 2), 10.0, 1.5, 4)
    chunk = ChunkEvent("r1", 0, "hi")
    err = ErrorEvent("r1", ErrorCode.RATE_LIMITED, "slow down")
    assert wire.decode_event(final.encode()) == final
    assert wire.decode_event(chunk.encode()) == chunk
    assert wire.decode_event(err.encode()) == err
    assert json.loads(err.encode())["retryable"] is True
    assert json.loads(ErrorEvent("r", ErrorCode.BAD_REQUEST, "x").encode())["retryable"] is False
    assert json.loads(final.encode())["usage"] == {
        "input_tokens": 3, "output_tokens": 2, "total_tokens": 5, "counted": "server",
    }


def test_unknown_error_codes_degrade_to_internal() -> None:
    data = json.dumps({"type": "error", "request_id": "r", "code": "new_thing"}).encode()
    event = wire.decode_event(data)
    assert isinstance(event, ErrorEvent) and event.code is ErrorCode.INTERNAL


def test_transcript_round_trips() -> None:
    t = Transcript("r1", "alice", "c1", 2, "q", "a", "m", "local", Usage(5, 6), 12.0, None,
                   1.0, 2.0)
    assert Transcript.decode(t.encode()) == t
