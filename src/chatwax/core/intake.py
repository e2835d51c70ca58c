"""Intake: a message of the prompts stream becomes `Accepted` (a prompt), `Forget` (a
command), or `Rejected` with a reason.

Malformed input is data here, never an exception: the dataflow answers it with an error
reply (when it knows where to) and counts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chatwax.core import wire
from chatwax.core.errors import ErrorCode, ProtocolError
from chatwax.core.replies import Reply
from chatwax.core.wire import ForgetRequest, PromptRequest


@dataclass(frozen=True, slots=True)
class Inbound:
    """A raw prompt (or command) as stored in the prompts stream, before decoding: what
    the dataflow's prompts source hands to `parse_inbound`. In-process only."""

    partition: int
    seq: int
    data: bytes
    reply_to: str | None
    stored_at: float
    command: bool = False
    """Stored on the partition's command subject (so only the operator can have sent it)."""
    headers: dict[str, str] = field(default_factory=dict)
    """The stored message's headers, kept for a dead letter."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """An input that cannot be processed, with where (if anywhere) to say so."""

    reply_to: str | None
    request_id: str
    code: ErrorCode
    message: str

    def reply(self) -> Reply | None:
        if self.reply_to is None:
            return None
        return Reply.error(self.reply_to, self.request_id, self.code, self.message)


@dataclass(frozen=True, slots=True)
class Accepted:
    request: PromptRequest
    stored_at: float


@dataclass(frozen=True, slots=True)
class Forget:
    request: ForgetRequest


def parse_inbound(msg: Inbound, max_prompt_chars: int) -> Accepted | Forget | Rejected:
    """Decode one stored message; malformed input becomes a `Rejected`, never an exception."""
    try:
        request = wire.decode_inbound(msg.data, max_prompt_chars, msg.command)
    except ProtocolError as exc:
        return Rejected(
            wire.safe_reply_to(msg.reply_to), salvage_request_id(msg.data), exc.code,
            exc.message,
        )
    if isinstance(request, ForgetRequest):
        return Forget(request)
    return Accepted(request, msg.stored_at)


def salvage_request_id(data: bytes) -> str:
    """Best effort: echo the request id of a bad message if one can be read safely."""
    try:
        obj = wire.load_object(data)
        rid = wire.check_id(obj.get("request_id"), "request_id", wire.MAX_REQUEST_ID)
    except ProtocolError:
        return ""
    return rid
