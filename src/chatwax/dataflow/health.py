"""Health of one dataflow process, for Kubernetes' probes, on a small port of its own.

Bytewax's own API (`/metrics`) answers as soon as the process starts, long before its
cluster has formed, so it cannot say "ready". This endpoint can:

- `/readyz`: NATS is connected, and every worker of this process has started, which
  Bytewax does only once all peers are connected (the cluster has formed) and this
  process's stream partitions are assigned and subscribed.
- `/livez`: the event loop that carries NATS and every LLM call answers (this handler runs
  on it), and no started worker has stopped polling for longer than `stall_s`.

The handler does no I/O and takes microseconds, so a probe timeout of a few seconds holds
under load.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Health:
    """What this process knows about itself; written by workers, read by the probes."""

    workers: int
    """Worker threads this process runs."""
    stall_s: float = 60.0
    nats_connected: Callable[[], bool] = lambda: False
    clock: Callable[[], float] = time.monotonic
    _active: dict[int, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    formed_at: float | None = None

    def worker_active(self, worker: int) -> None:
        """Called by each worker whenever it polls its feedback source."""
        now = self.clock()
        with self._lock:
            if worker not in self._active and len(self._active) + 1 == self.workers:
                self.formed_at = now
                log.info("cluster formed: all %d worker(s) of this process are running",
                         self.workers)
            self._active[worker] = now

    def report(self) -> dict[str, Any]:
        now = self.clock()
        with self._lock:
            started = len(self._active)
            stalled = sorted(w for w, t in self._active.items() if now - t > self.stall_s)
        nats = self.nats_connected()
        formed = started >= self.workers
        return {
            "ready": nats and formed and not stalled,
            "live": not stalled,
            "nats": "connected" if nats else "not connected",
            "cluster": "formed" if formed else "forming",
            "workers_running": started,
            "workers": self.workers,
            "stalled_workers": stalled,
        }


ROUTES = {"/readyz": "ready", "/livez": "live", "/healthz": "ready"}


async def _handle(health: Health, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter) -> None:
    try:
        request = await asyncio.wait_for(reader.readline(), 5)
        while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
            pass  # headers: nothing in them matters here
        parts = request.decode("latin-1").split()
        path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
        if path in ROUTES:
            report = health.report()
            ok = bool(report[ROUTES[path]])
            body = json.dumps(report).encode()
            status = "200 OK" if ok else "503 Service Unavailable"
        else:
            body, status = b'{"error": "not found"}', "404 Not Found"
        writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        await writer.drain()
    except (TimeoutError, ConnectionError, UnicodeDecodeError):
        pass
    finally:
        writer.close()


async def serve(health: Health, host: str, port: int) -> asyncio.Server:
    """Start the endpoint on the running loop (the process's NATS and LLM loop)."""
    server = await asyncio.start_server(lambda r, w: _handle(health, r, w), host, port,
                                        reuse_address=True)
    log.info("health endpoint on %s:%d (/readyz, /livez)", host, port)
    return server
