"""An asyncio event loop on a daemon thread, for code that is not asyncio itself.

Bytewax workers and Streamlit scripts are plain threads that must not block on network
I/O, while nats-py and the LLM client are asyncio. Each such process owns one `LoopThread`
and hands it coroutines. It lives with the client, not in `core`: core is pure logic and
owns no threads or event loops (an import-linter contract says so).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class LoopThread:
    """An event loop running forever on its own daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        # Running fire-and-forget tasks: the loop itself keeps only weak references.
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule a coroutine from any thread; the future says how it ended."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine and wait for it: for start-up and synchronous callers only."""
        return self.submit(coro).result(timeout)

    def call_soon(self, fn: Callable[..., object], *args: object) -> None:
        """Run `fn(*args)` on the loop soon, without waiting (thread-safe, never blocks)."""
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop (pending tasks are dropped) and wait for its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)

    def spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        """Start a task from any thread; a failure is logged, never lost silently."""
        self.loop.call_soon_threadsafe(self._spawn, coro, what)

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, what))

    def _done(self, task: asyncio.Task[None], what: str) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", what, exc_info=task.exception())
