"""`chatwax up` and `chatwax ask` as a user runs them: real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tests.support.procs import children_of, free_port, free_port_run, wait_http
from tests.support.up import CHATWAX, Up
from tests.support.waiting import wait_until


def ask(u: Up, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CHATWAX, "ask", *args], env=u.env, capture_output=True, text=True,
                          timeout=60)


def test_up_serves_ask_with_history_and_stops_cleanly(up: Any, own_llm: Any) -> None:
    u = up("--with-prometheus")
    u.wait_ready()
    text = u.output()
    for where in (f"nats://127.0.0.1:{u.nats_port}", f"http://127.0.0.1:{u.ui_port}",
                  f"http://127.0.0.1:{u.metrics_port}/metrics",
                  f"http://127.0.0.1:{u.metrics_port + 1}/metrics"):
        assert where in text
    wait_http(f"http://127.0.0.1:{u.ui_port}/_stcore/health", 10)

    user = f"cli-{uuid.uuid4().hex[:6]}"
    first = ask(u, "--user", user, "hi, I am", user)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"echo: hi, I am {user}"
    assert "turn 1" in first.stderr
    second = ask(u, "--user", user, "who am I?")
    assert second.returncode == 0, second.stderr
    assert "turn 2" in second.stderr
    sent = next(r for r in reversed(own_llm.requests())
                if r["messages"][-1]["content"] == "who am I?")
    assert [m["content"] for m in sent["messages"][1:]] == [
        f"hi, I am {user}", f"echo: hi, I am {user}", "who am I?",
    ]

    bad = ask(u, "--user", "not a valid id", "hello")
    assert bad.returncode != 0 and "user_id" in bad.stderr

    # The local Prometheus scrapes both dataflow processes.
    prom = f"http://127.0.0.1:{u.prom_port}"
    assert prom in text
    def targets_up() -> bool:
        with urllib.request.urlopen(f"{prom}/api/v1/targets", timeout=5) as resp:
            targets = json.loads(resp.read())["data"]["activeTargets"]
        return len(targets) == 2 and all(t["health"] == "up" for t in targets)

    wait_until(targets_up, 20, "Prometheus scraping both processes", poll=0.5)

    kids = children_of(u.proc.pid)
    assert len(kids) == 5  # nats-server, 2 dataflow processes, prometheus, streamlit
    u.proc.send_signal(signal.SIGTERM)
    assert u.proc.wait(30) == 0
    wait_until(lambda: not [k for k in kids if Path(f"/proc/{k}").exists()], 10,
               "every child gone")
    # The dataflow processes stop together: none outlives its peers and panics.
    assert "panicked" not in u.output() and "PanicException" not in u.output()


def test_a_dead_child_brings_the_stack_down_without_restarts(up: Any) -> None:
    u = up("--no-ui", "--no-restart")
    u.wait_ready()
    kids = children_of(u.proc.pid)
    assert len(kids) == 3
    os.kill(kids[1], signal.SIGKILL)  # dataflow process 0
    assert u.proc.wait(30) == 1
    assert "exited with code" in u.output()
    wait_until(lambda: not [k for k in kids if Path(f"/proc/{k}").exists()], 10,
               "every child gone")


def test_ask_fails_plainly_when_nothing_runs() -> None:
    env = {**os.environ, "NATS_URL": f"nats://127.0.0.1:{free_port()}"}
    res = subprocess.run([*CHATWAX, "ask", "--user", "alice", "hi"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert res.returncode != 0
    assert "cannot reach NATS" in res.stderr


def test_up_refuses_a_busy_port_and_overlapping_ports_before_starting_anything(
        tmp_path: Path) -> None:
    """Each listener's port is checked first: a port another program holds, and one port
    given to two of the stack's listeners (process i listens on base + i), are refused
    with exit code 1 and their names, and no child starts (no data directory)."""
    nats, cluster = free_port(), free_port_run(2)

    def up_with(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CHATWAX, "up", "--no-ui", "--llm", "http://127.0.0.1:9/v1",
             "--data-dir", str(tmp_path / "data"), "--nats-port", str(nats),
             "--nats-monitor-port", str(free_port()), "--cluster-port", str(cluster),
             "--metrics-port", str(free_port_run(2)), *flags],
            capture_output=True, text=True, timeout=60)

    with socket.create_server(("127.0.0.1", nats)):
        busy = up_with("--health-port", str(free_port_run(2)))
    assert busy.returncode == 1, busy.stderr
    assert f"ports already in use: NATS ({nats})" in busy.stderr
    overlap = up_with("--health-port", str(cluster + 1))
    assert overlap.returncode == 1, overlap.stderr
    assert (f"one port for two listeners: {cluster + 1} (bytewax process 1 and health 0)"
            in overlap.stderr)
    assert not (tmp_path / "data").exists()


def test_children_do_not_outlive_a_killed_up(up: Any) -> None:
    u = up("--no-ui")
    u.wait_ready()
    kids = children_of(u.proc.pid)
    assert len(kids) == 3
    u.proc.kill()
    u.proc.wait()
    wait_until(lambda: not [k for k in kids if Path(f"/proc/{k}").exists()], 15,
               "children outlived chatwax up")


def test_up_with_nats_auth_admits_only_clients_with_credentials(up: Any, tmp_path: Path) -> None:
    u = up("--no-ui", "--nats-auth")
    u.wait_ready()
    assert "NATS auth" in u.output()
    passwords = json.loads((tmp_path / "data" / "nats-auth.json").read_text())
    assert oct((tmp_path / "data" / "nats-auth.json").stat().st_mode & 0o777) == "0o600"
    anonymous = subprocess.run([*CHATWAX, "ask", "--user", "anon", "hi"], env=u.env,
                               capture_output=True, text=True, timeout=60)
    assert anonymous.returncode != 0 and "cannot reach NATS" in anonymous.stderr
    # The CLI's identity is `operator`; it may ask and read usage for any user id.
    assert set(passwords) == {"dataflow", "frontend", "operator"}
    assert "NATS_USER=operator" in u.output()
    creds = {**u.env, "NATS_USER": "operator", "NATS_PASSWORD": passwords["operator"]}
    ok = subprocess.run([*CHATWAX, "ask", "--user", "authed", "hi"], env=creds,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.strip() == "echo: hi", ok.stderr
    usage = subprocess.run([*CHATWAX, "usage", "--since", "all"], env=creds,
                           capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0 and "authed" in usage.stdout, usage.stderr


def test_sigint_stops_the_stack_even_when_it_came_in_ignored(up: Any) -> None:
    """A shell starts background jobs with SIGINT ignored; `kill -INT` must still stop
    `chatwax up` and every child."""
    u = up("--no-ui", sigint_ignored=True)
    u.wait_ready()
    kids = children_of(u.proc.pid)
    assert len(kids) == 3  # nats-server and 2 dataflow processes
    u.proc.send_signal(signal.SIGINT)
    assert u.proc.wait(30) == 0
    assert "chatwax: stopping" in u.output()
    wait_until(lambda: not [k for k in kids if Path(f"/proc/{k}").exists()], 10,
               "every child gone")
