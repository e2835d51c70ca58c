"""The original tutorial's request: `{"user_id": ..., "prompt": ...}` on core NATS
(`COMPAT_SUBJECT`), answered by the dataflow's compat adapter as a regular prompt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chatwax.core.wire.codec import Message, from_json, load_object, on_wire
from chatwax.core.wire.validate import MAX_USER_ID, check_id, check_prompt, max_inbound_bytes


def _user_id(value: Any) -> str:
    """The tutorial's frontend may send a number; a boolean is no id."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return check_id(value, "user_id", MAX_USER_ID)


@dataclass(frozen=True, slots=True)
class CompatPrompt(Message):
    """What the tutorial's frontend asks: a user (its one conversation) and a prompt."""

    user_id: str = field(metadata=on_wire(_user_id, absent=None))
    prompt: str = field(metadata=on_wire(check_prompt, absent=None, first=True, sized=True))


def decode_compat(data: bytes, max_prompt_chars: int) -> CompatPrompt:
    """The tutorial frontend's payload: `{"user_id": ..., "prompt": ...}` (no version)."""
    return from_json(CompatPrompt, load_object(data, max_inbound_bytes(max_prompt_chars)),
                     max_prompt_chars=max_prompt_chars)


def compat_conversation_id(user_id: str) -> str:
    """The tutorial keeps one memory per user; it lives in this conversation."""
    return f"tutorial-{user_id}"
