"""Error codes on the wire, and chatwax's exceptions by layer.

A failure on the hot path becomes an `error` reply with one of these stable codes and a
message a person can act on; it never takes the dataflow down. Exceptions say which layer
failed (as nats.py's `js/errors.py` does): a request refused or failed (`RequestFailed`,
with its wire code), NATS or the streams missing, no answer in time, or configuration.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    PROMPT_TOO_LARGE = "prompt_too_large"
    UNSUPPORTED_VERSION = "unsupported_version"
    CONVERSATION_FORBIDDEN = "conversation_forbidden"
    CONVERSATION_DELETED = "conversation_deleted"
    QUOTA_EXCEEDED = "quota_exceeded"
    TOO_MANY_REQUESTS = "too_many_requests"
    CONVERSATION_LIMIT = "conversation_limit"
    BUSY = "busy"
    """The prompts stream is full: nothing was stored; send again later."""
    LLM_NOT_CONFIGURED = "llm_not_configured"
    LLM_UNAVAILABLE = "llm_unavailable"
    LLM_TIMEOUT = "llm_timeout"
    LLM_REJECTED = "llm_rejected"
    RATE_LIMITED = "rate_limited"
    INTERNAL = "internal"

    @property
    def retryable(self) -> bool:
        """Whether sending the same prompt again later may succeed."""
        return self in _RETRYABLE

    @classmethod
    def parse(cls, value: object) -> ErrorCode:
        """Unknown codes from newer servers degrade to `internal` instead of failing."""
        try:
            return cls(str(value))
        except ValueError:
            return cls.INTERNAL


_RETRYABLE = frozenset(
    {ErrorCode.LLM_UNAVAILABLE, ErrorCode.LLM_TIMEOUT, ErrorCode.RATE_LIMITED, ErrorCode.INTERNAL,
     ErrorCode.QUOTA_EXCEEDED, ErrorCode.TOO_MANY_REQUESTS, ErrorCode.BUSY}
)


class ChatwaxError(Exception):
    """Base of every error chatwax raises on purpose. The layer it comes from is its
    class; only `RequestFailed` and its subclasses carry a wire `ErrorCode`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- a request refused or failed: what travels as an `error` reply ------------------------


class RequestFailed(ChatwaxError):
    """A request refused or failed, with the wire code a client sees (docs/protocol.md):
    the dataflow's error reply, or the same check made before sending."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class ProtocolError(RequestFailed):
    """A message that does not follow docs/protocol.md."""


class LlmError(RequestFailed):
    """The LLM call failed for good (after retries, where retrying made sense)."""


# -- the client's own conditions: never on the wire ----------------------------------------


class NatsUnavailable(ChatwaxError):
    """NATS cannot be reached (or stopped answering): nothing chatwax keeps can be read."""


class NotRunning(ChatwaxError):
    """NATS answers but chatwax's streams do not exist: the dataflow never started."""


class NoAnswer(ChatwaxError):
    """Nothing ended the request in time: the dataflow is down, behind, or the LLM slow.
    The request stays stored and is answered when the dataflow gets to it."""


class ConfigError(ChatwaxError):
    """A setting is missing or malformed; raised at start-up, never on the hot path."""
