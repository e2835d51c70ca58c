"""The wire contract between clients and the dataflow: messages, subjects, encode/decode.

Everything that crosses NATS is versioned JSON defined here, so clients (CLI, frontend,
tutorial adapter) and the dataflow share one definition. No I/O happens in this module.
See docs/protocol.md for the prose version.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

from chatwax.core import safejson
from chatwax.core.errors import ErrorCode, ProtocolError

VERSION: Final = 1

# -- Streams and subjects ---------------------------------------------------------------

PROMPTS_STREAM: Final = "CHATWAX_PROMPTS"
TRANSCRIPTS_STREAM: Final = "CHATWAX_TRANSCRIPTS"
PROMPTS_PREFIX: Final = "chatwax.prompts"
TRANSCRIPTS_PREFIX: Final = "chatwax.transcripts"
REPLIES_PREFIX: Final = "chatwax.replies"
COMPAT_SUBJECT: Final = "prompts"
"""Core NATS request subject of the tutorial's frontend (`{"user_id", "prompt"}`)."""

PARTITIONS_METADATA_KEY: Final = "chatwax_partitions"
"""Stream metadata key that tells clients how many prompt partitions exist."""

DEAD_LETTERS_STREAM: Final = "CHATWAX_DEAD_LETTERS"
DEAD_LETTERS_PREFIX: Final = "chatwax.dead"

REPLY_TO_HEADER: Final = "Chatwax-Reply-To"
"""Header copy of `reply_to`, so an unparseable body still gets its error reply."""
REQUEST_ID_HEADER: Final = "Chatwax-Request-Id"
MSG_ID_HEADER: Final = "Nats-Msg-Id"
"""JetStream de-duplication header: a retried publish of one request is stored once."""

_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
"""Matched whole (`fullmatch`): `$` would also accept a trailing newline."""
MAX_USER_ID: Final = 64
MAX_CONVERSATION_ID: Final = 128
MAX_REQUEST_ID: Final = 64
_REPLY_RE: Final = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
MAX_REPLY_TO: Final = 255
REPLY_PREFIXES: Final = ("_INBOX.", f"{REPLIES_PREFIX}.")


CLIENT_PUBLISH_ALLOW: Final = (
    f"{PROMPTS_PREFIX}.*",
    COMPAT_SUBJECT,
    "$JS.API.INFO",
    f"$JS.API.STREAM.INFO.{PROMPTS_STREAM}",
    f"$JS.API.STREAM.INFO.{TRANSCRIPTS_STREAM}",
    f"$JS.API.CONSUMER.CREATE.{TRANSCRIPTS_STREAM}",
    f"$JS.API.CONSUMER.CREATE.{TRANSCRIPTS_STREAM}.>",
    f"$JS.API.CONSUMER.DELETE.{TRANSCRIPTS_STREAM}.>",
    f"$JS.API.DIRECT.GET.{TRANSCRIPTS_STREAM}",
    f"$JS.API.DIRECT.GET.{TRANSCRIPTS_STREAM}.>",
    "$JS.FC.>",
)
"""What a client (frontend, `chatwax ask`) may publish when NATS auth is on: prompts, and
the JetStream API calls that read transcripts. Never a transcript or a reply subject."""
CLIENT_SUBSCRIBE_ALLOW: Final = ("_INBOX.>",)
CLIENT_USERS: Final = ("frontend", "operator")
"""NATS users with the client permissions: the frontend, and `operator` for the CLI (`chatwax
ask`, `usage`, ...). Both may publish prompts for any user id (docs/security.md)."""
OPERATOR_PUBLISH_ALLOW: Final = (
    f"{PROMPTS_PREFIX}.*.command",
    f"$JS.API.STREAM.PURGE.{TRANSCRIPTS_STREAM}",
    f"$JS.API.STREAM.MSG.DELETE.{PROMPTS_STREAM}",
    f"$JS.API.CONSUMER.CREATE.{PROMPTS_STREAM}",
    f"$JS.API.CONSUMER.CREATE.{PROMPTS_STREAM}.>",
    f"$JS.API.CONSUMER.DELETE.{PROMPTS_STREAM}.>",
)
"""What only `operator` may do besides: `chatwax forget` sends commands, reads the prompts
stream for a user's prompts, deletes them, and purges a user's transcripts."""


