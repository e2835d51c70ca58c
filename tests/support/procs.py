"""Real processes for tests: nats-server, a bytewax cluster of `chatwax dataflow`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from chatwax.dev.stack import nats_server_binary, port_free, wait_http


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_run(count: int) -> int:
    """The first of `count` consecutive free ports (chatwax up uses base + i)."""
    for _ in range(50):
        base = free_port()
        if base + count < 65535 and all(port_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no run of free ports found")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class NatsServer:
    store: Path
    port: int = field(default_factory=free_port)
    monitor: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([
            nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-m",
            str(self.monitor), "-js", "-sd", str(self.store), "-l", str(self.store / "log"),
        ])
        wait_http(f"http://127.0.0.1:{self.monitor}/healthz", 20, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


@contextlib.contextmanager
def nats_server(store: Path) -> Iterator[NatsServer]:
    store.mkdir(parents=True, exist_ok=True)
    server = NatsServer(store)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Cluster:
    """A real N-process bytewax cluster running `chatwax dataflow`, as pods would."""

    env: dict[str, str]
    processes: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    metrics_ports: list[int] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def metrics_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}/metrics" for p in self.metrics_ports]

    def start(self, log_dir: Path) -> None:
        ports = [free_port() for _ in range(self.processes)]
        self.metrics_ports = [free_port() for _ in range(self.processes)]
        addresses = ";".join(f"127.0.0.1:{p}" for p in ports)
        for i in range(self.processes):
            log = log_dir / f"dataflow-{i}.log"
            self.logs.append(log)
            env = {
                **os.environ, **self.env,
                "BYTEWAX_PROCESS_ID": str(i), "BYTEWAX_ADDRESSES": addresses,
                "BYTEWAX_DATAFLOW_API_ENABLED": "true",
                "BYTEWAX_DATAFLOW_API_PORT": str(self.metrics_ports[i]),
            }
            with log.open("wb") as out:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "chatwax", "dataflow"], env=env,
                    stdout=out, stderr=subprocess.STDOUT,
                ))
        for proc, url in zip(self.procs, self.metrics_urls(), strict=True):
            wait_http(url, 60, proc)

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc)

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())
