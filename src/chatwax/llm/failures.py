"""How one LLM attempt failed, and whether another attempt may fix it.

One ordered table maps what an attempt raised to a wire error code, a message a person can
act on, and a retry reason (None: retrying is pointless). Metrics count retries by
`RetryReason`, so the labels and this table cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import aiohttp
import httpx2
import openai

from chatwax.core.errors import ErrorCode
from chatwax.llm.sse import StreamError


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
    """A short, key-free description of an SDK error for error replies and logs."""
    message = getattr(exc, "message", "") or str(exc) or exc.__class__.__name__
    return message[:200]


def _timeout(exc: BaseException, at: Attempt) -> Failure:
    return Failure(ErrorCode.LLM_TIMEOUT, f"the LLM did not finish within {at.timeout_s:g}s",
                   RetryReason.TIMEOUT)


def _rate_limited(exc: BaseException, at: Attempt) -> Failure:
    return Failure(ErrorCode.RATE_LIMITED,
                   f"the LLM server is rate limiting ({_detail(exc)})", RetryReason.RATE_LIMITED)


def _sdk_timeout(exc: BaseException, at: Attempt) -> Failure:
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
    status = getattr(exc, "status_code", "?")
    return Failure(ErrorCode.LLM_UNAVAILABLE, f"the LLM server failed ({status})",
                   RetryReason.SERVER_ERROR)


def _malformed(exc: BaseException, at: Attempt) -> Failure:
    # Not valid SSE/JSON (json.JSONDecodeError is a ValueError): a broken server or
    # proxy; another attempt may well get a clean stream.
    return Failure(ErrorCode.LLM_UNAVAILABLE,
                   f"the LLM server sent a malformed stream ({type(exc).__name__})",
                   RetryReason.MALFORMED_STREAM)


def _status(exc: BaseException, at: Attempt) -> Failure:
    assert isinstance(exc, openai.APIStatusError)
    if exc.status_code in (408, 409) or exc.status_code >= 500:
        return _server_error(exc, at)
    return Failure(ErrorCode.LLM_REJECTED,
                   f"the LLM server refused the request ({exc.status_code}: {_detail(exc)})",
                   None)


Rule = tuple[tuple[type[BaseException], ...], Callable[[BaseException, Attempt], Failure]]

RULES: tuple[Rule, ...] = (
    # Most specific first: the SDK's timeout is a connection error, and its rate-limit and
    # server errors are status errors.
    ((TimeoutError,), _timeout),
    ((openai.RateLimitError,), _rate_limited),
    ((openai.APITimeoutError,), _sdk_timeout),
    ((openai.APIConnectionError, httpx2.TransportError, aiohttp.ClientError), _connection),
    ((StreamError,), _stream_error),
    ((openai.InternalServerError,), _server_error),
    ((ValueError, openai.APIResponseValidationError), _malformed),
    ((openai.APIStatusError,), _status),
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
