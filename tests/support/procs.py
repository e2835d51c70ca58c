"""Real processes for tests: nats-server, and a Bytewax cluster of `chatwax dataflow`
started by `chatwax up`'s own code."""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from chatwax.dev.natsserver import nats_server_binary
from chatwax.dev.options import StackOptions
from chatwax.dev.probes import port_free, wait_http
from chatwax.dev.stack import Stack

# Ports handed to servers that bind them only seconds later: below Linux's ephemeral range
# (32768-60999), so an outgoing connection of any process cannot take one meanwhile, as
# a port from `bind(0)` (in that range) could. Random, so parallel tests rarely meet.
_SERVER_PORTS = range(20000, 32700)
_pick = random.Random()
# Ports handed out lately. A port is free until its server binds it, so without this
# one test could hand the same port to two servers (a clean-clone run gave a dataflow
# process's cluster port to a health endpoint).
_handed_out: deque[int] = deque(maxlen=4000)


def free_port() -> int:
    return free_port_run(1)


def free_port_run(count: int) -> int:
    """The first of `count` consecutive free ports (chatwax up uses base + i), none of
    them handed out lately."""
    for _ in range(400):
        base = _pick.choice(_SERVER_PORTS)
        run = range(base, base + count)
        if run.stop <= _SERVER_PORTS.stop and all(
                p not in _handed_out and port_free(p) for p in run):
            _handed_out.extend(run)
            return base
    raise RuntimeError("no run of free ports found below the ephemeral range")


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


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True)
    return [int(p) for p in out.stdout.split()]


def dataflow_env(llm_url: str, model: str) -> dict[str, str]:
    """What the tests' dataflow processes run with, beyond what `chatwax up` gives them:
    the test's LLM server, and short timeouts so that fault tests end quickly."""
    return {
        "OPENAI_BASE_URL": llm_url,
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "CHATWAX_MODEL": model,
        "CHATWAX_LLM_TIMEOUT": "2",
        "CHATWAX_LLM_RETRY_MAX_TIME": "3",
        "CHATWAX_POLL_MS": "2",
    }


def dataflow_cluster(nats_url: str, env: dict[str, str], work: Path,
                     processes: int = 2) -> Stack:
    """A real N-process Bytewax cluster of `chatwax dataflow` on an existing NATS, started
    by the same code as `chatwax up` (and stopped together, as it stops them)."""
    opts = StackOptions(
        processes=processes, ui=False, data_dir=work, external_nats=nats_url,
        cluster_port=free_port_run(processes), metrics_port=free_port_run(processes),
        health_port=free_port_run(processes), snapshot_interval=2, restart=False,
        extra_env=env, log_dir=work / "logs", llm="openai",
    )
    stack = Stack(opts)
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    return stack


def log_text(stack: Stack) -> str:
    """Everything a test stack's children wrote (they write to its `log_dir`)."""
    assert stack.opts.log_dir is not None
    return "".join(p.read_text(errors="replace")
                   for p in sorted(stack.opts.log_dir.glob("*.log")))
