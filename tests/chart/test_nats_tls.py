"""NATS's own traffic authenticated and encrypted: a clustered NATS's routes log in and use
mutual TLS, clients connect with TLS and check the server against the CA, a renewed
certificate is loaded without a restart. Proven with the rendered config and container
command in real nats-servers, with certificates the test makes for the names the rendered
cert-manager Certificate asks for."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats as nats_py
import pytest
import trustme
from cryptography import x509

from chatwax.client.connection import connect_options
from chatwax.core.errors import ConfigError
from chatwax.core.settings import Settings
from chatwax.dev.natsserver import nats_server_binary
from chatwax.kube.secrets import new_value
from tests.chart.conftest import Chart, Rendered, env_of
from tests.chart.natspod import NatsPod
from tests.support.procs import free_port, stop
from tests.support.waiting import eventually, wait_until

CERT_MANAGER = ("nats.tls.enabled=true", "nats.tls.certManager.enabled=true",
                "nats.tls.certManager.issuerRef.name=chat-ca")
KEYS = ("dataflow-password", "frontend-password", "operator-password", "route-password")


def _write_tls(folder: Path, ca: trustme.CA, leaf: trustme.LeafCert) -> Path:
    """The three files of a kubernetes.io/tls Secret with ca.crt, replaced atomically, as
    the kubelet updates a mounted Secret."""
    folder.mkdir(exist_ok=True)
    for name, pem in (("tls.crt", leaf.cert_chain_pems[0].bytes()),
                      ("tls.key", leaf.private_key_pem.bytes()),
                      ("ca.crt", ca.cert_pem.bytes())):
        tmp = folder / f".{name}.tmp"
        tmp.write_bytes(pem)
        os.replace(tmp, folder / name)
    return folder


def _serial(leaf: trustme.LeafCert) -> int:
    return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number


def _info(port: int) -> dict[str, Any]:
    """The INFO a NATS port sends before any TLS: what it requires of whoever connects."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        line = sock.makefile("rb").readline()
    assert line.startswith(b"INFO "), line
    info: dict[str, Any] = json.loads(line[5:])
    return info


def _route_hello(port: int, tls: Path, certificate: bool) -> bytes:
    """What a route port says after a TLS handshake (a route port speaks TLS first): its
    INFO line with a certificate the CA signed, nothing without one."""
    context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    if certificate:
        context.load_cert_chain(tls / "tls.crt", tls / "tls.key")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, \
            context.wrap_socket(sock, server_hostname="127.0.0.1") as conn:
        try:
            return conn.makefile("rb").readline()
        except (ssl.SSLError, ConnectionError):
            return b""


