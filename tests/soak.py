"""Bounded soak run: steady traffic against `chatwax up` while faults are injected.

    python -m tests.soak --duration 120 --users 20      (make soak)

Users chat in their own conversations the whole time; every --kill-every seconds a
dataflow process is SIGKILLed (the stack restarts it, the cluster re-forms) and the LLM answers some
prompts with a 429 first. At the end it prints the reliability summary: prompts sent,
answered, lost (must be 0), duplicates shown (must be 0), history mismatches (must be 0),
and exits non-zero if any of those is not 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from chatwax.client.chat import ChatClient
from chatwax.core.settings import Settings
from chatwax.core.wire import ErrorEvent, FinalEvent
from chatwax.dev.echo_llm import serve_in_thread
from tests.support.procs import free_port, free_port_run


def start_stack(data: Path, llm_url: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    nats_port = free_port()
    log = data / "up.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatwax", "up", "--no-ui", "--data-dir", str(data / "stack"),
         "--nats-port", str(nats_port), "--nats-monitor-port", str(free_port()),
         "--cluster-port", str(free_port_run(2)), "--metrics-port", str(free_port_run(2)),
         "--health-port", str(free_port_run(2)),
         "--snapshot-interval", "2"],
        env={**os.environ, "OPENAI_BASE_URL": llm_url, "CHATWAX_MODEL": "echo-1",
             "CHATWAX_LLM_RETRY_MAX_TIME": "10",
             # Simulated users chat faster than people type: no per-user rate limit.
             "CHATWAX_USER_PROMPTS_PER_MINUTE": "0"},
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while "chatwax is up" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"chatwax up did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return proc, nats_port, log


def dataflow_pids(up_pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(up_pid)],
                         capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "chatwax dataflow" in line]


async def user(client: ChatClient, name: str, until: float, think_s: float,
               results: dict[str, Any]) -> None:
    conv = f"soak-{name}"
    turn = 0
    while time.monotonic() < until:
        prompt = f"{name} turn {turn}"
        if random.random() < 0.1:
            prompt = f"[[429x1]] {prompt}"
        results["sent"] += 1
        pending = await client.ask(name, conv, prompt)
        ends = 0
        final = None
        try:
            async for event in pending.events(timeout=120):
                if isinstance(event, FinalEvent | ErrorEvent):
                    ends += 1
                    final = event
        except Exception:  # noqa: BLE001 - counted as lost
            final = None
        finally:
            await pending.close()
        if isinstance(final, FinalEvent):
            results["answered"] += 1
            results["expected"].setdefault(conv, []).append((name, prompt))
        elif isinstance(final, ErrorEvent):
            results["errors"] += 1
        results["duplicates_shown"] += max(0, ends - 1)
        turn += 1
        await asyncio.sleep(think_s * random.random())


async def soak(args: argparse.Namespace, nats_port: int, up: subprocess.Popen[bytes]) -> dict:
    settings = Settings(nats_url=f"nats://127.0.0.1:{nats_port}")
    client = await ChatClient.connect(settings)
    results: dict[str, Any] = {"sent": 0, "answered": 0, "errors": 0, "duplicates_shown": 0,
                               "expected": {}, "kills": 0}
    until = time.monotonic() + args.duration

    async def killer() -> None:
        while time.monotonic() + args.kill_every < until:
            await asyncio.sleep(args.kill_every)
            pids = dataflow_pids(up.pid)
            if pids:
                os.kill(random.choice(pids), signal.SIGKILL)
                results["kills"] += 1

    await asyncio.gather(killer(), *(user(client, f"u{i}", until, args.think, results)
                                     for i in range(args.users)))
    mismatches = 0
    for conv, turns in results["expected"].items():
        name = turns[0][0]
        stored = []
        for _ in range(50):
            stored = [t.prompt for t in await client.history(name, conv)]
            if len(stored) >= len(turns):
                break
            await asyncio.sleep(0.2)
        mismatches += stored != [p for _, p in turns]
    await client.close()
    results["history_mismatches"] = mismatches
    results["lost"] = results["sent"] - results["answered"] - results["errors"]
    del results["expected"]
    return results


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    p.add_argument("--duration", type=float, default=float(os.environ.get("SOAK_SECONDS", 120)))
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--think", type=float, default=0.5, help="max think time between turns")
    p.add_argument("--kill-every", type=float, default=40.0)
    p.add_argument("--latency", type=float, default=0.2, help="LLM latency in seconds")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="chatwax-soak-") as tmp, \
            serve_in_thread(model="echo-1", latency_s=args.latency) as llm:
        up, nats_port, log = start_stack(Path(tmp), llm.base_url)
        try:
            report = asyncio.run(soak(args, nats_port, up))
        finally:
            up.send_signal(signal.SIGTERM)
            up.wait(60)
        restarts = log.read_text(errors="replace").count("(the cluster re-forms with it)")
    report["cluster_restarts"] = restarts
    print("soak summary: " + ", ".join(f"{k}={v}" for k, v in report.items()))
    bad = report["lost"] or report["duplicates_shown"] or report["history_mismatches"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
