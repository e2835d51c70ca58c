"""`chatwax forget --user U`: everything of one user, gone from every place chatwax keeps it.

1. Tell the dataflow, on the user's partition, after every prompt of theirs already stored
   there: the user's state, its owner, drops every conversation it holds (history,
   summary, waiting prompts), whether or not their transcripts still exist, and the
   user's quota window and rate, and acknowledges with what it dropped. A call in flight
   finishes unrecorded.
2. Then purge the user's transcripts and delete their prompts (and the forget command)
   from the prompts stream, so nothing stored after the acknowledgement survives either.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from nats.js import api
from nats.js.api import Header
from nats.js.errors import NotFoundError

from chatwax.client.chat import ChatClient
from chatwax.client.transcripts import STREAM_NOT_FOUND, jetstream_api
from chatwax.core import wire
from chatwax.core.errors import ChatwaxError, NoAnswer, RequestFailed
from chatwax.core.wire import AckEvent, ErrorEvent, ForgetRequest

log = logging.getLogger("chatwax.audit")

@dataclass(slots=True)
class ForgetReport:
    user_id: str
    conversations: int = 0
    """Conversations the dataflow's state held and dropped."""
    turns: int = 0
    waiting: int = 0
    """Prompts that were waiting for an answer (each told its conversation was deleted)."""
    transcripts_deleted: int = 0
    prompts_deleted: int = 0


async def _stored_by(client: ChatClient, user_id: str) -> list[int]:
    """Sequence numbers of the user's prompts and commands in the prompts stream (one pass
    over the user's partition, one message in memory at a time)."""
    try:
        info = await client.js.stream_info(wire.PROMPTS_STREAM)
    except NotFoundError:
        return []
    if info.state.messages == 0:
        return []
    seqs: list[int] = []
    partition = wire.partition_for(user_id, await client.partitions())
    sub = await client.js.subscribe(
        wire.prompt_subject(partition), stream=wire.PROMPTS_STREAM,
        ordered_consumer=True, deliver_policy=api.DeliverPolicy.ALL,
        config=api.ConsumerConfig(filter_subjects=[wire.prompt_subject(partition),
                                                   wire.command_subject(partition)]))
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=5)
            except TimeoutError:
                break
            if _owner(msg.data) == user_id:
                seqs.append(msg.metadata.sequence.stream)
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return seqs


def _owner(data: bytes) -> str | None:
    try:
        user = wire.load_object(data).get("user_id")
    except ChatwaxError:
        return None
    return user if isinstance(user, str) else None


async def forget_user(client: ChatClient, user_id: str, timeout: float = 60.0) -> ForgetReport:
    """Forget one user; raises if the dataflow does not confirm within `timeout` (the
    command stays queued and is carried out when it runs; run the command again)."""
    wire.check_id(user_id, "user_id", wire.MAX_USER_ID)
    report = ForgetReport(user_id)
    prompt_seqs = await _stored_by(client, user_id)
    partition = wire.partition_for(user_id, await client.partitions())
    request_id = wire.new_id()
    inbox = client.nc.new_inbox()
    sub = await client.nc.subscribe(inbox)
    try:
        command = ForgetRequest(request_id, user_id, "", inbox)
        ack = await client.js.publish(wire.command_subject(partition), command.encode(),
                                      headers={Header.MSG_ID: request_id},
                                      stream=wire.PROMPTS_STREAM, timeout=10)
        event = await _answer(sub, request_id, timeout)
    finally:
        await sub.unsubscribe()
    if isinstance(event, ErrorEvent):
        raise RequestFailed(event.code, f"the dataflow refused to forget: {event.message}")
    report.conversations = event.details.get("conversations", 0)
    report.turns = event.details.get("turns", 0)
    report.waiting = event.details.get("waiting", 0)
    report.transcripts_deleted = await _purge_transcripts(client, user_id)
    for seq in [*prompt_seqs, ack.seq]:
        try:
            await client.js.delete_msg(wire.PROMPTS_STREAM, seq)
        except NotFoundError:
            continue  # expired or deleted meanwhile
        report.prompts_deleted += 1
    # Ids and counts only: what the user said is gone, and the audit log keeps none of it.
    log.info("forgot user %s: %d conversations (%d turns, %d waiting), %d transcript records, "
             "%d stored prompts", user_id, report.conversations, report.turns, report.waiting,
             report.transcripts_deleted, report.prompts_deleted)
    return report


async def _answer(sub: Any, request_id: str, timeout: float) -> AckEvent | ErrorEvent:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        try:
            msg = await sub.next_msg(timeout=max(left, 0.001))
        except TimeoutError:
            raise NoAnswer(
                f"the dataflow did not confirm the forget command within {timeout:g}s; it "
                "stays queued and runs when the dataflow is up: run `chatwax forget` again "
                "then") from None
        try:
            event = wire.decode_event(msg.data)
        except ChatwaxError:
            continue
        if event.request_id == request_id and isinstance(event, AckEvent | ErrorEvent):
            return event


async def _purge_transcripts(client: ChatClient, user_id: str) -> int:
    resp = await jetstream_api(client.nc, f"$JS.API.STREAM.PURGE.{wire.TRANSCRIPTS_STREAM}",
                               {"filter": wire.user_records_filter(user_id)})
    error = resp.get("error")
    if error and error.get("err_code") != STREAM_NOT_FOUND:  # no stream: nothing to purge
        raise ChatwaxError(f"purging {user_id}'s transcripts failed: {error.get('description')}")
    return int(resp.get("purged", 0))