def client_publish_allow(compat: bool = True, user: str = "frontend") -> tuple[str, ...]:
    """A client's allow-list; without `compat`, the tutorial's `prompts` subject is not in
    it (it carries no identity, so with sign-in on nobody may use it unless enabled)."""
    extra = OPERATOR_PUBLISH_ALLOW if user == "operator" else ()
    return tuple(s for s in (*CLIENT_PUBLISH_ALLOW, *extra) if compat or s != COMPAT_SUBJECT)


def partition_for(user_id: str, partitions: int) -> int:
    """Stable partition of a user: all their prompts and commands land in one ordered
    partition, read by one source partition, in the order they were stored."""
    return zlib.crc32(user_id.encode()) % partitions


def prompt_subject(partition: int) -> str:
    return f"{PROMPTS_PREFIX}.{partition}"


COMMAND_TOKEN: Final = "command"


def command_subject(partition: int) -> str:
    """Commands (forget) share their partition's order with its prompts, on a subject of
    their own: clients may publish `chatwax.prompts.*`, which does not match it."""
    return f"{PROMPTS_PREFIX}.{partition}.{COMMAND_TOKEN}"


def transcript_subject(user_id: str, conversation_id: str) -> str:
    """Per-conversation subject; the user token lets one filter list a user's conversations."""
    return f"{TRANSCRIPTS_PREFIX}.{user_id}.{conversation_id}"


def user_transcripts_filter(user_id: str) -> str:
    """A user's turns: one subject per conversation."""
    return f"{TRANSCRIPTS_PREFIX}.{user_id}.*"


def user_records_filter(user_id: str) -> str:
    """Everything stored of a user: turns and summaries (usage, export, forget)."""
    return f"{TRANSCRIPTS_PREFIX}.{user_id}.>"


def new_id() -> str:
    return uuid.uuid4().hex


# -- Validation ---------------------------------------------------------------------------


def check_id(value: object, name: str, max_len: int) -> str:
    """Ids become NATS subject tokens, so only a safe alphabet is accepted."""
    if not isinstance(value, str) or not value:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"'{name}' must be a non-empty string")
    if len(value) > max_len:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"'{name}' is longer than {max_len} characters")
    if not _ID_RE.fullmatch(value):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"'{name}' may only contain letters, digits, '_' and '-'"
        )
    return value


def check_prompt(value: object, max_chars: int) -> str:
    """A prompt is non-empty text within the length limit."""
    if not isinstance(value, str) or not value.strip():
        raise ProtocolError(ErrorCode.BAD_REQUEST, "'prompt' must be a non-empty string")
    if len(value) > max_chars:
        raise ProtocolError(
            ErrorCode.PROMPT_TOO_LARGE,
            f"'prompt' has {len(value)} characters; the limit is {max_chars}",
        )
    return safejson.check_text(value, "prompt")


ENVELOPE_BYTES: Final = 2048
"""A prompt message's bytes besides the prompt: ids, reply subject, keys, numbers."""
MAX_MESSAGE_BYTES: Final = 8 * 1024 * 1024
"""What a reply event or transcript may be at most (NATS's own payload limit is lower)."""


def max_inbound_bytes(max_prompt_chars: int) -> int:
    """The largest prompt message the dataflow accepts, in bytes: the limit the prompts
    stream enforces (`max_msg_size`) and the one checked before parsing.

    A character takes up to 6 bytes in JSON (`\\u001f` for control characters; 4 for
    the rest of UTF-8), so no prompt within the character limit is refused by size.
    """
    return 6 * max_prompt_chars + ENVELOPE_BYTES


