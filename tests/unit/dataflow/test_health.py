"""The dataflow's health endpoint: what ready and live mean, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

from chatwax.client.loopthread import LoopThread
from chatwax.dataflow.health import Health, serve


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ready_needs_nats_and_every_worker_running() -> None:
    clock = Clock()
    h = Health(workers=2, clock=clock)
    assert h.report()["cluster"] == "forming" and not h.report()["ready"]
    assert h.report()["live"]  # waiting for peers is not a reason to be restarted
    h.worker_active(0)
    h.nats_connected = lambda: True
    assert not h.report()["ready"] and h.formed_at is None
    h.worker_active(5)  # worker indexes are the cluster's, not this process's
    assert h.report()["ready"] and h.formed_at == clock.now
    h.nats_connected = lambda: False
    assert not h.report()["ready"] and h.report()["live"]


def test_a_worker_that_stops_polling_is_not_live() -> None:
    clock = Clock()
    h = Health(workers=2, stall_s=60, clock=clock, nats_connected=lambda: True)
    h.worker_active(0)
    h.worker_active(1)
    clock.now += 61
    h.worker_active(1)
    report = h.report()
    assert report["stalled_workers"] == [0] and not report["live"] and not report["ready"]


def test_the_endpoint_answers_on_the_event_loop_with_status_codes() -> None:
    loop = LoopThread("health-test")
    h = Health(workers=1, nats_connected=lambda: True)
    server: asyncio.Server = loop.call(serve(h, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]

    def get(path: str) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        assert get("/livez")[0] == 200
        status, body = get("/readyz")
        assert status == 503 and body["cluster"] == "forming"
        h.worker_active(0)
        assert get("/readyz") == (200, h.report())
        assert get("/nope")[0] == 404
    finally:
        loop.call(_close(server))
        loop.stop()


async def _close(server: asyncio.Server) -> None:
    server.close()
    await server.wait_closed()
