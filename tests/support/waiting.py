"""Waiting for a condition instead of sleeping for a guess."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float, what: str, poll: float = 0.1) -> T:
    """`check()`'s first truthy result; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s (last: {got!r})"
        time.sleep(poll)


async def eventually(check: Callable[[], Awaitable[T]], timeout: float, what: str,
                     poll: float = 0.1) -> T:
    """The async form of `wait_until`."""
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s (last: {got!r})"
        await asyncio.sleep(poll)
