"""Intake: a message of the prompts stream becomes `Accepted` (a prompt), `Forget` (a
command), or `Rejected` with a reason.

Malformed input is data here, never an exception: the dataflow answers it with an error
reply (when it knows where to) and counts it.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatwax.core import protocol
from chatwax.core.errors import ErrorCode, ProtocolError
from chatwax.core.protocol import ForgetRequest, Inbound, PromptRequest, Reply


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
        request = protocol.decode_inbound(msg.data, max_prompt_chars, msg.command)
    except ProtocolError as exc:
        return Rejected(
            protocol.safe_reply_to(msg.reply_to), salvage_request_id(msg.data), exc.code,
            exc.message,
        )
    if isinstance(request, ForgetRequest):
        return Forget(request)
    return Accepted(request, msg.stored_at)


def salvage_request_id(data: bytes) -> str:
    """Best effort: echo the request id of a bad message if one can be read safely."""
    try:
        obj = protocol.load_object(data)
        rid = protocol.check_id(obj.get("request_id"), "request_id", protocol.MAX_REQUEST_ID)
    except ProtocolError:
        return ""
    return rid
