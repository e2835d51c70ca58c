"""The wire messages: a prompt, the reply events that answer it, and a stored transcript.

Each is a frozen dataclass read and written by the one codec (`codec`); a field's
`on_wire` rule says how a received value is checked or converted and what stands in when
it is absent. Prompts come from untrusted clients: every field is checked and a failure
says which. Events and transcripts are read by clients and readers of the transcripts
stream: a wrong shape is a `ProtocolError` ("malformed ..."), so a reader skips it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar, Final, Literal

from chatwax.core.errors import ErrorCode, ProtocolError
from chatwax.core.wire.codec import (
    VERSION,
    Message,
    check_version,
    from_json,
    load_object,
    nested,
    on_wire,
    optional,
)
from chatwax.core.wire.commands import ForgetRequest
from chatwax.core.wire.subjects import transcript_subject
from chatwax.core.wire.validate import (
    MAX_CONVERSATION_ID,
    MAX_REQUEST_ID,
    MAX_USER_ID,
    check_id,
    check_prompt,
    check_reply_to,
    check_timestamp,
    max_inbound_bytes,
)

# -- Prompts ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PromptRequest(Message):
    """One user turn, as published into the prompts stream."""

    request_id: str = field(metadata=on_wire(
        partial(check_id, name="request_id", max_len=MAX_REQUEST_ID), absent=None))
    user_id: str = field(metadata=on_wire(
        partial(check_id, name="user_id", max_len=MAX_USER_ID), absent=None))
    conversation_id: str = field(metadata=on_wire(
        partial(check_id, name="conversation_id", max_len=MAX_CONVERSATION_ID), absent=None))
    prompt: str = field(metadata=on_wire(check_prompt, absent=None, first=True, sized=True))
    reply_to: str = field(metadata=on_wire(check_reply_to, absent=None))
    created_at: float = field(default_factory=time.time, metadata=on_wire(
        partial(check_timestamp, name="created_at"), absent_factory=time.time, first=True))
    v: int = VERSION


def decode_prompt(data: bytes, max_prompt_chars: int) -> PromptRequest:
    """Parse and validate a prompt; every failure is a ProtocolError with a clear message."""
    obj = load_object(data, max_inbound_bytes(max_prompt_chars))
    check_version(obj)
    return from_json(PromptRequest, obj, max_prompt_chars=max_prompt_chars)


def decode_inbound(data: bytes, max_prompt_chars: int, command: bool = False
                   ) -> PromptRequest | ForgetRequest:
    """What the prompts stream holds: a prompt on a partition's subject, or a command on
    its command subject (only `"type": "forget"` so far)."""
    obj = load_object(data, max_inbound_bytes(max_prompt_chars))
    check_version(obj)
    if command:
        if obj.get("type") != "forget":
            raise ProtocolError(ErrorCode.BAD_REQUEST,
                                f"unknown command {obj.get('type')!r} (known: 'forget')")
        return from_json(ForgetRequest, obj)
    kind = obj.get("type", "prompt")
    if kind != "prompt":
        raise ProtocolError(ErrorCode.BAD_REQUEST,
                            f"a prompt subject takes prompts, not {kind!r} messages")
    return from_json(PromptRequest, obj, max_prompt_chars=max_prompt_chars)


# -- Usage ------------------------------------------------------------------------------------

USAGE_SOURCES: Final = ("server", "tokenizer", "estimate")


def _usage_source(counted: Any) -> str:
    """A source this build does not know is an estimate: never claimed exact."""
    return counted if counted in USAGE_SOURCES else "estimate"


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one call spent, and who counted them.

    `counted` is "server" when the LLM server reported usage (exact), "tokenizer" when
    chatwax counted with the model's own tokenizer because the server sent none, and
    "estimate" when no tokenizer was at hand (about 4 characters a token).
    """

    input_tokens: int = field(default=0, metadata=on_wire(int, absent=0))
    output_tokens: int = field(default=0, metadata=on_wire(int, absent=0))
    counted: str = field(default="server", metadata=on_wire(_usage_source, absent="server"))
    WIRE_DERIVED: ClassVar[dict[str, str]] = {"total_tokens": "output_tokens"}

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def estimated(self) -> bool:
        return self.counted != "server"


_USAGE: Final = on_wire(nested(Usage), absent=None)
"""A message's `usage`: absent or `null` reads as none spent, counted by the server."""
_OPTIONAL_MS: Final = on_wire(optional(float), absent=None)