def check_timestamp(value: object, name: str) -> float:
    """Unix seconds that a clock could show: finite, from 1970 to the year 5138."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"'{name}' must be a number (unix seconds)")
    if not (math.isfinite(value) and 0 <= value < 1e11):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"'{name}' is not a plausible unix time")
    return float(value)


def check_reply_to(value: object) -> str:
    """Replies may only go to inboxes or the replies namespace, never to internal subjects."""
    if not isinstance(value, str) or not value:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "'reply_to' must be a non-empty string")
    if len(value) > MAX_REPLY_TO or not _REPLY_RE.fullmatch(value):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "'reply_to' is not a valid NATS subject")
    if not value.startswith(REPLY_PREFIXES):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"'reply_to' must start with one of {', '.join(REPLY_PREFIXES)}"
        )
    return value


def safe_reply_to(value: str | None) -> str | None:
    """The reply address if it is one we may publish to, else None (then nobody is told)."""
    if value is None:
        return None
    try:
        return check_reply_to(value)
    except ProtocolError:
        return None


# -- Messages -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PromptRequest:
    """One user turn, as published into the prompts stream."""

    request_id: str
    user_id: str
    conversation_id: str
    prompt: str
    reply_to: str
    created_at: float = field(default_factory=time.time)
    v: int = VERSION

    def encode(self) -> bytes:
        return _dump(asdict(self))


def decode_inbound(data: bytes, max_prompt_chars: int, command: bool = False
                   ) -> PromptRequest | ForgetRequest:
    """What the prompts stream holds: a prompt on a partition's subject, or a command on
    its command subject (only `"type": "forget"` so far)."""
    obj = load_object(data, max_inbound_bytes(max_prompt_chars))
    _check_version(obj)
    if command:
        if obj.get("type") != "forget":
            raise ProtocolError(ErrorCode.BAD_REQUEST,
                                f"unknown command {obj.get('type')!r} (known: 'forget')")
        return decode_forget(obj)
    kind = obj.get("type", "prompt")
    if kind != "prompt":
        raise ProtocolError(ErrorCode.BAD_REQUEST,
                            f"a prompt subject takes prompts, not {kind!r} messages")
    return _prompt(obj, max_prompt_chars)


def _check_version(obj: dict[str, Any]) -> None:
    v = obj.get("v", VERSION)
    if v != VERSION:
        raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION,
                            f"protocol version {v!r} is not supported (use {VERSION})")


def decode_prompt(data: bytes, max_prompt_chars: int) -> PromptRequest:
    """Parse and validate a prompt; every failure is a ProtocolError with a clear message."""
    obj = load_object(data, max_inbound_bytes(max_prompt_chars))
    _check_version(obj)
    return _prompt(obj, max_prompt_chars)


def _prompt(obj: dict[str, Any], max_prompt_chars: int) -> PromptRequest:
    prompt = check_prompt(obj.get("prompt"), max_prompt_chars)
    created_at = check_timestamp(obj.get("created_at", time.time()), "created_at")
    return PromptRequest(
        request_id=check_id(obj.get("request_id"), "request_id", MAX_REQUEST_ID),
        user_id=check_id(obj.get("user_id"), "user_id", MAX_USER_ID),
        conversation_id=check_id(
            obj.get("conversation_id"), "conversation_id", MAX_CONVERSATION_ID
        ),
        prompt=prompt,
        reply_to=check_reply_to(obj.get("reply_to")),
        created_at=created_at,
    )


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one call spent, and who counted them.

    `counted` is "server" when the LLM server reported usage (exact), "tokenizer" when
    chatwax counted with the model's own tokenizer because the server sent none, and
    "estimate" when no tokenizer was at hand (about 4 characters a token).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    counted: str = "server"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def estimated(self) -> bool:
        return self.counted != "server"

    def to_json(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "counted": self.counted,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any] | None) -> Usage:
        obj = obj or {}
        counted = obj.get("counted", "server")
        return cls(int(obj.get("input_tokens", 0)), int(obj.get("output_tokens", 0)),
                   counted if counted in USAGE_SOURCES else "estimate")


USAGE_SOURCES: Final = ("server", "tokenizer", "estimate")


EventType = Literal["chunk", "final", "error", "ack"]


@dataclass(frozen=True, slots=True)
class ChunkEvent:
    """A token delta; `index` counts chunks from 0 so clients can spot gaps."""

    request_id: str
    index: int
    delta: str
    type: Literal["chunk"] = "chunk"
    v: int = VERSION

    def encode(self) -> bytes:
        return _dump(asdict(self))


@dataclass(frozen=True, slots=True)
class FinalEvent:
    """The authoritative end of a request: the full text and what it cost."""

    request_id: str
    conversation_id: str
    text: str
    model: str
    usage: Usage
    latency_ms: float
    ttft_ms: float | None
    turn: int
    cost_usd: float = 0.0
    type: Literal["final"] = "final"
    v: int = VERSION

    def encode(self) -> bytes:
        obj = asdict(self)
        obj["usage"] = self.usage.to_json()
        return _dump(obj)


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """The end of a failed request: a stable code for programs, a message for people."""

    request_id: str
    code: ErrorCode
    message: str
    type: Literal["error"] = "error"
    v: int = VERSION

    def encode(self) -> bytes:
        obj = asdict(self)
        obj["code"] = self.code.value
        obj["retryable"] = self.code.retryable
        return _dump(obj)


@dataclass(frozen=True, slots=True)
class AckEvent:
    """A command (not a prompt) was carried out: `message` says what was done, `details`
    the same as numbers (forget: conversations, turns and prompts waiting that went)."""

    request_id: str
    message: str
    details: dict[str, int] = field(default_factory=dict)
    type: Literal["ack"] = "ack"
    v: int = VERSION

    def encode(self) -> bytes:
        return _dump(asdict(self))


ReplyEvent = ChunkEvent | FinalEvent | ErrorEvent | AckEvent


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply event addressed to a client's reply subject."""

    subject: str
    event: ReplyEvent

    @classmethod
    def error(cls, subject: str, request_id: str, code: ErrorCode, message: str) -> Reply:
        """The one way a prompt is refused: an `error` event to its reply subject."""
        return cls(subject, ErrorEvent(request_id, code, message))


