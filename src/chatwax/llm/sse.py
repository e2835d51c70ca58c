"""Server-sent events of a streamed chat completion, read without the SDK's models.

Building a pydantic model per token was most of the dataflow's CPU, so the stream is
framed and parsed here: SSE lines to event data, event data to a small `Chunk`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from chatwax.core.wire import Usage


class StreamError(Exception):
    """The server reported an error inside the event stream."""


class SseEvents:
    """Server-sent events from lines: the data of each event, once its blank line comes."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if not line:
            data, self._data = self._data, []
            return "\n".join(data) if data else None
        if line.startswith("data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None  # comments (":"), event:, id: and retry: lines carry nothing we use


@dataclass(frozen=True, slots=True)
class Chunk:
    deltas: list[str]
    finished: bool
    usage: Usage | None
    model: str | None


def parse_chunk(data: str) -> Chunk:
    """One `chat.completion.chunk`; anything else raises ValueError (a malformed stream)."""
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("a stream event is not a JSON object")
    if obj.get("error"):
        error = obj["error"]
        raise StreamError(str(error.get("message") if isinstance(error, dict) else error)[:200])
    choices = obj.get("choices")
    choices = [] if choices is None else choices
    raw_usage = obj.get("usage")
    model = obj.get("model")
    if (not isinstance(choices, list) or not isinstance(raw_usage, dict | None)
            or not isinstance(model, str | None)):
        raise ValueError("a stream event has fields of the wrong type")
    deltas: list[str] = []
    finished = False
    for choice in choices:
        if not isinstance(choice, dict):
            raise ValueError("a stream choice is not an object")
        content = (choice.get("delta") or {}).get("content")
        if content:
            if not isinstance(content, str):
                raise ValueError("a stream delta's content is not text")
            deltas.append(content)
        finished = finished or choice.get("finish_reason") is not None
    usage = None
    if raw_usage is not None:
        usage = Usage(int(raw_usage.get("prompt_tokens") or 0),
                      int(raw_usage.get("completion_tokens") or 0))
    return Chunk(deltas, finished, usage, model or None)
