"""The wire contract between clients and the dataflow: subjects, checks, messages.

Everything that crosses NATS is versioned JSON defined here, so clients (CLI, frontend,
tutorial adapter) and the dataflow share one definition. No I/O happens in this package.
docs/protocol.md is the prose; by job:

- `subjects`: streams, subjects and headers, partitioning, new ids;
- `validate`: what an id, a prompt, a timestamp or a reply subject may be, and sizes;
- `codec`: the one codec, a frozen dataclass <-> JSON (safe loading, version, rules);
- `messages`: prompts, reply events, transcripts; `commands`: forget; `compat`: the
  tutorial's request;
- `permissions`: what each NATS user may publish (not re-exported here: only the NATS
  configuration uses it).

Callers write `from chatwax.core import wire` and `wire.prompt_subject(...)`, or import
the names below from `chatwax.core.wire`.
"""

from chatwax.core.wire.codec import VERSION, load_object
from chatwax.core.wire.commands import ForgetRequest
from chatwax.core.wire.compat import CompatPrompt, compat_conversation_id, decode_compat
from chatwax.core.wire.messages import (
    USAGE_SOURCES,
    AckEvent,
    ChunkEvent,
    ErrorEvent,
    FinalEvent,
    PromptRequest,
    ReplyEvent,
    Transcript,
    Usage,
    decode_event,
    decode_inbound,
    decode_prompt,
    decode_stored,
)
from chatwax.core.wire.subjects import (
    COMMAND_TOKEN,
    COMPAT_SUBJECT,
    DEAD_ERROR_HEADER,
    DEAD_LETTERS_PREFIX,
    DEAD_LETTERS_STREAM,
    DEAD_ORIGIN_HEADER,
    DEAD_STEP_HEADER,
    PARTITIONS_METADATA_KEY,
    PROMPTS_PREFIX,
    PROMPTS_STREAM,
    REPLY_PREFIXES,
    REPLY_TO_HEADER,
    TRANSCRIPTS_PREFIX,
    TRANSCRIPTS_STREAM,
    command_subject,
    new_id,
    partition_for,
    prompt_subject,
    transcript_subject,
    user_records_filter,
    user_transcripts_filter,
)
from chatwax.core.wire.validate import (
    MAX_CONVERSATION_ID,
    MAX_REQUEST_ID,
    MAX_USER_ID,
    check_id,
    max_inbound_bytes,
    safe_reply_to,
)

__all__ = [
    "COMMAND_TOKEN",
    "COMPAT_SUBJECT",
    "DEAD_ERROR_HEADER",
    "DEAD_LETTERS_PREFIX",
    "DEAD_LETTERS_STREAM",
    "DEAD_ORIGIN_HEADER",
    "DEAD_STEP_HEADER",
    "MAX_CONVERSATION_ID",
    "MAX_REQUEST_ID",
    "MAX_USER_ID",
    "PARTITIONS_METADATA_KEY",
    "PROMPTS_PREFIX",
    "PROMPTS_STREAM",
    "REPLY_PREFIXES",
    "REPLY_TO_HEADER",
    "TRANSCRIPTS_PREFIX",
    "TRANSCRIPTS_STREAM",
    "USAGE_SOURCES",
    "VERSION",
    "AckEvent",
    "ChunkEvent",
    "CompatPrompt",
    "ErrorEvent",
    "FinalEvent",
    "ForgetRequest",
    "PromptRequest",
    "ReplyEvent",
    "Transcript",
    "Usage",
    "check_id",
    "command_subject",
    "compat_conversation_id",
    "decode_compat",
    "decode_event",
    "decode_inbound",
    "decode_prompt",
    "decode_stored",
    "load_object",
    "max_inbound_bytes",
    "new_id",
    "partition_for",
    "prompt_subject",
    "safe_reply_to",
    "transcript_subject",
    "user_records_filter",
    "user_transcripts_filter",
]
