"""The tutorial's request/reply API, kept working on top of the durable path.

The tutorial's frontend sends a core NATS request on `prompts` with
`{"user_id": ..., "prompt": ...}` and shows the reply payload as the answer. This adapter
turns each such request into a regular prompt (one conversation per user, as the tutorial
had), waits for its final event and answers with the text, or with `error: <message>`.
Every dataflow process runs one, in a queue group, on the process's NATS connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from chatwax.client.chat import ChatClient
from chatwax.core import wire
from chatwax.core.errors import ChatwaxError, ProtocolError
from chatwax.dataflow.link import NatsLink

log = logging.getLogger(__name__)
QUEUE_GROUP = "chatwax-compat"


def error_text(message: str) -> bytes:
    return f"error: {message}".encode()


async def _serve(link: NatsLink, subject: str, max_prompt_chars: int, timeout: float) -> None:
    client = ChatClient(link.nc, max_prompt_chars)
    tasks: set[asyncio.Task[None]] = set()

    async def answer(msg: Any) -> None:
        try:
            await respond(msg)
        except Exception:  # one bad request never ends the adapter
            log.exception("tutorial-style request could not be answered")
            link.metrics.dead_letters.labels("compat").inc()
            with contextlib.suppress(Exception):
                await msg.respond(error_text("internal error in chatwax"))

    async def respond(msg: Any) -> None:
        try:
            req = wire.decode_compat(msg.data, max_prompt_chars)
        except ProtocolError as exc:
            link.metrics.refused(exc.code)
            await msg.respond(error_text(exc.message))
            return
        reply = error_text("no answer")
        try:
            answer = await (await client.ask(
                req.user_id, wire.compat_conversation_id(req.user_id), req.prompt, timeout
            )).result()
            reply = answer.text.encode()
        except ChatwaxError as exc:
            reply = error_text(exc.message)
        except Exception:
            log.exception("tutorial-style request failed")
            reply = error_text("internal error in chatwax")
        await msg.respond(reply)

    async def on_msg(msg: Any) -> None:
        if not msg.reply:
            return  # a publish, not a request: there is nobody to answer
        task = asyncio.create_task(answer(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    await link.nc.subscribe(subject, queue=QUEUE_GROUP, cb=on_msg)


def start(link: NatsLink, subject: str, max_prompt_chars: int, timeout: float) -> None:
    """Subscribe the adapter on the link's loop (returns once subscribed)."""
    if not subject:
        return
    link.thread.call(_serve(link, subject, max_prompt_chars, timeout))
    log.info("tutorial-style requests answered on subject %r", subject)

