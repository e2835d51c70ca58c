"""Fault injection with real processes: a dataflow process is SIGKILLed mid-stream.

`chatwax up` restarts the dead process (as a kubelet restarts a container), the others
replace themselves to re-form the cluster with it, bytewax recovery brings back state and
stream positions, and no user sees a lost, doubled or reordered turn.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter
from typing import Any

import nats as nats_py

from chatwax.client.chat import ChatClient
from chatwax.core import wire
from chatwax.core.settings import Settings
from chatwax.core.wire import ErrorEvent, FinalEvent
from chatwax.dataflow.runspec import MIN_RECOVERY_PARTITIONS
from tests.support.asks import run
from tests.support.procs import children_of

USERS, TURNS = 6, 4


def test_sigkill_of_a_dataflow_process_loses_and_doubles_nothing(up: Any, own_llm: Any) -> None:
    own_llm.set(latency_s=0.25)  # keep calls in flight when the process dies
    try:
        u = up("--no-ui", "--snapshot-interval", "1")
        u.wait_ready()
        # A new store gets 16 partitions (fewer keys each: a faster resume), not one per
        # process; the recovery below reads them all.
        parts = list((u.data_dir / "recovery").glob("part-*.sqlite3"))
        assert len(parts) == MIN_RECOVERY_PARTITIONS == 16
        report = run(_scenario(u, Settings(nats_url=f"nats://127.0.0.1:{u.nats_port}")))
    finally:
        own_llm.set(latency_s=0.0)
    print("fault injection (SIGKILL dataflow process 1):", report)
    assert "restarting it (the cluster re-forms with it)" in u.output()
    assert "restarting this process" in u.output()  # the survivor re-formed the cluster
    assert report["sent"] == USERS * TURNS
    assert report["answered"] == report["sent"]
    assert report["lost"] == 0
    assert report["duplicates_shown"] == 0
    assert report["history_mismatches"] == 0, report


async def _scenario(u: Any, settings: Settings) -> dict[str, int]:
    client = await ChatClient.connect(settings)
    raw = await nats_py.connect(settings.nats_url)
    finals_seen: Counter[str] = Counter()

    async def count_raw(msg: Any) -> None:  # every final on the wire, duplicates included
        event = wire.decode_event(msg.data)
        if isinstance(event, FinalEvent):
            finals_seen[event.request_id] += 1

    await raw.subscribe("_INBOX.>", cb=count_raw)
    convs = {f"kill-{i}-{uuid.uuid4().hex[:6]}": f"conv-{uuid.uuid4().hex[:8]}"
             for i in range(USERS)}
    pendings: dict[str, list[Any]] = {user: [] for user in convs}
    killed = False
    for turn in range(TURNS):
        for user, conv in convs.items():
            pendings[user].append(await client.ask(user, conv, f"{user} turn {turn}"))
        if turn == 1 and not killed:
            await asyncio.sleep(0.4)
            os.kill(children_of(u.proc.pid)[2], signal.SIGKILL)  # dataflow process 1
            killed = True

    async def outcome(p: Any) -> list[Any]:
        return [e async for e in p.events(timeout=90)]

    results = await asyncio.gather(*(outcome(p) for ps in pendings.values() for p in ps),
                                   return_exceptions=True)
    answered = sum(1 for r in results if isinstance(r, list) and isinstance(r[-1], FinalEvent))
    shown = sum(1 for r in results if isinstance(r, list)
                for e in r if isinstance(e, FinalEvent | ErrorEvent)) - len(
                    [r for r in results if isinstance(r, list)])
    # History: every conversation has exactly its turns, in order, none twice.
    mismatches = 0
    for user, conv in convs.items():
        expected = [(n + 1, f"{user} turn {n}", f"echo: {user} turn {n}") for n in range(TURNS)]
        deadline = time.monotonic() + 15
        while True:
            got = [(t.turn, t.prompt, t.answer) for t in await client.history(user, conv)]
            if got == expected or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        mismatches += got != expected
    await client.close()
    await raw.close()
    return {
        "sent": len(results),
        "answered": answered,
        "lost": len(results) - answered,
        "duplicates_shown": shown,
        "duplicates_on_the_wire": sum(n - 1 for n in finals_seen.values() if n > 1),
        "history_mismatches": mismatches,
    }
