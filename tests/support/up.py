"""`chatwax up` as a user runs it, started on free ports by tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.support.procs import free_port, free_port_run

CHATWAX = [sys.executable, "-m", "chatwax"]


class Up:
    def __init__(self, proc: subprocess.Popen[str], nats_port: int, ui_port: int,
                 metrics_port: int, log: Path) -> None:
        self.proc, self.nats_port, self.ui_port = proc, nats_port, ui_port
        self.metrics_port, self.log = metrics_port, log
        self.prom_port = 0
        self.llm_port = 0
        self.data_dir = Path()

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "NATS_URL": f"nats://127.0.0.1:{self.nats_port}"}

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while "chatwax is up" not in self.output():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.2)


def up_factory(tmp_path: Path, llm: Any) -> Iterator[Callable[..., Up]]:
    started: list[Up] = []

    def start(*flags: str, no_key: bool = False, env: dict[str, str] | None = None,
              sigint_ignored: bool = False) -> Up:
        """`no_key`: as on a clean machine, no OPENAI_* variable (nor CHATWAX_MODEL or
        CHATWAX_PROVIDER), so `chatwax up` serves the local model unless `--llm` says
        otherwise; else the echo LLM is set in OPENAI_BASE_URL. `env`: more variables for
        `chatwax up`; `sigint_ignored`: started as a shell starts a background job, with
        SIGINT ignored."""
        extra = env or {}
        ports = {name: free_port() for name in ("nats", "mon", "ui", "prom", "llm")}
        # Process i listens on base + i, so these need two consecutive free ports.
        ports["cluster"], ports["metrics"] = free_port_run(2), free_port_run(2)
        ports["health"] = free_port_run(2)
        log = tmp_path / f"up-{len(started)}.log"
        env = {**os.environ, "OPENAI_BASE_URL": llm.base_url, "CHATWAX_MODEL": "echo-1"}
        if no_key:
            env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")
                   and k not in ("CHATWAX_MODEL", "CHATWAX_PROVIDER")}
        env.update(extra)
        with log.open("w") as out:
            proc = subprocess.Popen(
                [*CHATWAX, "up", "--data-dir", str(tmp_path / "data"),
                 "--nats-port", str(ports["nats"]), "--nats-monitor-port", str(ports["mon"]),
                 "--cluster-port", str(ports["cluster"]), "--metrics-port", str(ports["metrics"]),
                 "--health-port", str(ports["health"]),
                 "--ui-port", str(ports["ui"]), "--prometheus-port", str(ports["prom"]),
                 "--llm-port", str(ports["llm"]), *flags],
                env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
                preexec_fn=_ignore_sigint if sigint_ignored else None,
            )
        u = Up(proc, ports["nats"], ports["ui"], ports["metrics"], log)
        u.data_dir = tmp_path / "data"
        u.prom_port, u.llm_port = ports["prom"], ports["llm"]
        started.append(u)
        return u

    yield start
    for u in started:
        if u.proc.poll() is None:
            u.proc.send_signal(signal.SIGTERM)  # `chatwax up` stops its children
            try:
                u.proc.wait(30)
            except subprocess.TimeoutExpired:
                u.proc.kill()
                u.proc.wait()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
