"""`chatwax export`: the transcripts stream into a file, a conversation at a time.

Memory holds a few conversations (16 are read at once) and one page of subject names,
whatever the stream's size. The file is written beside its destination as `OUT.partial`
and renamed into place only when complete, so a failed export never leaves a file that
looks finished.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client as NATS

from chatwax.client.transcripts import read_subject, subjects
from chatwax.core import wire
from chatwax.core.export import Format, Selection, conversation_lines
from chatwax.core.wire import Transcript

WINDOW = 16
"""Conversations read at once."""


@dataclass(slots=True)
class ExportReport:
    conversations: int = 0
    lines: int = 0
    records: int = 0
    """Records read from the stream (turns and summaries, duplicates included)."""
    skipped: int = 0
    """Conversations left out for having fewer than `min_turns` turns in the window."""
    bytes: int = 0


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


async def export(nc: NATS, out: Path, fmt: Format, selection: Selection, system_prompt: str,
                 scrub: bool, timeout: float) -> ExportReport:
    """Write the selected conversations to `out`; on any failure nothing is at `out`.
    `timeout`: seconds NATS may leave a request unanswered before the export gives up."""
    partial = partial_path(out)
    report = ExportReport()
    turns = (wire.user_transcripts_filter(selection.user) if selection.user
             else f"{wire.TRANSCRIPTS_PREFIX}.*.*")
    try:
        with partial.open("w", encoding="utf-8") as f:
            async for records in _conversations(nc, turns, fmt, selection, timeout):
                report.records += len(records)
                if not records:
                    continue
                lines = conversation_lines(fmt, system_prompt, records, selection, scrub)
                if not lines:
                    report.skipped += 1
                    continue
                report.conversations += 1
                report.lines += len(lines)
                for line in lines:
                    report.bytes += f.write(line)
            f.flush()
            os.fsync(f.fileno())
        partial.replace(out)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    return report


async def _conversations(nc: NATS, turns: str, fmt: Format, selection: Selection,
                         timeout: float) -> AsyncIterator[list[Transcript]]:
    """Each conversation's records, in the order of the subject list, with up to `WINDOW`
    conversations read at once (round trips overlap; memory holds `WINDOW` of them)."""
    window: collections.deque[asyncio.Task[list[Transcript]]] = collections.deque()
    try:
        # Turn subjects only (`<user>.<conversation>`); a conversation's summaries sit on
        # `<user>.<conversation>.summary` and only the raw format wants them.
        async for subject, _count in subjects(nc, turns, timeout=timeout):
            window.append(asyncio.create_task(
                _conversation(nc, subject, fmt, selection, timeout)))
            if len(window) >= WINDOW:
                yield await window.popleft()
        while window:
            yield await window.popleft()
    finally:
        for task in window:
            task.cancel()
        await asyncio.gather(*window, return_exceptions=True)


async def _conversation(nc: NATS, subject: str, fmt: Format, selection: Selection,
                        timeout: float) -> list[Transcript]:
    records: list[Transcript] = []
    for each in (subject, f"{subject}.summary") if fmt == "jsonl" else (subject,):
        records += await _read(nc, each, selection, timeout)
    return records


async def _read(nc: NATS, subject: str, selection: Selection, timeout: float
                ) -> list[Transcript]:
    out: list[Transcript] = []
    async with contextlib.aclosing(read_subject(nc, subject, since=selection.since,
                                                timeout=timeout)) as stored:
        async for record in stored:
            if not selection.keeps(record.stored_at):
                break  # stored in time order: the rest is later still
            if (t := wire.decode_stored(record.data)) is not None:
                out.append(t)
    return out
