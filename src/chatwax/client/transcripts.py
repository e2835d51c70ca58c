"""Reading the transcripts stream: every record from a point in time on, or one
conversation's records at a time (export, forget).

Whole-stream reads use an ordered consumer; per-conversation reads use JetStream's batched
direct get, which needs no consumer on the server and one round trip per batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api
from nats.js.api import Header, StatusCode
from nats.js.errors import NotFoundError

from chatwax.core import wire
from chatwax.core.errors import ChatwaxError, NatsUnavailable
from chatwax.core.wire import Transcript

ALL_TRANSCRIPTS: Final = f"{wire.TRANSCRIPTS_PREFIX}.>"
STREAM_NOT_FOUND: Final = 10059
"""JetStream's error code for a stream that does not exist (JSStreamNotFoundErr)."""
END_OF_BATCH: Final = "204"
"""The status a batched direct get ends each batch with (NATS ADR-31); nats.py's
StatusCode has no name for it."""
BATCH: Final = 256
"""Records per direct-get round trip."""


async def iter_transcripts(
    js: JetStreamContext, since_s: float | None, subject: str = ALL_TRANSCRIPTS
) -> AsyncIterator[Transcript]:
    """Every stored record newer than `since_s` seconds (all when None) on `subject`
    (a filter), oldest first, one at a time: an ordered consumer's flow control keeps a
    bounded window in memory whatever the stream holds. Unreadable records are skipped."""
    try:
        info = await js.stream_info(wire.TRANSCRIPTS_STREAM)
    except NotFoundError:
        return
    if info.state.messages == 0:
        return
    policy, config = api.DeliverPolicy.ALL, None
    if since_s is not None:
        start = datetime.fromtimestamp(time.time() - since_s, tz=UTC)
        policy = api.DeliverPolicy.BY_START_TIME
        config = api.ConsumerConfig(opt_start_time=start)
    sub = await js.subscribe(subject, stream=wire.TRANSCRIPTS_STREAM,
                             ordered_consumer=True, deliver_policy=policy, config=config)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=2)
            except TimeoutError:
                return  # nothing newer than the start time
            if (t := wire.decode_stored(msg.data)) is not None:
                yield t
            if msg.metadata.num_pending == 0:
                return
    finally:
        await sub.unsubscribe()


async def jetstream_api(nc: NATS, subject: str, body: dict[str, Any],
                        timeout: float = 10.0) -> dict[str, Any]:
    """One JetStream API call, with its whole answer (nats-py keeps some fields back)."""
    try:
        resp = await nc.request(subject, json.dumps(body).encode(), timeout=timeout)
    except NatsTimeoutError as exc:
        raise NatsUnavailable(f"NATS did not answer {subject} within {timeout:g}s") from exc
    obj: dict[str, Any] = json.loads(resp.data)
    return obj


async def subjects(nc: NATS, subjects_filter: str, stream: str = wire.TRANSCRIPTS_STREAM,
                   timeout: float = 10.0) -> AsyncIterator[tuple[str, int]]:
    """(subject, message count) of every subject matching the filter, a page at a time
    (the server pages long lists), sorted within a page."""
    offset = 0
    while True:
        obj = await jetstream_api(nc, f"$JS.API.STREAM.INFO.{stream}",
                         {"subjects_filter": subjects_filter, "offset": offset}, timeout)
        error = obj.get("error")
        if error:
            if error.get("err_code") == STREAM_NOT_FOUND:
                return
            raise ChatwaxError(f"stream info failed: {error.get('description')}")
        page: dict[str, int] = (obj.get("state") or {}).get("subjects") or {}
        for subject in sorted(page):
            yield subject, page[subject]
        offset += len(page)
        if not page or offset >= int(obj.get("total") or 0):
            return


@dataclass(frozen=True, slots=True)
class Stored:
    """A record as the stream holds it: where and when it was stored."""

    seq: int
    stored_at: float
    data: bytes


async def read_subject(nc: NATS, subject: str, since: float | None = None,
                       stream: str = wire.TRANSCRIPTS_STREAM, batch: int = BATCH,
                       timeout: float = 10.0) -> AsyncGenerator[Stored, None]:
    """One subject's records in order, from `since` (unix seconds) on, `batch` per round
    trip. Memory stays at one batch whatever the subject holds."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    request: dict[str, Any] = {"next_by_subj": subject, "batch": batch}
    if since is not None:
        request["start_time"] = datetime.fromtimestamp(since, tz=UTC).isoformat()
    else:
        request["seq"] = 1
    try:
        while True:
            await nc.publish(f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(),
                             reply=inbox)
            last = 0
            while True:
                try:
                    msg = await sub.next_msg(timeout=timeout)
                except NatsTimeoutError as exc:
                    raise NatsUnavailable(f"NATS stopped sending {subject} for {timeout:g}s"
                                          ) from exc
                headers = msg.headers or {}
                status = headers.get(Header.STATUS)
                if status == StatusCode.NO_MESSAGES:
                    return  # nothing (more) on this subject
                if status == END_OF_BATCH:
                    if int(headers.get("Nats-Num-Pending", "0")) == 0 or last == 0:
                        return
                    break
                if status:
                    raise ChatwaxError(f"direct get of {subject} failed: {status} "
                                       f"{headers.get(Header.DESCRIPTION, '')}".strip())
                last = int(headers["Nats-Sequence"])
                yield Stored(last, parse_timestamp(headers["Nats-Time-Stamp"]), msg.data)
            request = {"next_by_subj": subject, "batch": batch, "seq": last + 1}
    finally:
        await sub.unsubscribe()


def parse_timestamp(text: str) -> float:
    """JetStream's RFC 3339 time with nanoseconds, as unix seconds."""
    head, _, frac = text.rstrip("Z").partition(".")
    whole = datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp()
    return whole + (float(f"0.{frac}") if frac else 0.0)
