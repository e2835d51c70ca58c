"""Commands: what the operator sends into the prompts stream besides prompts (`forget`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from chatwax.core.wire.codec import VERSION, Message, on_wire
from chatwax.core.wire.validate import (
    MAX_CONVERSATION_ID,
    MAX_REQUEST_ID,
    MAX_USER_ID,
    check_id,
    check_reply_to,
)


def _conversation_or_all(value: Any) -> str:
    """Empty (or absent): every conversation; else one conversation's id."""
    return check_id(value, "conversation_id", MAX_CONVERSATION_ID) if value else ""


@dataclass(frozen=True, slots=True)
class ForgetRequest(Message):
    """Forget a user's conversations (or, with `conversation_id`, one of them): history,
    summary and waiting prompts in the dataflow's state, and, for all of them, the user's
    quota window and rate. Only the operator sends it (`chatwax forget`); the frontend's
    NATS user may not (docs/security.md).

    Sent into the prompts stream on the user's partition, after every prompt of theirs, by
    `chatwax forget`; answered with an `ack` saying what went (or an `error`) on
    `reply_to`.
    """

    request_id: str = field(metadata=on_wire(
        partial(check_id, name="request_id", max_len=MAX_REQUEST_ID), absent=None))
    user_id: str = field(metadata=on_wire(
        partial(check_id, name="user_id", max_len=MAX_USER_ID), absent=None))
    conversation_id: str = field(metadata=on_wire(_conversation_or_all, absent=None))
    """Empty: every conversation the user has."""
    reply_to: str = field(metadata=on_wire(check_reply_to, absent=None))
    type: Literal["forget"] = "forget"
    v: int = VERSION
