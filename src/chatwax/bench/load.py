"""The load generator: prompts at a fixed rate over a scenario's conversations, each one
timed from its publish to its first chunk and to its final answer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from chatwax.bench.echo import EchoProcess
from chatwax.bench.measure import Result, percentiles
from chatwax.bench.scenarios import Scenario
from chatwax.client.chat import ChatClient
from chatwax.core.settings import Settings
from chatwax.core.wire import ChunkEvent, ErrorEvent, FinalEvent


class _Load:
    """One scenario's prompts in flight; answers and errors are counted on `result` as
    they come, the timings kept for the summary."""

    def __init__(self, client: ChatClient, sc: Scenario, duration: float,
                 result: Result) -> None:
        self.client, self.sc, self.duration, self.result = client, sc, duration, result
        self.sent_at: dict[str, float] = {}
        self.done_at: list[float] = []
        self.e2e: list[float] = []
        self.ttft: list[float] = []
        self.began = 0.0

    async def one(self, i: int) -> None:
        """Prompt `i` in conversation i mod N, followed to its final answer or error."""
        r, sc = self.result, self.sc
        conv = f"bench-{i % sc.conversations}"
        start = time.perf_counter()
        first: float | None = None
        self.sent_at[f"prompt {i}"] = time.time()
        try:
            pending = await self.client.ask(f"u{i % sc.conversations}", conv, f"prompt {i}")
            async for event in pending.events(timeout=self.duration + 30):
                if isinstance(event, ChunkEvent) and first is None:
                    first = time.perf_counter()
                elif isinstance(event, FinalEvent):
                    r.answered += 1
                    self.done_at.append(time.perf_counter() - self.began)
                    self.e2e.append((time.perf_counter() - start) * 1000)
                    if first is not None:
                        self.ttft.append((first - start) * 1000)
                elif isinstance(event, ErrorEvent):
                    r.errors += 1
            await pending.close()
        except Exception:  # noqa: BLE001 - counted: not answered within the run
            r.unanswered += 1

    async def run(self) -> float:
        """Send at the scenario's rate for `duration`, then wait up to 30 s for the answers;
        the seconds from the first send to the end of that wait."""
        tasks: list[asyncio.Task[None]] = []
        self.began = time.perf_counter()
        i = 0
        while (now := time.perf_counter() - self.began) < self.duration:
            due = i / self.sc.rate
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(self.one(i)))
            i += 1
        self.result.sent = i
        await asyncio.wait(tasks, timeout=30)
        return time.perf_counter() - self.began

    def summarize(self, elapsed: float, latency: float) -> None:
        """Rates and latency percentiles into the result; overheads are beyond `latency`,
        the LLM server's own time."""
        r, duration = self.result, self.duration
        r.unanswered = r.sent - r.answered - r.errors
        r.throughput = round(r.answered / elapsed, 1)
        steady = sum(1 for t in self.done_at if 1.0 <= t < duration)
        r.steady = round(steady / (duration - 1.0), 1)
        r.e2e_ms = percentiles(self.e2e)
        r.overhead_ms = percentiles([x - latency * 1000 for x in self.e2e])
        r.ttft_overhead_ms = percentiles([x - latency * 1000 for x in self.ttft])

    def inbound(self, requests: list[dict[str, Any]]) -> dict[str, float]:
        """Publish until the LLM server had the request, from the server's arrival log."""
        arrivals = {str(e["messages"][-1]["content"]): e["received_at"] for e in requests}
        return percentiles([(arrivals[p] - t) * 1000 for p, t in self.sent_at.items()
                            if p in arrivals])


async def drive(url: str, sc: Scenario, duration: float, latency: float, r: Result,
                llm: EchoProcess | None = None) -> None:
    """Load the stack at NATS `url` as `sc` says, for `duration` seconds, into `r`."""
    client = await ChatClient.connect(Settings(nats_url=url))
    load = _Load(client, sc, duration, r)
    load.summarize(await load.run(), latency)
    if llm is not None:
        r.inbound_ms = load.inbound(llm.requests())
    await client.close()