# -- Reply events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChunkEvent(Message):
    """A token delta; `index` counts chunks from 0 so clients can spot gaps."""

    request_id: str
    index: int = field(metadata=on_wire(int))
    delta: str
    type: Literal["chunk"] = "chunk"
    v: int = VERSION


@dataclass(frozen=True, slots=True)
class FinalEvent(Message):
    """The authoritative end of a request: the full text and what it cost."""

    request_id: str
    conversation_id: str
    text: str
    model: str
    usage: Usage = field(metadata=_USAGE)
    latency_ms: float = field(metadata=on_wire(float))
    ttft_ms: float | None = field(metadata=_OPTIONAL_MS)
    turn: int = field(metadata=on_wire(int))
    cost_usd: float = field(default=0.0, metadata=on_wire(float, absent=0.0))
    type: Literal["final"] = "final"
    v: int = VERSION


@dataclass(frozen=True, slots=True)
class ErrorEvent(Message):
    """The end of a failed request: a stable code for programs, a message for people."""

    request_id: str = field(metadata=on_wire(str, absent=""))
    code: ErrorCode = field(metadata=on_wire(ErrorCode.parse, absent=None))
    message: str = field(metadata=on_wire(str, absent=""))
    type: Literal["error"] = "error"
    v: int = VERSION
    WIRE_DERIVED: ClassVar[dict[str, str]] = {"retryable": "v"}

    @property
    def retryable(self) -> bool:
        return self.code.retryable


def _counts(details: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in (details or {}).items()}


@dataclass(frozen=True, slots=True)
class AckEvent(Message):
    """A command (not a prompt) was carried out: `message` says what was done, `details`
    the same as numbers (forget: conversations, turns and prompts waiting that went)."""

    request_id: str = field(metadata=on_wire(str))
    message: str = field(metadata=on_wire(str, absent=""))
    details: dict[str, int] = field(default_factory=dict, metadata=on_wire(_counts, absent=None))
    type: Literal["ack"] = "ack"
    v: int = VERSION


ReplyEvent = ChunkEvent | FinalEvent | ErrorEvent | AckEvent
EVENTS: Final[dict[str, type[ReplyEvent]]] = {
    "chunk": ChunkEvent, "final": FinalEvent, "error": ErrorEvent, "ack": AckEvent,
}


def decode_event(data: bytes) -> ReplyEvent:
    """A reply event; anything malformed is a `ProtocolError`."""
    obj = load_object(data)
    kind = obj.get("type")
    cls = EVENTS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"unknown event type {kind!r}")
    return from_json(cls, obj, what="reply event")


# -- Transcripts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transcript(Message):
    """One completed turn in the transcripts stream: what was asked, answered and spent.

    A record of kind "summary" is the running summary of a long conversation (its
    `answer`), kept for its usage: it sits on the conversation's summary subject, apart
    from the turns a history reload reads.
    """

    request_id: str
    user_id: str
    conversation_id: str
    turn: int = field(metadata=on_wire(int))
    prompt: str
    answer: str
    model: str
    provider: str = field(metadata=on_wire(absent=""))
    usage: Usage = field(metadata=_USAGE)
    latency_ms: float = field(metadata=on_wire(float, absent=0.0))
    ttft_ms: float | None = field(metadata=_OPTIONAL_MS)
    created_at: float = field(metadata=on_wire(float, absent=0.0))
    finished_at: float = field(metadata=on_wire(float, absent=0.0))
    cost_usd: float = field(default=0.0, metadata=on_wire(float, absent=0.0))
    kind: str = field(default="turn", metadata=on_wire(str, absent="turn"))
    v: int = VERSION

    @property
    def subject(self) -> str:
        base = transcript_subject(self.user_id, self.conversation_id)
        return base if self.kind == "turn" else f"{base}.{self.kind}"

    @classmethod
    def decode(cls, data: bytes) -> Transcript:
        """A stored turn; anything malformed is a `ProtocolError`."""
        return from_json(cls, load_object(data), what="transcript")


def decode_stored(data: bytes) -> Transcript | None:
    """A record read back from the transcripts stream, or None for one that cannot be read:
    readers skip it (a record written by hand, or by a newer build) and go on."""
    try:
        return Transcript.decode(data)
    except ProtocolError:
        return None
