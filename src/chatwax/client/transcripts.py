"""Reading the transcripts stream: every completed turn, from a point in time on."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from chatwax.core import protocol
from chatwax.core.protocol import Transcript


async def read_transcripts(
    js: JetStreamContext, since_s: float | None, subject: str = f"{protocol.TRANSCRIPTS_PREFIX}.>"
) -> list[Transcript]:
    """Every stored turn newer than `since_s` seconds (all when None), oldest first."""
    try:
        info = await js.stream_info(protocol.TRANSCRIPTS_STREAM)
    except NotFoundError:
        return []
    if info.state.messages == 0:
        return []
    policy, config = api.DeliverPolicy.ALL, None
    if since_s is not None:
        start = datetime.fromtimestamp(time.time() - since_s, tz=UTC)
        policy = api.DeliverPolicy.BY_START_TIME
        config = api.ConsumerConfig(opt_start_time=start)
    sub = await js.subscribe(subject, stream=protocol.TRANSCRIPTS_STREAM,
                             ordered_consumer=True, deliver_policy=policy, config=config)
    out: list[Transcript] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=2)
            except TimeoutError:
                break  # nothing newer than the start time
            out.append(Transcript.decode(msg.data))
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return out
