"""Where messages go: streams, subjects and headers, how prompts are partitioned, and new
ids. docs/protocol.md ("Streams and subjects") is the prose."""

from __future__ import annotations

import uuid
import zlib
from typing import Final

PROMPTS_STREAM: Final = "CHATWAX_PROMPTS"
TRANSCRIPTS_STREAM: Final = "CHATWAX_TRANSCRIPTS"
PROMPTS_PREFIX: Final = "chatwax.prompts"
TRANSCRIPTS_PREFIX: Final = "chatwax.transcripts"
REPLIES_PREFIX: Final = "chatwax.replies"
REPLY_PREFIXES: Final = ("_INBOX.", f"{REPLIES_PREFIX}.")
"""Where a reply may go: a client's inbox or the replies namespace, never anything else."""
COMPAT_SUBJECT: Final = "prompts"
"""Core NATS request subject of the tutorial's frontend (`{"user_id", "prompt"}`)."""

PARTITIONS_METADATA_KEY: Final = "chatwax_partitions"
"""Stream metadata key that tells clients how many prompt partitions exist."""

DEAD_LETTERS_STREAM: Final = "CHATWAX_DEAD_LETTERS"
DEAD_LETTERS_PREFIX: Final = "chatwax.dead"

REPLY_TO_HEADER: Final = "Chatwax-Reply-To"
"""Header copy of `reply_to`, so an unparseable body still gets its error reply."""
DEAD_STEP_HEADER: Final = "Chatwax-Dead-Step"
DEAD_ERROR_HEADER: Final = "Chatwax-Dead-Error"
DEAD_ORIGIN_HEADER: Final = "Chatwax-Dead-Origin"
"""A dead letter's step, error and `<partition>:<sequence>` (docs/protocol.md). JetStream's
own de-duplication header is nats.py's `Header.MSG_ID`, set where messages are published."""

COMMAND_TOKEN: Final = "command"


def partition_for(user_id: str, partitions: int) -> int:
    """Stable partition of a user: all their prompts and commands land in one ordered
    partition, read by one source partition, in the order they were stored."""
    return zlib.crc32(user_id.encode()) % partitions


def prompt_subject(partition: int) -> str:
    return f"{PROMPTS_PREFIX}.{partition}"


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
