"""A reply on its way out of the dataflow: an event addressed to a client's reply subject.

In-process only: the dataflow's logic (intake, limits, conversation, user) returns it and
the reply sink publishes its event to its subject. Not `chatwax.client.Reply`, which is a
client's handle on one request it asked.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatwax.core.errors import ErrorCode
from chatwax.core.wire import ErrorEvent, ReplyEvent


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply event addressed to a client's reply subject."""

    subject: str
    event: ReplyEvent

    @classmethod
    def error(cls, subject: str, request_id: str, code: ErrorCode, message: str) -> Reply:
        """The one way a prompt is refused: an `error` event to its reply subject."""
        return cls(subject, ErrorEvent(request_id, code, message))
