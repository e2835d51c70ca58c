"""Asking the running platform from a test: one prompt, all its events."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

from chatwax.client.chat import ChatClient
from chatwax.core.settings import Settings
from chatwax.core.wire import ReplyEvent

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def uid(prefix: str) -> str:
    """A fresh id, so that tests sharing a stack never share a user or conversation."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def ask_all(settings: Settings, user: str, conv: str, prompt: str) -> list[ReplyEvent]:
    client = await ChatClient.connect(settings)
    try:
        return [e async for e in (await client.ask(user, conv, prompt, timeout=30)).events()]
    finally:
        await client.close()