@dataclass(frozen=True, slots=True)
class Inbound:
    """A raw prompt (or command) as stored in the prompts stream; decoding happens in the
    dataflow."""

    partition: int
    seq: int
    data: bytes
    reply_to: str | None
    stored_at: float
    command: bool = False
    """Stored on the partition's command subject (so only the operator can have sent it)."""
    headers: dict[str, str] = field(default_factory=dict)
    """The stored message's headers, kept for a dead letter."""


DEAD_STEP_HEADER: Final = "Chatwax-Dead-Step"
DEAD_ERROR_HEADER: Final = "Chatwax-Dead-Error"
DEAD_ORIGIN_HEADER: Final = "Chatwax-Dead-Origin"
MAX_HEADER_CHARS: Final = 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that made a dataflow step fail, set aside instead of stopping the cluster.

    Stored in the dead-letter stream with the original bytes and headers, the step and the
    error (type and message, with the prompt's text cut out), and where it came from
    (`<partition>:<sequence>` of the prompts stream, when it came from there).
    """

    step: str
    error: str
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)
    origin: str = ""

    @property
    def subject(self) -> str:
        return f"{DEAD_LETTERS_PREFIX}.{self.step}"

    def all_headers(self) -> dict[str, str]:
        """The original headers and why it is here. A message replayed after a restart that
        fails again at the same step is stored once (de-duplicated by step and origin)."""
        kept = {k: v for k, v in self.headers.items() if k != MSG_ID_HEADER}
        if self.origin:
            kept[MSG_ID_HEADER] = f"{self.step}:{self.origin}"
        return {**kept, DEAD_STEP_HEADER: self.step,
                DEAD_ERROR_HEADER: " ".join(self.error.split())[:MAX_HEADER_CHARS],
                DEAD_ORIGIN_HEADER: self.origin}


_MALFORMED: Final = (KeyError, TypeError, ValueError, AttributeError, OverflowError)
"""What reading a field of the wrong type or shape raises; decoders turn it into a
`ProtocolError`, so a reader of a stream skips a bad record instead of failing."""


def decode_event(data: bytes) -> ReplyEvent:
    """A reply event; anything malformed is a `ProtocolError`."""
    obj = load_object(data)
    try:
        return _event(obj)
    except _MALFORMED as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST,
                            f"malformed reply event ({type(exc).__name__})") from None


def _event(obj: dict[str, Any]) -> ReplyEvent:
    kind = obj.get("type")
    if kind == "chunk":
        return ChunkEvent(request_id=obj["request_id"], index=int(obj["index"]), delta=obj["delta"])
    if kind == "final":
        return FinalEvent(
            request_id=obj["request_id"],
            conversation_id=obj["conversation_id"],
            text=obj["text"],
            model=obj["model"],
            usage=Usage.from_json(obj.get("usage")),
            latency_ms=float(obj["latency_ms"]),
            ttft_ms=None if obj.get("ttft_ms") is None else float(obj["ttft_ms"]),
            turn=int(obj["turn"]),
            cost_usd=float(obj.get("cost_usd", 0.0)),
        )
    if kind == "error":
        return ErrorEvent(
            request_id=str(obj.get("request_id", "")),
            code=ErrorCode.parse(obj.get("code")),
            message=str(obj.get("message", "")),
        )
    if kind == "ack":
        details = obj.get("details") or {}
        return AckEvent(request_id=str(obj["request_id"]), message=str(obj.get("message", "")),
                        details={str(k): int(v) for k, v in details.items()})
    raise ProtocolError(ErrorCode.BAD_REQUEST, f"unknown event type {kind!r}")


@dataclass(frozen=True, slots=True)
class Transcript:
    """One completed turn in the transcripts stream: what was asked, answered and spent.

    A record of kind "summary" is the running summary of a long conversation (its
    `answer`), kept for its usage: it sits on the conversation's summary subject, apart
    from the turns a history reload reads.
    """

    request_id: str
    user_id: str
    conversation_id: str
    turn: int
    prompt: str
    answer: str
    model: str
    provider: str
    usage: Usage
    latency_ms: float
    ttft_ms: float | None
    created_at: float
    finished_at: float
    cost_usd: float = 0.0
    kind: str = "turn"
    v: int = VERSION

    @property
    def subject(self) -> str:
        base = transcript_subject(self.user_id, self.conversation_id)
        return base if self.kind == "turn" else f"{base}.{self.kind}"

    def encode(self) -> bytes:
        obj = asdict(self)
        obj["usage"] = self.usage.to_json()
        return _dump(obj)

    @classmethod
    def decode(cls, data: bytes) -> Transcript:
        """A stored turn; anything malformed is a `ProtocolError`."""
        obj = load_object(data)
        try:
            return cls._from(obj)
        except _MALFORMED as exc:
            raise ProtocolError(ErrorCode.BAD_REQUEST,
                                f"malformed transcript ({type(exc).__name__})") from None

    @classmethod
    def _from(cls, obj: dict[str, Any]) -> Transcript:
        return cls(
            request_id=obj["request_id"],
            user_id=obj["user_id"],
            conversation_id=obj["conversation_id"],
            turn=int(obj["turn"]),
            prompt=obj["prompt"],
            answer=obj["answer"],
            model=obj["model"],
            provider=obj.get("provider", ""),
            usage=Usage.from_json(obj.get("usage")),
            latency_ms=float(obj.get("latency_ms", 0.0)),
            ttft_ms=None if obj.get("ttft_ms") is None else float(obj["ttft_ms"]),
            created_at=float(obj.get("created_at", 0.0)),
            finished_at=float(obj.get("finished_at", 0.0)),
            cost_usd=float(obj.get("cost_usd", 0.0)),
            kind=str(obj.get("kind", "turn")),
        )


def decode_stored(data: bytes) -> Transcript | None:
    """A record read back from the transcripts stream, or None for one that cannot be read:
    readers skip it (a record written by hand, or by a newer build) and go on."""
    try:
        return Transcript.decode(data)
    except ProtocolError:
        return None


# -- Commands ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ForgetRequest:
    """Forget a user's conversations (or, with `conversation_id`, one of them): history,
    summary and waiting prompts in the dataflow's state, and, for all of them, the user's
    quota window and rate. Only the operator sends it (`chatwax forget`); the frontend's
    NATS user may not (docs/security.md).

    Sent into the prompts stream on the user's partition, after every prompt of theirs, by
    `chatwax forget`; answered with an `ack` saying what went (or an `error`) on
    `reply_to`.
    """

    request_id: str
    user_id: str
    conversation_id: str
    """Empty: every conversation the user has."""
    reply_to: str
    type: Literal["forget"] = "forget"
    v: int = VERSION

    def encode(self) -> bytes:
        return _dump(asdict(self))


def decode_forget(obj: dict[str, Any]) -> ForgetRequest:
    return ForgetRequest(
        request_id=check_id(obj.get("request_id"), "request_id", MAX_REQUEST_ID),
        user_id=check_id(obj.get("user_id"), "user_id", MAX_USER_ID),
        conversation_id=check_id(obj["conversation_id"], "conversation_id",
                                 MAX_CONVERSATION_ID) if obj.get("conversation_id") else "",
        reply_to=check_reply_to(obj.get("reply_to")),
    )


# -- Tutorial compatibility ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompatPrompt:
    user_id: str
    prompt: str


def decode_compat(data: bytes, max_prompt_chars: int) -> CompatPrompt:
    """The tutorial frontend's payload: `{"user_id": ..., "prompt": ...}`."""
    obj = load_object(data, max_inbound_bytes(max_prompt_chars))
    prompt = check_prompt(obj.get("prompt"), max_prompt_chars)
    user_id = obj.get("user_id")
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)
    return CompatPrompt(user_id=check_id(user_id, "user_id", MAX_USER_ID), prompt=prompt)


def compat_conversation_id(user_id: str) -> str:
    """The tutorial keeps one memory per user; it lives in this conversation."""
    return f"tutorial-{user_id}"


# -- JSON helpers -----------------------------------------------------------------------------


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def load_object(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """A JSON object from untrusted bytes, bounded before parsing (`safejson`)."""
    obj = safejson.loads(data, max_bytes)
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "payload must be a JSON object")
    return obj
