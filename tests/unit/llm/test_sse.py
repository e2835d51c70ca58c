"""Reading the LLM's event stream: SSE framing and chunk parsing, without I/O."""

from __future__ import annotations

import json

import pytest

from chatwax.core.wire import Usage
from chatwax.llm.sse import Chunk, SseEvents, StreamError, parse_chunk


def events(lines: list[str]) -> list[str]:
    sse = SseEvents()
    return [d for line in lines if (d := sse.feed(line)) is not None]


def test_events_end_at_blank_lines_and_join_their_data_lines() -> None:
    assert events(["data: one", "", ": keep-alive", "", "event: x", "data:two", "data: 2b",
                   "id: 7", "", "data: [DONE]", ""]) == ["one", "two\n2b", "[DONE]"]
    assert events(["data: unfinished"]) == []  # no blank line yet: not an event


def test_a_chunk_gives_its_deltas_finish_usage_and_model() -> None:
    chunk = parse_chunk(json.dumps({
        "model": "m-1", "choices": [{"index": 0, "delta": {"role": "assistant",
                                                           "content": "Hel"}},
                                    {"index": 1, "delta": {"content": "lo"},
                                     "finish_reason": "stop"}]}))
    assert chunk == Chunk(["Hel", "lo"], True, None, "m-1")
    usage = parse_chunk('{"choices": [], "usage": {"prompt_tokens": 3, '
                        '"completion_tokens": 5, "total_tokens": 8}}')
    assert usage == Chunk([], False, Usage(3, 5), None)
    empty = parse_chunk('{"choices": [{"delta": {}, "finish_reason": null}]}')
    assert empty == Chunk([], False, None, None)


@pytest.mark.parametrize("data", ["not json", "[1, 2]", '{"choices": {}}',
                                  '{"choices": ["x"]}', '{"usage": 3}',
                                  '{"choices": [{"delta": {"content": 5}}]}'])
def test_a_malformed_chunk_is_a_value_error(data: str) -> None:
    with pytest.raises(ValueError):
        parse_chunk(data)


def test_an_error_event_raises_with_the_servers_message() -> None:
    with pytest.raises(StreamError, match="overloaded"):
        parse_chunk('{"error": {"message": "model overloaded", "type": "server_error"}}')
