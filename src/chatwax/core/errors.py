"""Error codes on the wire and the exceptions that carry them.

A failure on the hot path becomes an `error` reply with one of these stable codes and a
message a person can act on; it never takes the dataflow down.
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
    """Base of every error chatwax raises on purpose."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ProtocolError(ChatwaxError):
    """A message that does not follow docs/protocol.md."""


class NatsUnavailable(ChatwaxError):
    """NATS cannot be reached (or stopped answering): nothing chatwax keeps can be read."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.LLM_UNAVAILABLE, message)


class LlmError(ChatwaxError):
    """The LLM call failed for good (after retries, where retrying made sense)."""


class ConfigError(ChatwaxError):
    """A setting is missing or malformed; raised at start-up, never on the hot path."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INTERNAL, message)
