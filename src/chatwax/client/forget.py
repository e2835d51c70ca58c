"""`chatwax forget --user U`: everything of one user, gone from every place chatwax keeps it.

1. Find the user's conversations: their transcript subjects, and their prompts still in
   the prompts stream (a conversation may not have a finished turn yet).
2. Tell the dataflow, on each conversation's partition, after every prompt already stored
   there: it drops the conversation's state (history, summary, waiting prompts) and the
   user's quota window, and acknowledges. A call in flight finishes unrecorded.
3. Then purge the user's transcripts and delete their prompts (and the forget commands)
   from the prompts stream, so nothing stored after the acknowledgement survives either.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Final

from nats.js import api
from nats.js.errors import NotFoundError

from chatwax.client.chat import ChatClient
from chatwax.client.transcripts import jetstream_api, subjects
from chatwax.core import protocol
from chatwax.core.errors import ChatwaxError, ErrorCode
from chatwax.core.protocol import AckEvent, ErrorEvent, ForgetRequest

log = logging.getLogger("chatwax.audit")

NO_CONVERSATION: Final = "-"
"""Sent when the user has no conversation left, so that their quota window still goes."""


@dataclass(slots=True)
class ForgetReport:
    user_id: str
    conversations: list[str] = field(default_factory=list)
    transcripts_deleted: int = 0
    prompts_deleted: int = 0
    confirmed: int = 0
    """Conversations the dataflow confirmed it forgot."""


async def _conversations(client: ChatClient, user_id: str) -> set[str]:
    found = set()
    async for subject, _ in subjects(client.nc, protocol.user_records_filter(user_id)):
        found.add(subject.split(".")[3])
    return found


async def _stored_by(client: ChatClient, user_id: str) -> tuple[list[int], set[str]]:
    """Sequence numbers of the user's prompts and commands in the prompts stream, and the
    conversations they belong to (one pass, one message in memory at a time)."""
    try:
        info = await client.js.stream_info(protocol.PROMPTS_STREAM)
    except NotFoundError:
        return [], set()
    if info.state.messages == 0:
        return [], set()
    seqs: list[int] = []
    conversations: set[str] = set()
    sub = await client.js.subscribe(f"{protocol.PROMPTS_PREFIX}.>",
                                    stream=protocol.PROMPTS_STREAM, ordered_consumer=True,
                                    deliver_policy=api.DeliverPolicy.ALL)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=5)
            except TimeoutError:
                break
            owner, conversation = _owner(msg.data)
            if owner == user_id:
                seqs.append(msg.metadata.sequence.stream)
                if conversation:
                    conversations.add(conversation)
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return seqs, conversations


def _owner(data: bytes) -> tuple[str | None, str | None]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(obj, dict):
        return None, None
    user, conversation = obj.get("user_id"), obj.get("conversation_id")
    return (user if isinstance(user, str) else None,
            conversation if isinstance(conversation, str) else None)


class _Acks:
    """Replies to the forget commands, by request id."""

    def __init__(self, expected: set[str]) -> None:
        self.expected = expected
        self.acks: dict[str, AckEvent] = {}
        self.errors: dict[str, ErrorEvent] = {}
        self.done = asyncio.Event()

    async def on_msg(self, msg: Any) -> None:
        try:
            event = protocol.decode_event(msg.data)
        except (ChatwaxError, KeyError, TypeError, ValueError):
            return
        if event.request_id not in self.expected:
            return
        if isinstance(event, AckEvent):
            self.acks[event.request_id] = event
        elif isinstance(event, ErrorEvent):
            self.errors[event.request_id] = event
        if len(self.acks) + len(self.errors) >= len(self.expected):
            self.done.set()


async def forget_user(client: ChatClient, user_id: str, timeout: float = 60.0) -> ForgetReport:
    """Forget one user; raises if the dataflow does not confirm within `timeout` (the
    commands stay queued and are carried out when it runs; run the command again)."""
    protocol.check_id(user_id, "user_id", protocol.MAX_USER_ID)
    report = ForgetReport(user_id)
    prompt_seqs, from_prompts = await _stored_by(client, user_id)
    conversations = sorted(await _conversations(client, user_id) | from_prompts)
    report.conversations = conversations
    partitions = await client.partitions()
    inbox = client.nc.new_inbox()
    requests = {
        protocol.new_id(): conversation for conversation in conversations or [NO_CONVERSATION]
    }
    acks = _Acks(set(requests))
    sub = await client.nc.subscribe(inbox, cb=acks.on_msg)
    command_seqs: list[int] = []
    try:
        for request_id, conversation in requests.items():
            command = ForgetRequest(request_id, user_id, conversation, inbox)
            subject = protocol.command_subject(protocol.partition_for(conversation, partitions))
            ack = await client.js.publish(subject, command.encode(),
                                          headers={protocol.MSG_ID_HEADER: request_id},
                                          stream=protocol.PROMPTS_STREAM, timeout=10)
            command_seqs.append(ack.seq)
        try:
            await asyncio.wait_for(acks.done.wait(), timeout)
        except TimeoutError:
            raise ChatwaxError(
                ErrorCode.LLM_TIMEOUT,
                f"the dataflow confirmed {len(acks.acks)} of {len(requests)} forget commands "
                f"within {timeout:g}s; the rest stay queued and run when it is up: run "
                "`chatwax forget` again then") from None
    finally:
        await sub.unsubscribe()
    if acks.errors:
        first = next(iter(acks.errors.values()))
        raise ChatwaxError(first.code, f"the dataflow refused to forget: {first.message}")
    report.confirmed = len(acks.acks)
    report.transcripts_deleted = await _purge_transcripts(client, user_id)
    for seq in prompt_seqs + command_seqs:
        try:
            await client.js.delete_msg(protocol.PROMPTS_STREAM, seq)
        except NotFoundError:
            continue  # expired or deleted meanwhile
        report.prompts_deleted += 1
    # Ids and counts only: what the user said is gone, and the audit log keeps none of it.
    log.info("forgot user %s: %d conversations, %d transcript records, %d stored prompts",
             user_id, len(conversations), report.transcripts_deleted, report.prompts_deleted)
    return report


async def _purge_transcripts(client: ChatClient, user_id: str) -> int:
    resp = await jetstream_api(client.nc, f"$JS.API.STREAM.PURGE.{protocol.TRANSCRIPTS_STREAM}",
                               {"filter": protocol.user_records_filter(user_id)})
    error = resp.get("error")
    if error and error.get("err_code") != 10059:  # 10059: no stream, nothing to purge
        raise ChatwaxError(ErrorCode.INTERNAL,
                           f"purging {user_id}'s transcripts failed: {error.get('description')}")
    return int(resp.get("purged", 0))
