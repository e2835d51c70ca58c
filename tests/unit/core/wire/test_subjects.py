"""Where messages go: partitions and subjects."""

from __future__ import annotations

from chatwax.core import wire


def test_partition_is_stable_and_in_range() -> None:
    parts = {wire.partition_for(f"conv-{i}", 8) for i in range(200)}
    assert parts == set(range(8))
    assert wire.partition_for("conv-1", 8) == wire.partition_for("conv-1", 8)


def test_transcript_subject_keeps_user_and_conversation_as_tokens() -> None:
    assert wire.transcript_subject("alice", "c1") == "chatwax.transcripts.alice.c1"
    assert wire.user_transcripts_filter("alice") == "chatwax.transcripts.alice.*"
