"""`chatwax bench --only export`: how fast `chatwax export` reads a large transcripts stream,
and that its memory does not grow with the stream.

A fresh nats-server gets N conversations of T turns each, stored as the dataflow stores
them; then the real `chatwax export` command runs on it, once per format and size, and its
wall time and peak RSS (from the kernel, for that process alone) are reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.js import api

from chatwax.bench.measure import proc_stats
from chatwax.bench.ports import free_run
from chatwax.core import wire
from chatwax.core.wire import Transcript, Usage
from chatwax.dev.natsserver import nats_server_binary
from chatwax.dev.probes import wait_http


@dataclass
class ExportRun:
    format: str
    conversations: int
    records: int
    seconds: float
    records_per_s: float
    mb_per_s: float
    output_mb: float
    peak_rss_mb: float


async def _seed(url: str, conversations: int, turns: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(api.StreamConfig(
        name=wire.TRANSCRIPTS_STREAM, subjects=[f"{wire.TRANSCRIPTS_PREFIX}.>"],
        allow_direct=True, storage=api.StorageType.FILE))
    pending: list[asyncio.Future[api.PubAck]] = []
    for c in range(conversations):
        for t in range(turns):
            record = Transcript(
                f"r{c:07d}-{t}", f"user-{c % 1000}", f"conv-{c:07d}", t + 1,
                f"question {t} of conversation {c}: " + "words " * 20,
                "an answer of about sixty words " * 10, "gpt-4o-mini", "openai",
                Usage(120 + 80 * t, 60), 900.0, 200.0, time.time(), time.time())
            pending.append(await js.publish_async(record.subject, record.encode()))
        if len(pending) >= 2000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    await nc.close()


def _export(url: str, fmt: str, out: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one `chatwax export`.

    The peak is the process's own VmHWM, read while it runs: the kernel's maxrss of a
    child counts the memory of the parent it was forked from, before it exec'd.
    """
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "chatwax", "export", "--format", fmt,
                             str(out)], env={**os.environ, "NATS_URL": url},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0.0
    while proc.poll() is None:
        with contextlib.suppress(OSError, StopIteration, ValueError):
            peak = max(peak, proc_stats(proc.pid)[1])
        time.sleep(0.02)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise RuntimeError(f"chatwax export failed: {err}")
    return seconds, peak


def export_rate(conversations: int, turns: int = 5) -> list[ExportRun]:
    """Export a stream of `conversations` x `turns` records, and one a tenth of its size."""
    runs: list[ExportRun] = []
    for size in (max(conversations // 10, 1), conversations):
        with tempfile.TemporaryDirectory(prefix="chatwax-bench-export-") as tmp:
            work = Path(tmp)
            port = free_run(2, 14300)
            monitor = port + 1
            server = subprocess.Popen([nats_server_binary(), "-a", "127.0.0.1", "-p",
                                       str(port), "-m", str(monitor), "-js", "-sd",
                                       str(work / "nats")], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            try:
                wait_http(f"http://127.0.0.1:{monitor}/healthz", 20)
                url = f"nats://127.0.0.1:{port}"
                asyncio.run(_seed(url, size, turns))
                for fmt in ("openai-jsonl", "jsonl"):
                    out = work / f"out-{fmt}.jsonl"
                    seconds, rss = _export(url, fmt, out)
                    mb = out.stat().st_size / 1e6
                    records = size * turns
                    runs.append(ExportRun(fmt, size, records, round(seconds, 2),
                                          round(records / seconds), round(mb / seconds, 1),
                                          round(mb, 1), round(rss, 1)))
            finally:
                server.terminate()
                server.wait(10)
    return runs
