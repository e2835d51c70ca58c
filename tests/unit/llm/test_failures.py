"""Every failure an LLM attempt can end in, classified: the wire code, whether it is retried
and why (the reason metrics count), with the SDK's real exception types."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest

from chatwax.core.errors import ErrorCode
from chatwax.llm.failures import RULES, Attempt, RetryReason, classify
from chatwax.llm.sse import StreamError

REQUEST = httpx2.Request("POST", "http://llm.test/v1/chat/completions")
FIRST = Attempt(timeout_s=60, answering=False)
LATER = Attempt(timeout_s=60, answering=True)


def status(cls: type[openai.APIStatusError], code: int, message: str = "no") -> Exception:
    response = httpx2.Response(code, request=REQUEST, content=json.dumps({"error": message}))
    return cls(message, response=response, body={"error": message})


CASES = [
    (TimeoutError(), FIRST, ErrorCode.LLM_TIMEOUT, RetryReason.TIMEOUT, "within 60s"),
    (status(openai.RateLimitError, 429, "slow down"), FIRST, ErrorCode.RATE_LIMITED,
     RetryReason.RATE_LIMITED, "slow down"),
    (openai.APITimeoutError(REQUEST), FIRST, ErrorCode.LLM_TIMEOUT, RetryReason.TIMEOUT,
     "did not answer in time"),
    (openai.APIConnectionError(request=REQUEST), FIRST, ErrorCode.LLM_UNAVAILABLE,
     RetryReason.CONNECTION, "cannot reach the LLM server"),
    (openai.APIConnectionError(request=REQUEST), LATER, ErrorCode.LLM_UNAVAILABLE,
     RetryReason.CUT_STREAM, "ended before the answer was complete"),
    (httpx2.ReadError("reset"), FIRST, ErrorCode.LLM_UNAVAILABLE, RetryReason.CONNECTION,
     "reset"),
    (httpx2.RemoteProtocolError("peer closed"), LATER, ErrorCode.LLM_UNAVAILABLE,
     RetryReason.CUT_STREAM, "ended before"),
    (StreamError("model crashed"), LATER, ErrorCode.LLM_UNAVAILABLE, RetryReason.SERVER_ERROR,
     "failed mid-answer (model crashed)"),
    (status(openai.InternalServerError, 500), FIRST, ErrorCode.LLM_UNAVAILABLE,
     RetryReason.SERVER_ERROR, "(500)"),
    (status(openai.APIStatusError, 503), FIRST, ErrorCode.LLM_UNAVAILABLE,
     RetryReason.SERVER_ERROR, "(503)"),
    (status(openai.APIStatusError, 408), FIRST, ErrorCode.LLM_UNAVAILABLE,
     RetryReason.SERVER_ERROR, "(408)"),
    (status(openai.ConflictError, 409), FIRST, ErrorCode.LLM_UNAVAILABLE,
     RetryReason.SERVER_ERROR, "(409)"),
    (json.JSONDecodeError("bad", "x", 0), LATER, ErrorCode.LLM_UNAVAILABLE,
     RetryReason.MALFORMED_STREAM, "JSONDecodeError"),
    (ValueError("not a chunk"), LATER, ErrorCode.LLM_UNAVAILABLE, RetryReason.MALFORMED_STREAM,
     "malformed stream"),
    (openai.APIResponseValidationError(httpx2.Response(200, request=REQUEST), None), FIRST,
     ErrorCode.LLM_UNAVAILABLE, RetryReason.MALFORMED_STREAM, "malformed"),
    (status(openai.BadRequestError, 400, "context too long"), FIRST, ErrorCode.LLM_REJECTED,
     None, "refused the request (400: context too long)"),
    (status(openai.AuthenticationError, 401, "bad key"), FIRST, ErrorCode.LLM_REJECTED, None,
     "(401: bad key)"),
    (status(openai.NotFoundError, 404, "no such model"), FIRST, ErrorCode.LLM_REJECTED, None,
     "(404"),
    (status(openai.UnprocessableEntityError, 422), FIRST, ErrorCode.LLM_REJECTED, None,
     "(422"),
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
