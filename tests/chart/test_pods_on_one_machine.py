"""Pods on one machine: the chart's wiring proven by running what it renders.

The rendered NATS config runs in a real nats-server; each rendered dataflow pod's container
command runs with that pod's rendered environment (ordinals 0 and 1), each on its own
loopback address, as two pods have two IPs. Only what a cluster provides is replaced:
DNS names by loopback addresses, volumes by temporary folders. The processes must form
one Bytewax cluster and answer a prompt, and the NATS permissions must hold. The rendered
frontend pod's command, run the same way, must answer its probes on its declared port, and
the helm test pod's command must get an answer.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats as nats_py
import pytest
import trustme

from chatwax.cli import build_parser
from chatwax.client.chat import ChatClient
from chatwax.client.connection import connect_options
from chatwax.core.settings import Settings
from chatwax.core.wire import FinalEvent
from chatwax.kube.secrets import new_value
from tests.chart.conftest import NAMESPACE, Chart, Rendered, secret_files_of
from tests.chart.natspod import NatsPod
from tests.support.procs import free_port, stop, wait_http
from tests.support.waiting import eventually

BASE_PATH_VALUES = Path(__file__).parent / "data" / "base-path-values.yaml"


def _pod_env(docs: Rendered, workload: dict[str, Any], ordinal: int = 0) -> dict[str, str]:
    """The environment Kubernetes would give this pod (of a workload, or a bare Pod),
    resolved from the render."""
    spec = workload["spec"]
    container = (spec["template"]["spec"] if "template" in spec else spec)["containers"][0]
    pod_name = (f"{workload['metadata']['name']}-{ordinal}" if "template" in spec
                else workload["metadata"]["name"])
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        env.update(docs.find("ConfigMap", src["configMapRef"]["name"])["data"])
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
            continue
        ref = e["valueFrom"]
        if "fieldRef" in ref:
            field = ref["fieldRef"]["fieldPath"]
            env[e["name"]] = {"metadata.name": pod_name, "metadata.namespace": NAMESPACE,
                              # the StatefulSet controller's label: any revision name
                              "metadata.labels['controller-revision-hash']":
                                  f"{workload['metadata']['name']}-local"}[field]
        elif "secretKeyRef" in ref:
            env[e["name"]] = _secret_value(docs, ref["secretKeyRef"]["name"],
                                           ref["secretKeyRef"]["key"])
    secrets = _pod_secrets(docs, workload)
    if secrets:  # the projected volume at CHATWAX_SECRETS_DIR becomes a private folder
        folder = Path(tempfile.mkdtemp(prefix="pod-secrets-"))
        for name, value in secrets.items():
            (folder / name).write_text(value)
        env["CHATWAX_SECRETS_DIR"] = str(folder)
    return env


def _pod_secrets(docs: Rendered, workload: dict[str, Any]) -> dict[str, str]:
    """The files of the pod's secrets volume (variable -> value), resolved from the render."""
    return {path: _secret_value(docs, ref["name"], ref["key"])
            for path, ref in secret_files_of(workload).items()}


def _secret_value(docs: Rendered, name: str, key: str) -> str:
    if name in _hook_secrets(docs):  # made in the cluster by the chart's hook Job
        return _GENERATED.setdefault((id(docs), name, key), new_value())
    secret = docs.find("Secret", name)
    return base64.b64decode(secret["data"][key]).decode()


_GENERATED: dict[tuple[int, str, str], str] = {}
"""Values of Secrets a hook makes, one per render, as `chatwax kube ensure-secret` would
(tests/cluster/ runs that hook itself against the API server stand-in)."""


def _pod_passwords(docs: Rendered, workload: dict[str, Any]) -> dict[str, str]:
    """key -> value of the Secret behind the pod's `passwords` volume."""
    pod = workload["spec"]["template"]["spec"]
    volume = next((v for v in pod["volumes"] if v["name"] == "passwords"), None)
    if volume is None:
        return {}
    return {item["key"]: _secret_value(docs, volume["secret"]["secretName"], item["key"])
            for item in volume["secret"]["items"]}


