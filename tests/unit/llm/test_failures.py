"""Every failure an LLM attempt can end in, classified: the wire code, whether it is retried
and why (the reason metrics count), from what aiohttp and the server say."""

from __future__ import annotations

import json

import aiohttp
import pytest

from chatwax.core.errors import ErrorCode
from chatwax.llm.client import error_detail
from chatwax.llm.failures import RULES, Attempt, HttpStatus, RetryReason, classify
from chatwax.llm.sse import StreamError

FIRST = Attempt(timeout_s=60, answering=False)
LATER = Attempt(timeout_s=60, answering=True)


CASES = [
    (TimeoutError(), FIRST, ErrorCode.LLM_TIMEOUT, RetryReason.TIMEOUT, "within 60s"),
    (HttpStatus(429, "slow down"), FIRST, ErrorCode.RATE_LIMITED, RetryReason.RATE_LIMITED,
     "slow down"),
    (aiohttp.SocketTimeoutError("read"), FIRST, ErrorCode.LLM_TIMEOUT, RetryReason.TIMEOUT,
     "did not answer in time"),
    (aiohttp.ConnectionTimeoutError("connect"), FIRST, ErrorCode.LLM_TIMEOUT,
     RetryReason.TIMEOUT, "did not answer in time"),
    (aiohttp.ClientConnectionError("refused"), FIRST, ErrorCode.LLM_UNAVAILABLE,
     RetryReason.CONNECTION, "cannot reach the LLM server (refused)"),
    (aiohttp.ClientPayloadError("reset"), LATER, ErrorCode.LLM_UNAVAILABLE,
     RetryReason.CUT_STREAM, "ended before the answer was complete"),
    (aiohttp.ServerDisconnectedError(), LATER, ErrorCode.LLM_UNAVAILABLE,
     RetryReason.CUT_STREAM, "ended before"),
    (StreamError("model crashed"), LATER, ErrorCode.LLM_UNAVAILABLE, RetryReason.SERVER_ERROR,
     "failed mid-answer (model crashed)"),
    (HttpStatus(500, "boom"), FIRST, ErrorCode.LLM_UNAVAILABLE, RetryReason.SERVER_ERROR,
     "(500)"),
    (HttpStatus(503, "later"), FIRST, ErrorCode.LLM_UNAVAILABLE, RetryReason.SERVER_ERROR,
     "(503)"),
    (HttpStatus(408, "slow"), FIRST, ErrorCode.LLM_UNAVAILABLE, RetryReason.SERVER_ERROR,
     "(408)"),
    (HttpStatus(409, "busy"), FIRST, ErrorCode.LLM_UNAVAILABLE, RetryReason.SERVER_ERROR,
     "(409)"),
    (json.JSONDecodeError("bad", "x", 0), LATER, ErrorCode.LLM_UNAVAILABLE,
     RetryReason.MALFORMED_STREAM, "JSONDecodeError"),
    (ValueError("not a chunk"), LATER, ErrorCode.LLM_UNAVAILABLE, RetryReason.MALFORMED_STREAM,
     "malformed stream"),
    (HttpStatus(400, "context too long"), FIRST, ErrorCode.LLM_REJECTED, None,
     "refused the request (400: context too long)"),
    (HttpStatus(401, "bad key"), FIRST, ErrorCode.LLM_REJECTED, None, "(401: bad key)"),
    (HttpStatus(404, "no such model"), FIRST, ErrorCode.LLM_REJECTED, None, "(404"),
    (HttpStatus(422, "no"), FIRST, ErrorCode.LLM_REJECTED, None, "(422"),
]


@pytest.mark.parametrize(("exc", "attempt", "code", "retry", "says"), CASES,
                         ids=[f"{type(c[0]).__name__}-{c[3]}" for c in CASES])
def test_each_failure_has_its_code_and_retry_reason(exc: BaseException, attempt: Attempt,
                                                    code: ErrorCode, retry: RetryReason | None,
                                                    says: str) -> None:
    failure = classify(exc, attempt)
    assert failure is not None
    assert (failure.code, failure.retry) == (code, retry)
    assert says in failure.message


def test_an_exception_no_rule_knows_is_not_guessed_at() -> None:
    """A bug in chatwax surfaces as itself (the answerer reports it as `internal`)."""
    assert classify(RuntimeError("bug"), FIRST) is None
    assert classify(KeyError("x"), FIRST) is None


def test_every_retry_reason_is_reachable() -> None:
    assert {c[3] for c in CASES} - {None} == set(RetryReason)


def test_more_specific_rules_come_first() -> None:
    """A subclass's rule must be tried before its base class's, or it is never used."""
    seen: list[type[BaseException]] = []
    for types, _ in RULES:
        for t in types:
            assert not any(issubclass(t, earlier) for earlier in seen), t
        seen.extend(types)


@pytest.mark.parametrize(("body", "detail"), [
    (b'{"error": {"message": "context too long", "type": "invalid_request_error"}}',
     "context too long"),
    (b'{"error": "model not loaded"}', "model not loaded"),
    (b'{"detail": "Not Found"}', '{"detail": "Not Found"}'),
    (b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
    (b"", "no details"),
    (b'{"error": {"message": "' + b"x" * 500 + b'"}}', "x" * 200),
])
def test_an_error_body_gives_the_servers_message(body: bytes, detail: str) -> None:
    assert error_detail(body) == detail
