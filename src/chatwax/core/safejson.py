"""JSON from bytes nobody vouches for, bounded before it is parsed.

Python's parser has no limits of its own that fail cleanly: a deeply nested document
raises `RecursionError`, a 5,000-digit integer `ValueError` (the int digits limit), a
400-digit one parses and then `float()` of it raises `OverflowError`, and `1e999` parses as
infinity. Anything that crosses a trust boundary is loaded here instead, so every way a
payload can be wrong ends as one `ProtocolError` with a reason: size and nesting are
checked on the raw bytes first, numbers while parsing.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

from chatwax.core.errors import ErrorCode, ProtocolError

MAX_DEPTH: Final = 16
"""Nesting always allowed (beyond 32, never); chatwax's own messages nest two levels."""
MAX_NUMBER_CHARS: Final = 32
"""A number's text at most: a float64 needs 24, unix nanoseconds 19."""

_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_exceeds(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether brackets outside strings nest too deep (or do not balance): nesting up to
    `limit` always passes, beyond twice `limit` never does.

    Most payloads have fewer brackets than the limit, which settles it at once. Otherwise
    strings are cut out, everything but brackets deleted, and empty pairs removed, `[]`
    then `{}`, at most `limit` times: each pass takes one or two levels. All of it runs in
    C: no Python loop per byte, and no recursion.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return False
        fewer = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if len(fewer) == len(brackets):
            return True  # no pair left to remove: the brackets do not balance
        brackets = fewer
    return bool(brackets)


def _number(text: str, convert: type[int] | type[float]) -> int | float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number has {len(text)} characters; the limit is {MAX_NUMBER_CHARS}")
    value = convert(text)
    if isinstance(value, float) and not math.isfinite(value):
        raise _Refused(f"number {text} is out of range")
    return value


def _int(text: str) -> int | float:
    return _number(text, int)


def _float(text: str) -> int | float:
    return _number(text, float)


def _constant(text: str) -> float:
    raise _Refused(f"{text} is not a JSON number")


class _Refused(Exception):
    """Raised inside the parser's hooks; turned into a ProtocolError by `loads`."""


def loads(data: bytes, max_bytes: int, what: str = "payload") -> Any:
    """Parse untrusted JSON; every failure is a `ProtocolError(BAD_REQUEST)` saying why."""
    if len(data) > max_bytes:
        raise ProtocolError(ErrorCode.PROMPT_TOO_LARGE,
                            f"{what} has {len(data)} bytes; the limit is {max_bytes}")
    if nesting_exceeds(data):
        raise ProtocolError(ErrorCode.BAD_REQUEST,
                            f"{what} nests deeper than {MAX_DEPTH} levels (or its brackets "
                            "do not balance)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{what} is not valid UTF-8") from None
    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except _Refused as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{what}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST,
                            f"{what} is not valid JSON: {exc.msg}") from None
    except (RecursionError, ValueError, OverflowError) as exc:  # belt and braces
        raise ProtocolError(ErrorCode.BAD_REQUEST,
                            f"{what} cannot be read ({type(exc).__name__})") from None


def check_text(value: str, name: str) -> str:
    """Text that can be sent on: JSON's `\\ud800` escapes decode to lone surrogates, which
    no UTF-8 encoder (a reply, a transcript, the LLM request) accepts."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(ErrorCode.BAD_REQUEST,
                            f"'{name}' contains an unpaired surrogate (\\ud800-\\udfff)") from None
    return value
