"""A dataflow pod and the Kubernetes API, through the console script a pod runs
(`chatwax dataflow`): an API that does not answer delays the start by at most
CHATWAX_K8S_API_WAIT and then the process forms its cluster from the rendered peer list and
answers; an API that refuses, or a pod without credentials, stops it with exit code 2 and a
one-line reason, never a traceback. The API is tests/support/apiserver.py's stand-in (no
real one runs on these machines) or a port where nothing answers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatwax.core.console import Exit
from chatwax.core.settings import Settings
from chatwax.dev.probes import wait_http
from tests.support.apiserver import ApiServer
from tests.support.asks import ask_all, run, uid
from tests.support.procs import dataflow_env, free_port, nats_server, stop

CHATWAX = shutil.which("chatwax") or str(Path(sys.executable).parent / "chatwax")
NS, STS = "chat", "rel-chatwax-dataflow"


def kubeconfig(path: Path, server: str, token: str = "") -> Path:
    user = f"\n      token: {token}" if token else " {}"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
  - name: c
    cluster:
      server: {server}
users:
  - name: u
    user:{user}
contexts:
  - name: c
    context: {{cluster: c, user: u}}
current-context: c
""")
    return path


def pod_env(kube: Path, **extra: str) -> dict[str, str]:
    """A single-process pod's environment, as the chart renders it for Kubernetes mode."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("NATS_", "CHATWAX_", "BYTEWAX_", "KUBERNETES_"))}
    return {**base, "KUBECONFIG": str(kube), "CHATWAX_K8S_NAMESPACE": NS,
            "BYTEWAX_STATEFULSET_NAME": STS,
            "CHATWAX_K8S_API_TIMEOUT": "0.5", "CHATWAX_K8S_API_WAIT": "2", **extra}


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An address that accepts connections and never answers (a hung API server)."""
    sock = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    for conn in held:
        conn.close()


@pytest.mark.parametrize("api", ["closed", "hung"])
def test_an_unreachable_api_delays_the_start_then_the_rendered_peers_answer(
        api: str, black_hole: str, own_llm: Any, tmp_path: Path) -> None:
    server = black_hole if api == "hung" else f"http://127.0.0.1:{free_port()}"
    kube = kubeconfig(tmp_path / "kubeconfig", server)
    log_path = tmp_path / "dataflow.log"
    with nats_server(tmp_path / "nats") as nats, log_path.open("wb") as log:
        health = free_port()
        env = {**pod_env(kube), **dataflow_env(own_llm.base_url, "echo-1"),
               "NATS_URL": nats.url, "CHATWAX_HEALTH_PORT": str(health)}
        proc = subprocess.Popen([CHATWAX, "dataflow"], env=env, cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            # Ready (what a pod's readiness probe asks) means the streams exist and it answers.
            wait_http(f"http://127.0.0.1:{health}/readyz", timeout=60, proc=proc,
                      name="chatwax dataflow", ok_status=200)
            user = uid("k8s")
            events = run(ask_all(Settings(nats_url=nats.url), user, "c1", "hello"))
            assert events[-1].type == "final", events
            assert "echo: hello" in events[-1].text
        finally:
            stop(proc)
    text = log_path.read_text()
    assert f"cannot read StatefulSet {NS}/{STS}" in text
    assert "forming the cluster from the rendered peer list (1 processes)" in text
    assert "Traceback" not in text


def _start_fails(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHATWAX, "dataflow"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)


def test_a_refusing_api_or_a_pod_without_credentials_is_a_configuration_error(
        tmp_path: Path) -> None:
    server = ApiServer(rbac=True)  # and no Role grants this account anything
    try:
        token = server.token_for(NS, "nobody")
        res = _start_fails(pod_env(kubeconfig(tmp_path / "kc", server.url, token),
                                   NATS_URL=f"nats://127.0.0.1:{free_port()}"), tmp_path)
    finally:
        server.close()
    assert res.returncode == Exit.USAGE, res.stderr
    assert f"cannot read StatefulSet {NS}/{STS}: 403 Forbidden" in res.stderr
    assert "rbac.create" in res.stderr and "Traceback" not in res.stderr

    # In a pod (KUBERNETES_SERVICE_HOST set) whose ServiceAccount token is not mounted.
    env = pod_env(tmp_path / "no-kubeconfig", KUBERNETES_SERVICE_HOST="127.0.0.1",
                  KUBERNETES_SERVICE_PORT="1", NATS_URL=f"nats://127.0.0.1:{free_port()}")
    res = _start_fails(env, tmp_path)
    assert res.returncode == Exit.USAGE, res.stderr
    assert "no Kubernetes API credentials" in res.stderr
    assert "dataflow.replicaLookup.enabled=false" in res.stderr
    assert "Traceback" not in res.stderr

    # A kubeconfig the client cannot use (the token one level too shallow, so the user
    # entry the loader quotes holds it): the token is never part of the reason.
    broken = kubeconfig(tmp_path / "broken", "http://127.0.0.1:1", "sa-secret-0123456789")
    broken.write_text(broken.read_text().replace("      token:", "    token:"))
    res = _start_fails(pod_env(broken, NATS_URL=f"nats://127.0.0.1:{free_port()}"), tmp_path)
    assert res.returncode == Exit.USAGE, res.stderr
    assert "no usable kubeconfig" in res.stderr and str(broken) in res.stderr
    assert "sa-secret-0123456789" not in res.stderr + res.stdout