def _served_serial(port: int, ca: Path) -> int:
    """The serial of the certificate a client port presents (INFO in clear, then TLS)."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.recv(4096)  # INFO
        with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _route_names(pod: NatsPod) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{pod.monitor}/routez", timeout=5) as resp:
        return {r.get("remote_name", "") for r in json.load(resp)["routes"]}


def _dns_match(name: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return name == pattern


@pytest.fixture
def pods() -> Iterator[list[NatsPod]]:
    started: list[NatsPod] = []
    yield started
    for pod in started:
        pod.stop()


# -- rendering -------------------------------------------------------------------------------


def test_tls_needs_a_certificate_and_an_issuer(chart: Chart, helm_major: str) -> None:
    for sets, message in (
        (("nats.tls.enabled=true",), "nats.tls.secretName"),
        (("nats.tls.enabled=true", "nats.tls.certManager.enabled=true"),
         "nats.tls.certManager.issuerRef.name"),
        (("nats.tls.enabled=true", "nats.enabled=false", "nats.url=tls://nats.example:4222",
          "nats.auth.enabled=false", *CERT_MANAGER[1:]), "external NATS needs nats.tls.secretName"),
    ):
        res = chart.helm(helm_major, *chart.template_args(*sets))
        assert res.returncode != 0 and message in res.stderr, (sets, res.stderr)


def test_clients_connect_with_tls_and_check_the_server_against_the_ca(chart: Chart) -> None:
    """Every client pod (dataflow, frontend, helm test) gets a tls:// URL and the CA file,
    and only ca.crt of the Secret; the Certificate names the host clients dial and every
    route host; a given Secret replaces the Certificate."""
    docs = chart.render("nats.replicas=3", *CERT_MANAGER)
    cert = docs.find("Certificate", "-nats")["spec"]
    assert cert["secretName"] == "chatwax-nats-tls"
    assert {"server auth", "client auth"} <= set(cert["usages"])
    assert cert["issuerRef"] == {"name": "chat-ca", "kind": "Issuer", "group": "cert-manager.io"}
    envs = {d["metadata"]["name"]: d["data"] for d in docs.of_kind("ConfigMap")
            if "NATS_URL" in d["data"]}
    test_pod = docs.find("Pod", "-test-ask")["spec"]
    envs["test"] = env_of(test_pod["containers"][0])
    assert len(envs) == 3
    for name, env in envs.items():
        url = env["NATS_URL"]
        assert url.startswith("tls://"), (name, url)
        host = url.removeprefix("tls://").rsplit(":", 1)[0]
        assert any(_dns_match(host, p) for p in cert["dnsNames"]), (host, cert["dnsNames"])
        assert env["NATS_CA"] == "/run/secrets/nats-ca/ca.crt", name
    route_hosts = docs.container("StatefulSet", "-nats")["command"][2].split("ROUTES=")[1]
    hosts = [h.split("@")[1].rsplit(":", 1)[0] for h in route_hosts.split("]")[0].split(", ")]
    assert len(hosts) == 3
    assert all(any(_dns_match(h, p) for p in cert["dnsNames"]) for h in hosts), hosts
    for workload in (docs.find("StatefulSet", "-dataflow"), docs.find("Deployment", "-frontend"),
                     docs.find("Pod", "-test-ask")):
        spec = workload["spec"].get("template", {}).get("spec", workload["spec"])
        [volume] = [v for v in spec["volumes"] if v["name"] == "nats-ca"]
        assert volume["secret"]["secretName"] == "chatwax-nats-tls"
        assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
        [mount] = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "nats-ca"]
        assert mount["mountPath"] == "/run/secrets/nats-ca" and mount["readOnly"]
    own = chart.render("nats.tls.enabled=true", "nats.tls.secretName=my-nats-tls",
                       *CERT_MANAGER[1:])
    assert not own.of_kind("Certificate")
    nats = own.find("StatefulSet", "-nats")["spec"]["template"]["spec"]
    assert {v["name"]: v for v in nats["volumes"]}["tls"]["secret"]["secretName"] == \
        "my-nats-tls"
    plain = chart.render()
    assert plain.find("ConfigMap", "-dataflow-env")["data"]["NATS_URL"].startswith("nats://")
    assert "NATS_CA" not in plain.find("ConfigMap", "-dataflow-env")["data"]


def test_route_password_is_a_file_and_no_configmap_holds_one(chart: Chart) -> None:
    """The hook makes route-password (with the clients' passwords); only the NATS pods mount
    it; the ConfigMap names only the variable."""
    docs = chart.render("nats.replicas=3", "nats.auth.enabled=false")
    job = docs.find("Job", "-nats-auth-init")["spec"]["template"]["spec"]["containers"][0]
    assert "--key=route-password" in job["command"]
    conf = docs.find("ConfigMap", "-nats-config")["data"]["nats.conf"]
    assert "password: $ROUTE_PASSWORD" in conf and "routes: $ROUTES" in conf
    assert "nats://route:" not in conf
    [volume] = [v for v in docs.find("StatefulSet", "-nats")["spec"]["template"]["spec"][
        "volumes"] if v["name"] == "passwords"]
    assert volume["secret"]["items"] == [{"key": "route-password", "path": "route-password"}]
    single = chart.render("nats.auth.enabled=false")
    assert not single.of_kind("Job") or all(
        "nats-auth" not in j["metadata"]["name"] for j in single.of_kind("Job"))
    assert "cluster {" not in single.find("ConfigMap", "-nats-config")["data"]["nats.conf"]


# -- real servers ----------------------------------------------------------------------------


def test_a_clustered_nats_authenticates_and_encrypts_its_routes(
        chart: Chart, tmp_path: Path, pods: list[NatsPod]) -> None:
    docs = chart.render("nats.replicas=3", *CERT_MANAGER, "nats.tls.reloadSeconds=1")
    names = docs.find("Certificate", "-nats")["spec"]["dnsNames"]
    ca = trustme.CA()
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.cert_pem.bytes())
    passwords = {k: new_value() for k in KEYS}
    routes = {i: free_port() for i in range(3)}
    for i in range(3):
        tls = _write_tls(tmp_path / f"tls-{i}", ca, ca.issue_cert(*names, "127.0.0.1"))
        pods.append(NatsPod(docs, tmp_path, i, routes, passwords, tls))
    for pod in pods:
        pod.launch()
    for pod in pods:
        pod.wait_ready()
    everyone = {p.name for p in pods}
    for pod in pods:
        wait_until(lambda pod=pod: _route_names(pod) == everyone - {pod.name}, 30,
                   f"{pod.name} routed to the two others")
    # Both ports demand TLS before anything else; routes also a certificate (mutual TLS).
    assert _info(pods[0].client)["tls_required"] is True
    assert _route_hello(routes[0], tmp_path / "tls-0", certificate=False) == b""
    route_info = json.loads(_route_hello(routes[0], tmp_path / "tls-0", certificate=True)[5:])
    assert route_info["tls_verify"] is True and route_info["auth_required"] is True

    # Intruders: the right certificate with a wrong password, the right password in clear.
    rogue_dir = tmp_path / "rogue"
    rogue_dir.mkdir()
    tls = tmp_path / "tls-0"
    rogues = []
    for name, auth, tls_block in (
        ("wrong-password", "route:not-the-password",
         f"tls {{ cert_file: {tls}/tls.crt, key_file: {tls}/tls.key, ca_file: {tls}/ca.crt }}"),
        ("no-certificate", f"route:{passwords['route-password']}", ""),
    ):
        conf = rogue_dir / f"{name}.conf"
        conf.write_text(
            f"server_name: {name}\nlisten: 127.0.0.1:{free_port()}\n"
            f"cluster {{\n name: chatwax-nats\n listen: 127.0.0.1:{free_port()}\n"
            f" routes: [nats://{auth}@127.0.0.1:{routes[0]}]\n {tls_block}\n}}\n")
        log = (rogue_dir / f"{name}.log").open("wb")
        rogues.append(subprocess.Popen([nats_server_binary(), "-c", str(conf)], stdout=log,
                                       stderr=subprocess.STDOUT))
    try:
        wait_until(lambda: "authentication error" in pods[0].log.read_text(), 20,
                   "the route with a wrong password refused")
        wait_until(lambda: "first record does not look like a TLS handshake"
                   in pods[0].log.read_text(), 20, "the route without TLS refused")
        assert _route_names(pods[0]) == everyone - {pods[0].name}
    finally:
        for proc in rogues:
            stop(proc)

    # A chatwax client: TLS from NATS_CA; a message crosses the routes.
    settings = Settings(nats_url=f"tls://127.0.0.1:{pods[0].client}", nats_user="dataflow",
                        nats_password=passwords["dataflow-password"], nats_ca=str(ca_file))
    other = settings.model_copy(update={"nats_url": f"tls://127.0.0.1:{pods[2].client}"})
    assert asyncio.run(_across(settings, other)) == b"through the routes"
    # Without the CA the server is not trusted; a CA file that is not there stops the start.
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(_connect_once(settings.model_copy(update={"nats_ca": None})))
    with pytest.raises(ConfigError, match=r"NATS TLS: cannot load /nowhere/ca\.crt"):
        connect_options(settings.model_copy(update={"nats_ca": "/nowhere/ca.crt"}), "test")

    # Renewal: new files in the mounted folder are served without a restart.
    renewed = ca.issue_cert(*names, "127.0.0.1")
    before = _served_serial(pods[0].client, ca_file)
    assert before != _serial(renewed)
    _write_tls(tmp_path / "tls-0", ca, renewed)
    wait_until(lambda: _served_serial(pods[0].client, ca_file) == _serial(renewed), 20,
               "the renewed certificate served")
    assert pods[0].proc is not None and pods[0].proc.poll() is None
    wait_until(lambda: _route_names(pods[0]) == everyone - {pods[0].name}, 30,
               "the routes still up after the reload")


async def _across(publisher: Settings, subscriber: Settings) -> bytes:
    sub_nc = await nats_py.connect(**connect_options(subscriber, "sub"))
    pub_nc = await nats_py.connect(**connect_options(publisher, "pub"))
    try:
        sub = await sub_nc.subscribe("chatwax.test.routes")
        await sub_nc.flush()

        async def interest() -> bool:  # the subscription reached the publisher's server
            await pub_nc.publish("chatwax.test.routes", b"through the routes")
            try:
                msg = await sub.next_msg(timeout=0.5)
            except nats_py.errors.TimeoutError:
                return False
            return bool(msg.data)

        await eventually(interest, 20, "a message across the routes")
        return b"through the routes"
    finally:
        await pub_nc.close()
        await sub_nc.close()


async def _connect_once(settings: Settings) -> None:
    opts = {**connect_options(settings, "once"), "allow_reconnect": False,
            "max_reconnect_attempts": 0}
    nc = await nats_py.connect(**opts)
    await nc.close()


def test_a_route_password_nats_cannot_read_stops_the_pod_with_its_reason(
        chart: Chart, tmp_path: Path) -> None:
    docs: Rendered = chart.render("nats.replicas=3", "nats.auth.existingSecret=my-nats")
    pod = NatsPod(docs, tmp_path, 0, {i: free_port() for i in range(3)},
                  {**{k: new_value() for k in KEYS}, "route-password": "9lives/and@more"})
    pod.launch()
    assert pod.proc is not None
    code = pod.proc.wait(timeout=30)
    assert code == 1
    log = pod.log.read_text()
    assert "route-password of Secret my-nats must start with a letter" in log
    assert "9lives" not in log


def test_a_client_certificate_for_a_nats_that_verifies_clients(tmp_path: Path) -> None:
    """An external NATS that wants client certificates (verify: true): NATS_CERT and
    NATS_KEY are presented; without them the server refuses the connection."""
    ca = trustme.CA()
    server = _write_tls(tmp_path / "server", ca, ca.issue_cert("127.0.0.1"))
    client = _write_tls(tmp_path / "client", ca, ca.issue_cert("chatwax-cli"))
    port, monitor = free_port(), free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(f"listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\n"
                    f"tls {{ cert_file: {server}/tls.crt, key_file: {server}/tls.key, "
                    f"ca_file: {server}/ca.crt, verify: true }}\n")
    proc = subprocess.Popen([nats_server_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _listening(port), 20, "the server listening")
        with_cert = Settings(nats_url=f"tls://127.0.0.1:{port}", nats_ca=f"{client}/ca.crt",
                             nats_cert=f"{client}/tls.crt", nats_key=f"{client}/tls.key")
        asyncio.run(_connect_once(with_cert))
        without = with_cert.model_copy(update={"nats_cert": None, "nats_key": None})
        with pytest.raises((ssl.SSLError, ConnectionError, nats_py.errors.Error)):
            asyncio.run(_connect_once(without))
    finally:
        stop(proc)
    with pytest.raises(ConfigError, match="NATS_CERT and NATS_KEY go together"):
        Settings(nats_cert=f"{client}/tls.crt")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