def _hook_secrets(docs: Rendered) -> set[str]:
    names = set()
    for job in docs.of_kind("Job"):
        for c in job["spec"]["template"]["spec"]["containers"]:
            if c["command"][1:3] == ["kube", "ensure-secret"]:
                names.add(build_parser().parse_args(c["command"][1:]).name)
    return names


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_rendered_pods_form_one_cluster_and_answer(chart: Chart, workdir: Path,
                                                    own_llm: Any) -> None:
    """With NATS over TLS (nats.tls from a Secret): each client pod reaches the server by
    the rendered tls:// URL's scheme and checks it against the mounted ca.crt."""
    docs = chart.render("dataflow.processes=2", "nats.auth.enabled=true",
                  f"llm.baseUrl={own_llm.base_url}", "llm.model=echo-1",
                  "llm.apiKey=sk-rendered-key", "dataflow.recovery.snapshotIntervalSeconds=1",
                  "nats.tls.enabled=true", "nats.tls.secretName=chat-nats-tls")
    nats_sts = docs.find("StatefulSet", "-nats")
    # The Secret nats.tls names, made as cert-manager or an operator would; the clients'
    # mounted ca.crt becomes a local file.
    ca = trustme.CA()
    tls = workdir / "nats-tls"
    tls.mkdir()
    leaf = ca.issue_cert("localhost")
    (tls / "tls.crt").write_bytes(leaf.cert_chain_pems[0].bytes())
    (tls / "tls.key").write_bytes(leaf.private_key_pem.bytes())
    (tls / "ca.crt").write_bytes(ca.cert_pem.bytes())
    nats = NatsPod(docs, workdir, 0, {}, _pod_passwords(docs, nats_sts), tls)
    nats.start(_pod_env(docs, nats_sts, 0))
    port = nats.client

    def local(env: dict[str, str]) -> dict[str, str]:
        """What only a cluster provides: the Service's DNS name and the CA volume."""
        url = env["NATS_URL"]
        assert url.startswith("tls://"), url
        return {**env, "NATS_URL": f"tls://localhost:{port}",
                "NATS_CA": env["NATS_CA"].replace("/run/secrets/nats-ca", str(tls))}

    dataflow: list[subprocess.Popen[bytes]] = []
    try:
        sts = docs.find("StatefulSet", "-dataflow")
        container = sts["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["chatwax", "dataflow"]
        name = sts["metadata"]["name"]
        api_ports = [free_port(), free_port()]
        for ordinal in range(2):
            env = _pod_env(docs, sts, ordinal)
            assert env["BYTEWAX_POD_NAME"] == f"{name}-{ordinal}"
            # What only a cluster provides: DNS for the peers and NATS, volumes, own IPs.
            env["BYTEWAX_ADDRESSES"] = re.sub(
                rf"{name}-(\d+)\.[^:;]+", lambda m: f"127.0.0.{2 + int(m.group(1))}",
                env["BYTEWAX_ADDRESSES"])
            env = local(env)
            env["BYTEWAX_RECOVERY_DIRECTORY"] = str(workdir / "recovery")
            env["BYTEWAX_DATAFLOW_API_PORT"] = str(api_ports[ordinal])
            env["CHATWAX_HEALTH_HOST"] = f"127.0.0.{2 + ordinal}"  # the pod's own address
            # No API server here: tests/cluster/ runs the Kubernetes mode.
            env.pop("CHATWAX_K8S_NAMESPACE")
            # The image's PATH has the venv's console scripts; here they sit beside python.
            binary = str(Path(sys.executable).parent / container["command"][0])
            log = (workdir / f"pod-{ordinal}.log").open("wb")
            dataflow.append(subprocess.Popen(
                [binary, *container["command"][1:]], cwd=workdir,
                env={"PATH": os.environ["PATH"], **env}, stdout=log, stderr=subprocess.STDOUT))
        for ordinal, proc in enumerate(dataflow):  # the rendered readiness probe passes
            probe = container["readinessProbe"]["httpGet"]
            probe_port = next(p["containerPort"] for p in container["ports"]
                              if p["name"] == probe["port"])
            try:
                wait_http(f"http://127.0.0.{2 + ordinal}:{probe_port}{probe['path']}", 60, proc,
                          ok_status=200)
            except RuntimeError as exc:
                logs = "".join((workdir / f"pod-{i}.log").read_text() for i in range(2))
                raise AssertionError(f"{exc}\n{logs[-3000:]}") from None

        frontend = docs.find("Deployment", "-frontend")
        answer, denied = asyncio.run(_ask_as_frontend(
            local({**_pod_env(docs, frontend, 0), **_pod_secrets(docs, frontend)})))
        assert isinstance(answer, FinalEvent) and answer.text == "echo: hello from the chart"
        assert denied, "the frontend user could publish into the transcripts stream"
        # `helm test`: the rendered test pod's command, with its environment.
        test_pod = docs.find("Pod", "-test-ask")
        env = local(_pod_env(docs, test_pod))
        command = test_pod["spec"]["containers"][0]["command"]
        res = subprocess.run([str(Path(sys.executable).parent / command[0]), *command[1:]],
                             env={"PATH": os.environ["PATH"], **env}, capture_output=True,
                             text=True, timeout=90)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "echo: ping" in res.stdout
        logs = "".join((workdir / f"pod-{i}.log").read_text() for i in range(2))
        assert "dataflow process 0 of 2" in logs and "dataflow process 1 of 2" in logs
        assert "sk-rendered-key" not in logs
    finally:
        for proc in dataflow:
            stop(proc)
        nats.stop()


async def _ask_as_frontend(env: dict[str, str]) -> tuple[Any, bool]:
    settings = Settings(nats_url=env["NATS_URL"], nats_user=env["NATS_USER"],
                        nats_password=env["NATS_PASSWORD"], nats_ca=env["NATS_CA"])
    client = await ChatClient.connect(settings)
    try:
        reply = await client.ask("chart-user", "chart-conv", "hello from the chart", timeout=60)
        events = [e async for e in reply.events()]
    finally:
        await client.close()
    # The frontend may not write where only the dataflow writes.
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    nc = await nats_py.connect(**{**connect_options(settings, "test"), "error_cb": on_error})
    await nc.publish("chatwax.transcripts.chart-user.chart-conv", b"{}")
    await nc.flush()

    async def refused() -> bool:
        return any("permissions violation" in str(e).lower() for e in errors)

    try:
        denied = await eventually(refused, 5, "the server refusing the publish")
    finally:
        await nc.close()
    return events[-1], denied


@pytest.mark.parametrize("values", ["default-values.yaml", "kind-values.yaml",
                                    "production-values.yaml"])
def test_rendered_nats_config_is_valid_for_nats_server(chart: Chart, values: str,
                                                       workdir: Path) -> None:
    """Through the rendered command (passwords from files, routes when clustered)."""
    docs = chart.render(values=(chart.path / "ci" / values,))
    sts = docs.find("StatefulSet", "-nats")
    res = NatsPod(docs, workdir, 0, {i: free_port() for i in range(sts["spec"]["replicas"])},
                  _pod_passwords(docs, sts)).check()
    assert res.returncode == 0, res.stdout + res.stderr
    assert "is valid" in res.stdout + res.stderr


@pytest.mark.parametrize("values", [(), (BASE_PATH_VALUES,)], ids=["root", "under-chat"])
def test_rendered_frontend_pod_answers_its_probes(chart: Chart, workdir: Path,
                                                  values: tuple[Path, ...]) -> None:
    """At the root, and behind an ingress path /chat (server.baseUrlPath=chat): the probes'
    paths are ones the rendered command serves."""
    port = free_port()
    docs = chart.render(f"frontend.port={port}", values=values)
    deployment = docs.find("Deployment", "-frontend")
    container = docs.container("Deployment", "-frontend")
    env = _pod_env(docs, deployment, 0)
    env["HOME"] = str(workdir)  # the pod's emptyDir at /tmp
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    binary = str(Path(sys.executable).parent / container["command"][0])
    log = (workdir / "frontend.log").open("wb")
    # The image's WORKDIR holds frontend/, as the repository's root does.
    proc = subprocess.Popen([binary, *container["command"][1:]], cwd=chart.root,
                            env={"PATH": os.environ["PATH"], **env}, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            url = f"http://127.0.0.1:{ports[get['port']]}{get['path']}"
            wait_http(url, 60, proc, name="the frontend")
            with urllib.request.urlopen(url, timeout=5) as resp:
                assert (resp.status, resp.read()) == (200, b"ok"), probe
        assert ports["http"] == port
        if values:  # the page itself is served under the ingress path too
            assert container["startupProbe"]["httpGet"]["path"] == "/chat/_stcore/health"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/chat/", timeout=5) as resp:
                assert resp.status == 200 and b"<html" in resp.read().lower()
    finally:
        stop(proc)
        log.close()


def test_rendered_frontend_pod_signs_in_with_the_provider(chart: Chart, workdir: Path) -> None:
    """frontend.auth on: the rendered command (`chatwax ui`) with the pod's environment
    (the client secret from the chart's Secret, the cookie secret as the hook makes it)
    writes Streamlit's secrets.toml 0600 into the pod's memory volume, keeps the secrets out
    of Streamlit's environment, and a browser signs in at a real provider."""
    from tests.support.oidc import oidc_provider
    from tests.support.signin import chromium, lines, sign_in

    port = free_port()
    with oidc_provider() as idp:
        redirect = f"http://localhost:{port}/oauth2callback"
        idp.register(redirect)
        docs = chart.render(
            f"frontend.port={port}",
            f"frontend.auth.metadataUrl={idp.metadata_url}",
            f"frontend.auth.clientId={idp.client.client_id}",
            f"frontend.auth.clientSecret={idp.client.client_secret}",
            f"frontend.auth.redirectUri={redirect}")
        deployment = docs.find("Deployment", "-frontend")
        container = docs.container("Deployment", "-frontend")
        env = {**_pod_env(docs, deployment, 0), "HOME": str(workdir),
               "NATS_URL": "nats://127.0.0.1:1"}
        secrets = _pod_secrets(docs, deployment)  # files, not env: chatwax ui reads them
        assert "CHATWAX_OIDC_CLIENT_SECRET" not in env
        assert secrets["CHATWAX_OIDC_CLIENT_SECRET"] == idp.client.client_secret
        memory = workdir / "run-chatwax-ui"  # the pod's memory-backed emptyDir
        command = [a.replace("/run/chatwax-ui", str(memory)) for a in container["command"]]
        assert command != container["command"]
        binary = str(Path(sys.executable).parent / command[0])
        log = (workdir / "frontend.log").open("wb")
        proc = subprocess.Popen([binary, *command[1:]], cwd=workdir,
                                env={"PATH": os.environ["PATH"], **env}, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            probe = container["readinessProbe"]["httpGet"]["path"]
            wait_http(f"http://127.0.0.1:{port}{probe}", 60, proc, name="the frontend")
            secrets_file = memory / "secrets.toml"
            assert oct(secrets_file.stat().st_mode & 0o777) == "0o600"
            assert idp.client.client_secret in secrets_file.read_text()
            environ = Path(f"/proc/{proc.pid}/environ").read_bytes()  # exec'd Streamlit
            assert b"streamlit" in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            assert idp.client.client_secret.encode() not in environ
            assert secrets["CHATWAX_OIDC_COOKIE_SECRET"].encode() not in environ
            with chromium() as browser:
                page = browser.new_page()
                sign_in(page, f"http://localhost:{port}", "alice")
                assert "Signed in as Alice Example (alice@example.com)" in lines(page)
        finally:
            stop(proc)
            log.close()
