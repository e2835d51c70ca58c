"""How one LLM attempt failed, and whether another attempt may fix it.

One ordered table maps what an attempt raised (aiohttp's errors, the server's HTTP status,
a broken stream) to a wire error code, a message a person can act on, and a retry reason
(None: retrying is pointless). Metrics count retries by `RetryReason`, so the labels and
this table cannot drift apart. The chat request goes out on aiohttp (`chatwax.llm.client`),
so these are the only exceptions an attempt raises; no SDK exception is made up for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import aiohttp

from chatwax.core.errors import ErrorCode
from chatwax.llm.sse import StreamError


class HttpStatus(Exception):
    """The LLM server answered the chat request with an HTTP error status; `detail` is
    its error message (OpenAI's `{"error": {"message": ...}}`, or the body's start)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class RetryReason(StrEnum):
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    SERVER_ERROR = "server_error"
    CUT_STREAM = "cut_stream"
    MALFORMED_STREAM = "malformed_stream"


@dataclass(frozen=True, slots=True)
class Failure:
    code: ErrorCode
    message: str
    retry: RetryReason | None


@dataclass(frozen=True, slots=True)
class Attempt:
    """What the classification may depend on besides the exception."""

    timeout_s: float
    answering: bool
    """Text had already streamed: a broken connection is a cut stream, not a failed connect."""


def _detail(exc: BaseException) -> str:
    """A short, key-free description of a failure for error replies and logs."""
    message = getattr(exc, "detail", "") or str(exc) or exc.__class__.__name__
    return message[:200]


def _timeout(exc: BaseException, at: Attempt) -> Failure:
    return Failure(ErrorCode.LLM_TIMEOUT, f"the LLM did not finish within {at.timeout_s:g}s",
                   RetryReason.TIMEOUT)


def _rate_limited(exc: BaseException, at: Attempt) -> Failure:
    return Failure(ErrorCode.RATE_LIMITED,
                   f"the LLM server is rate limiting ({_detail(exc)})", RetryReason.RATE_LIMITED)


def _server_timeout(exc: BaseException, at: Attempt) -> Failure:
    return Failure(ErrorCode.LLM_TIMEOUT, "the LLM server did not answer in time",
                   RetryReason.TIMEOUT)


def _connection(exc: BaseException, at: Attempt) -> Failure:
    if at.answering:
        return Failure(ErrorCode.LLM_UNAVAILABLE,
                       "the LLM stream ended before the answer was complete",
                       RetryReason.CUT_STREAM)
    return Failure(ErrorCode.LLM_UNAVAILABLE,
                   f"cannot reach the LLM server ({_detail(exc)})", RetryReason.CONNECTION)


def _stream_error(exc: BaseException, at: Attempt) -> Failure:
    return Failure(ErrorCode.LLM_UNAVAILABLE, f"the LLM server failed mid-answer ({exc})",
                   RetryReason.SERVER_ERROR)


def _server_error(exc: BaseException, at: Attempt) -> Failure:
    status = getattr(exc, "status", "?")
    return Failure(ErrorCode.LLM_UNAVAILABLE, f"the LLM server failed ({status})",
                   RetryReason.SERVER_ERROR)


def _malformed(exc: BaseException, at: Attempt) -> Failure:
    # Not valid SSE/JSON (json.JSONDecodeError is a ValueError): a broken server or
    # proxy; another attempt may well get a clean stream.
    return Failure(ErrorCode.LLM_UNAVAILABLE,
                   f"the LLM server sent a malformed stream ({type(exc).__name__})",
                   RetryReason.MALFORMED_STREAM)


def _status(exc: BaseException, at: Attempt) -> Failure:
    assert isinstance(exc, HttpStatus)
    if exc.status == 429:
        return _rate_limited(exc, at)
    if exc.status in (408, 409) or exc.status >= 500:
        return _server_error(exc, at)
    return Failure(ErrorCode.LLM_REJECTED,
                   f"the LLM server refused the request ({exc.status}: {_detail(exc)})", None)


Rule = tuple[tuple[type[BaseException], ...], Callable[[BaseException, Attempt], Failure]]

RULES: tuple[Rule, ...] = (
    # Most specific first: aiohttp's read and connect timeouts are both TimeoutErrors and
    # ClientErrors; the attempt's own deadline is a plain TimeoutError.
    ((aiohttp.ServerTimeoutError,), _server_timeout),
    ((TimeoutError,), _timeout),
    ((aiohttp.ClientError,), _connection),
    ((HttpStatus,), _status),
    ((StreamError,), _stream_error),
    ((ValueError,), _malformed),
)


def classify(exc: BaseException, attempt: Attempt) -> Failure | None:
    """The failure `exc` stands for; None for an exception no rule knows (a bug)."""
    for types, rule in RULES:
        if isinstance(exc, types):
            return rule(exc, attempt)
    return None


CUT_STREAM = Failure(ErrorCode.LLM_UNAVAILABLE,
                     "the LLM stream ended before the answer was complete", RetryReason.CUT_STREAM)
"""A stream that ended without a finish reason: the server or a proxy cut it."""
