"""What a field may hold, and how large a message may be. Every check raises a
`ProtocolError` whose code and message the sender sees in its `error` reply."""

from __future__ import annotations

import math
import re
from typing import Final

from chatwax.core import safejson
from chatwax.core.errors import ErrorCode, ProtocolError
from chatwax.core.wire.subjects import REPLY_PREFIXES

_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
"""Matched whole (`fullmatch`): `$` would also accept a trailing newline."""
MAX_USER_ID: Final = 64
MAX_CONVERSATION_ID: Final = 128
MAX_REQUEST_ID: Final = 64
_REPLY_RE: Final = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
MAX_REPLY_TO: Final = 255

ENVELOPE_BYTES: Final = 2048
"""A prompt message's bytes besides the prompt: ids, reply subject, keys, numbers."""
MAX_MESSAGE_BYTES: Final = 8 * 1024 * 1024
"""What a reply event or transcript may be at most (NATS's own payload limit is lower)."""


def check_id(value: object, name: str, max_len: int) -> str:
    """Ids become NATS subject tokens, so only a safe alphabet is accepted."""
    if not isinstance(value, str) or not value:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"'{name}' must be a non-empty string")
    if len(value) > max_len:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"'{name}' is longer than {max_len} characters")
    if not _ID_RE.fullmatch(value):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"'{name}' may only contain letters, digits, '_' and '-'"
        )
    return value


def check_prompt(value: object, max_chars: int) -> str:
    """A prompt is non-empty text within the length limit."""
    if not isinstance(value, str) or not value.strip():
        raise ProtocolError(ErrorCode.BAD_REQUEST, "'prompt' must be a non-empty string")
    if len(value) > max_chars:
        raise ProtocolError(
            ErrorCode.PROMPT_TOO_LARGE,
            f"'prompt' has {len(value)} characters; the limit is {max_chars}",
        )
    return safejson.check_text(value, "prompt")


def max_inbound_bytes(max_prompt_chars: int) -> int:
    """The largest prompt message the dataflow accepts, in bytes: the limit the prompts
    stream enforces (`max_msg_size`) and the one checked before parsing.

    A character takes up to 6 bytes in JSON (`\\u001f` for control characters; 4 for
    the rest of UTF-8), so no prompt within the character limit is refused by size.
    """
    return 6 * max_prompt_chars + ENVELOPE_BYTES


def check_timestamp(value: object, name: str) -> float:
    """Unix seconds that a clock could show: finite, from 1970 to the year 5138."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"'{name}' must be a number (unix seconds)")
    if not (math.isfinite(value) and 0 <= value < 1e11):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"'{name}' is not a plausible unix time")
    return float(value)


def check_reply_to(value: object) -> str:
    """Replies may only go to inboxes or the replies namespace, never to internal subjects."""
    if not isinstance(value, str) or not value:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "'reply_to' must be a non-empty string")
    if len(value) > MAX_REPLY_TO or not _REPLY_RE.fullmatch(value):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "'reply_to' is not a valid NATS subject")
    if not value.startswith(REPLY_PREFIXES):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"'reply_to' must start with one of {', '.join(REPLY_PREFIXES)}"
        )
    return value


def safe_reply_to(value: str | None) -> str | None:
    """The reply address if it is one we may publish to, else None (then nobody is told)."""
    if value is None:
        return None
    try:
        return check_reply_to(value)
    except ProtocolError:
        return None
