"""A steady stream of prompts from several users, and the reliability report over it.

Each user chats in one conversation, one prompt at a time (the next once the last is
answered), through the real client and NATS. The report for a window says how many
prompts were sent, answered, lost (sent and never answered), shown twice (more than one
final or error for one request), and whether each conversation's stored history holds
exactly the answered prompts in order; and the longest stretch without any answer.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from chatwax.client.chat import ChatClient
from chatwax.client.loopthread import LoopThread
from chatwax.core.errors import ChatwaxError
from chatwax.core.settings import Settings
from chatwax.core.wire import ErrorEvent, FinalEvent


@dataclass
class Window:
    sent: int = 0
    answered: int = 0
    errors: int = 0
    duplicates_shown: int = 0
    unanswered: int = 0
    answer_times: list[float] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.sent - self.answered - self.errors

    def longest_gap(self, start: float, end: float) -> float:
        """Seconds of the longest stretch in [start, end] in which no answer arrived."""
        times = [start, *sorted(t for t in self.answer_times if start <= t <= end), end]
        return max(b - a for a, b in itertools.pairwise(times))


class Traffic:
    def __init__(self, settings: Settings, users: int = 4, think_s: float = 0.2,
                 timeout_s: float = 180.0) -> None:
        self.settings = settings
        self.users = [f"sim{i}" for i in range(users)]
        self.think_s = think_s
        self.timeout_s = timeout_s
        self.expected: dict[str, list[str]] = {u: [] for u in self.users}
        self.turns: dict[str, int] = dict.fromkeys(self.users, 0)
        self.window = Window()
        self._loop = LoopThread("traffic")
        self._stop = threading.Event()
        self._client: ChatClient | None = None
        self._tasks: Any = None

    def start(self) -> Traffic:
        self.window = Window()
        self._stop.clear()
        self._tasks = self._loop.submit(self._run())
        return self

    async def _connect(self) -> ChatClient:
        while True:
            try:
                return await ChatClient.connect(self.settings, name="cluster-traffic")
            except ChatwaxError:
                await asyncio.sleep(0.5)

    async def _run(self) -> None:
        if self._client is None:
            self._client = await self._connect()
        await asyncio.gather(*(self._user(self._client, u) for u in self.users))

    async def _user(self, client: ChatClient, user: str) -> None:
        w = self.window
        while not self._stop.is_set():
            prompt = f"{user} turn {self.turns[user]}"
            try:
                pending = await client.ask(user, f"conv-{user}", prompt)
            except ChatwaxError:
                await asyncio.sleep(0.5)  # not accepted: not sent; try again
                continue
            w.sent += 1
            ends = 0
            final: FinalEvent | ErrorEvent | None = None
            try:
                async for event in pending.events(timeout=self.timeout_s):
                    if isinstance(event, FinalEvent | ErrorEvent):
                        ends += 1
                        final = event
            except ChatwaxError:
                w.unanswered += 1
            finally:
                await pending.close()
            if isinstance(final, FinalEvent):
                w.answered += 1
                w.answer_times.append(time.time())
                self.expected[user].append(prompt)
                self.turns[user] += 1
            elif isinstance(final, ErrorEvent):
                w.errors += 1
            w.duplicates_shown += max(0, ends - 1)
            await asyncio.sleep(self.think_s)

    def stop(self) -> Window:
        """Stop sending; every user's last prompt is waited for."""
        self._stop.set()
        self._tasks.result(self.timeout_s + 30)
        return self.window

    def history_mismatches(self) -> int:
        """Conversations whose stored turns differ from the prompts answered, in order."""
        assert self._client is not None

        async def check() -> int:
            assert self._client is not None
            bad = 0
            for user, prompts in self.expected.items():
                # Read once: a final reply is sent only after its turn is stored.
                history = await self._client.history(user, f"conv-{user}")
                bad += [t.prompt for t in history] != prompts
            return bad

        return self._loop.call(check(), 60)

    def close(self) -> None:
        if self._client is not None:
            self._loop.call(self._client.close())
        self._loop.stop()
