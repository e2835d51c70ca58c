"""Argo CD and Flux deliver the chart to the cluster model (issue #21, item 2).

Both are modelled in tests/cluster/gitops.py, which cites the upstream source of each
behaviour; what they delegate to helm and kubectl runs as the real binaries against the API
server stand-in (helm v3.17 `template` and kubectl v1.32 `apply` for Argo CD; helm v4.1
`upgrade --install` with helm-controller's defaults for Flux). The model's controllers,
DNS and kubelet run what they apply, and 4 users chat through every scenario.

Argo CD (one Application, automated sync with prune and selfHeal):
- first sync: the Helm pre-install/pre-upgrade hooks (the NATS password Job and its
  ServiceAccount, Role, RoleBinding) run as PreSync in waves -10 and -5 from their
  hook-weight, the Job is deleted once the operation succeeded (hook-succeeded), the
  `helm test` Pod is never applied (no Argo phase), no Helm release exists; the release
  answers, and the app is Synced and Healthy.
- a template change (the dataflow image tag): the pods replace themselves and the Bytewax
  cluster re-forms exactly once (the chart has no rollout hook any more, so no PostSync
  waits on anything; src/chatwax/kube/revision.py).
- self-heal: `kubectl scale` to 3 makes the StatefulSet OutOfSync; the next reconcile's
  `kubectl apply` (three-way patch from last-applied) sets the rendered 2 back.
- a value that leaves the dataflow unready (an unparsable CHATWAX_POLL_MS through
  dataflow.extraEnv): the sync still Succeeds (its last wave has no hook, so Argo does not
  wait for health) and the app is Progressing; the fix, committed next, is synced and
  rolled out by the pods themselves: no PostSync to deadlock on.

Flux (a HelmRelease with helm-controller's defaults): the install and an upgrade of the
dataflow image tag, each one reconcile: the real helm 4 with `--wait=watcher
--wait-for-jobs --timeout 5m0s --take-ownership --reset-values --history-max 5`.

Timings are measurements (artifacts/cluster/gitops.md); the asserts are the outcomes, the
replica counts, 0 lost and the restart counts.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import CHART, Chart
from tests.cluster.controllers import settle
from tests.cluster.gitops import (
    TRACKING,
    WRITES,
    ArgoCD,
    Cli,
    MissingControllers,
    SyncResult,
    delete_policies,
    describe,
    flux_reconcile,
    hook_phases,
    wave,
)
from tests.cluster.model import ClusterModel, Row, Running, running_cluster, write_table
from tests.cluster.tools import kubectl
from tests.support.apiserver import Obj

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "cluster"
APP = "chatwax"  # the Application's name, which Argo passes as the release name
DATAFLOW = "-dataflow"
STS = f"{APP}{DATAFLOW}"


ROWS: list[Row] = []


class Scene:
    """One model cluster, its namespace, the real tools and the users."""

    def __init__(self, tool: str, running: Running, namespace: str, cli: Cli) -> None:
        self.tool = tool
        self.running = running
        self.model: ClusterModel = running.model
        self.namespace = namespace
        self.cli = cli
        self.values = running.chart_values(CHART)

    def replicas(self) -> int:
        return self.running.dataflow_replicas()

    def pods(self) -> list[str]:
        return self.running.dataflow_pods()

    def update_revision(self) -> str:
        return self.running.update_revision(DATAFLOW)

    def pod_revisions(self) -> set[str]:
        return self.running.pod_revisions(DATAFLOW)

    def scenario(self, name: str, act: Callable[[], str], settle_s: float = 120) -> Row:
        """Users chat around `act` (Running.measure); the row goes to the table."""
        row = self.running.measure(self.tool, name, act, STS, settle_s=settle_s, after_s=90)
        ROWS.append(row)
        print(f"{name}: {asdict(row)}")
        return row


def cli_for(running: Running, work: Path, helm: str, kubectl_path: str, ns: str) -> Cli:
    home = work / "home"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "KUBECONFIG": str(running.model.apiserver.kubeconfig(work / "kubeconfig", ns)),
           "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}
    return Cli(helm, kubectl_path, env, work)


def scene(chart: Chart, work: Path, tool: str, ns: str, helm_major: str,
          kubectl_minor: str) -> Iterator[Scene]:
    """A model cluster with the status writers of the controllers it does not run, and
    the namespace created with the real kubectl (Argo's CreateNamespace, or the user)."""
    with running_cluster(work, ns, ARTIFACTS / f"gitops-{tool}-logs",
                         require_namespaces=True) as running:
        missing = MissingControllers(running.model.store, ns)
        missing.start()
        cli = cli_for(running, work, chart.tools[f"helm{helm_major}"],
                      str(kubectl(kubectl_minor)), ns)
        try:
            res = cli.kubectl("create", "namespace", ns)
            assert res.returncode == 0, res.stderr
            yield Scene(tool, running, ns, cli)
        finally:
            missing.close()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / f"gitops-{tool}-commands.txt").write_text("\n".join(
                f"{rc} {s:5.1f}s {cmd}" for cmd, rc, s in cli.commands) + "\n")
            assert not running.model.apiserver.errors, running.model.apiserver.errors


@dataclass
class Argo:
    scene: Scene
    app: ArgoCD


@pytest.fixture(scope="class")
def argo(chart: Chart, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Argo]:
    work = tmp_path_factory.mktemp("gitops-argo")
    for s in scene(chart, work, "argocd", "chat", "3", "32"):
        extra = work / "extra-values.yaml"
        extra.write_text(yaml.safe_dump(EXTRA))
        yield Argo(s, ArgoCD(s.cli, s.model.store, APP, s.namespace, CHART,
                             [*s.values, "-f", str(extra)], wait_s=120))


@pytest.fixture(scope="class")
def flux(chart: Chart, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    work = tmp_path_factory.mktemp("gitops-flux")
    yield from scene(chart, work, "flux", "chat", "4", "33")


def first_sync_row(s: Scene, act: Callable[[], str], name: str) -> Row:
    """The first delivery: nobody chats before it; the row counts from the act to the
    dataflow settled, then the users' first prompts."""
    began = time.time()
    outcome = act()
    s.model.wait_settled("-nats", 120)
    s.model.wait_settled(DATAFLOW, 120)
    seconds = time.time() - began
    traffic = s.running.users().start()
    settle(lambda: traffic.window.answered >= 10, 90, "first answers")
    window = traffic.stop()
    # restarts: formations beyond the first
    formed = max(s.model.formations(p) for p in s.pods()) - 1
    row = Row(s.tool, name, outcome, 0, s.replicas(), window.sent, window.answered,
              window.lost, formed, round(seconds, 1))
    ROWS.append(row)
    print(f"{name}: {asdict(row)}")
    return row


# A user's PostSync hook (a smoke Job, post-install/post-upgrade like the chart's former
# rollout Job) and a post-rollback-only hook, through the chart's extraObjects: the chart
# itself has no PostSync hook any more. The Job runs the dataflow image (the model has it).
EXTRA = {"extraObjects": [
    {"apiVersion": "batch/v1", "kind": "Job",
     "metadata": {"name": "{{ .Release.Name }}-smoke", "annotations": {
         "helm.sh/hook": "post-install,post-upgrade,post-rollback",
         "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded"}},
     "spec": {"backoffLimit": 0, "template": {"spec": {
         "restartPolicy": "Never", "automountServiceAccountToken": False,
         "containers": [{"name": "smoke",
                         "image": "ghcr.io/chatwax/chatwax-dataflow:{{ .Chart.AppVersion }}",
                         "command": ["sh", "-c", "exit 0"]}]}}}},
    {"apiVersion": "v1", "kind": "ConfigMap",
     "metadata": {"name": "{{ .Release.Name }}-after-rollback", "annotations": {
         "helm.sh/hook": "post-rollback"}},
     "data": {"note": "Argo CD never applies a post-rollback hook"}},
]}


def test_argo_maps_helm_hooks_as_its_documentation_says() -> None:
    """gitops-engine hook/helm/type.go, hook/hook.go, syncwaves/waves.go,
    hook/delete_policy.go; argo-cd docs/user-guide/helm.md "Helm Hooks"."""
    def obj(**ann: str) -> Obj:
        return {"kind": "Job", "metadata": {"name": "x", "annotations": ann}}

    assert hook_phases(obj()) is None  # a plain resource: the Sync phase
    assert hook_phases(obj(**{"helm.sh/hook": "pre-install,pre-upgrade"})) == ["PreSync"]
    assert hook_phases(obj(**{"helm.sh/hook": "post-upgrade,post-rollback"})) == [
        "PostSync"]
    assert hook_phases(obj(**{"helm.sh/hook": "post-rollback"})) == []  # never applied
    assert hook_phases(obj(**{"helm.sh/hook": "pre-rollback"})) == []
    assert hook_phases(obj(**{"helm.sh/hook": "test"})) == []
    assert hook_phases(obj(**{"helm.sh/hook": "crd-install"})) is None
    assert hook_phases(obj(**{"helm.sh/hook": "pre-install",
                              "argocd.argoproj.io/hook": "PostSync"})) == ["PostSync"]
    assert wave(obj(**{"helm.sh/hook-weight": "-5"})) == -5
    assert wave(obj(**{"helm.sh/hook-weight": "-5", "argocd.argoproj.io/sync-wave": "3"})) == 3
    assert delete_policies(obj()) == {"BeforeHookCreation"}
    assert delete_policies(obj(**{"helm.sh/hook-delete-policy": "hook-succeeded"})) == {
        "HookSucceeded"}


# -- Argo CD ----------------------------------------------------------------------------------

class TestArgoCD:
    """One Application on one model cluster, torn down before Flux's."""

    def test_argo_first_sync_runs_helm_hooks_as_presync_and_postsync(self, argo: Argo) -> None:
        s, app = argo.scene, argo.app
        results: list[SyncResult | None] = []

        def sync() -> str:
            results.append(app.reconcile())
            return results[-1].phase if results[-1] else "no sync"

        row = first_sync_row(s, sync, "first sync (automated)")
        result = results[0]
        assert result is not None and result.phase == "Succeeded", result
        # PreSync in the hooks' hook-weight order, every resource in one Sync wave, then the
        # PostSync hook; the post-rollback hook and the `helm test` Pod have no Argo phase.
        assert [(phase, w) for phase, w, *_ in result.waves] == [
            ("PreSync", -10), ("PreSync", -5), ("Sync", 0), ("PostSync", 0)], result.waves
        assert result.waves[0][2] == [
            "/ServiceAccount/chatwax-nats-auth-init",
            "rbac.authorization.k8s.io/Role/chatwax-nats-auth-init",
            "rbac.authorization.k8s.io/RoleBinding/chatwax-nats-auth-init"]
        assert result.waves[1][2] == ["batch/Job/chatwax-nats-auth-init"]
        assert result.waves[3][2] == ["batch/Job/chatwax-smoke"]
        assert result.hooks == [("PreSync", "chatwax-nats-auth-init", "Succeeded"),
                                ("PostSync", "chatwax-smoke", "Succeeded")]
        assert sorted(result.ignored) == ["/ConfigMap/chatwax-after-rollback",
                                          "/Pod/chatwax-test-ask"]
        # PostSync only once every synced resource was Healthy: the Sync wave waited for the
        # StatefulSets' pods (Progressing until every pod was Ready), and the app was Healthy
        # when the smoke Job was applied.
        sync_wave = result.waves[2]
        assert sync_wave[4] > 1.0, sync_wave
        assert ("PostSync", 0, "Healthy") in result.health_before, result.health_before
        assert ("Sync", 0, "Missing") in result.health_before, result.health_before
        assert s.model.store.get("ConfigMap", s.namespace, "chatwax-after-rollback") is None
        assert [(job, how) for _, job, how in s.model.jobs.runs] == [
            ("chatwax-nats-auth-init", "Complete"), ("chatwax-smoke", "Complete")]
        store, ns = s.model.store, s.namespace
        assert store.get("Pod", ns, "chatwax-test-ask") is None
        # hook-succeeded -> HookSucceeded: deleted once the whole operation succeeded.
        assert store.get("Job", ns, "chatwax-nats-auth-init") is None
        assert store.get("Job", ns, "chatwax-smoke") is None
        assert sorted(s.model.secret("chatwax-nats-auth")) == [
            "dataflow-password", "frontend-password", "operator-password", "route-password"]
        # Helm only rendered: there is no release to list.
        assert not [o for o in store.list("Secret", ns) if o["metadata"]["name"].startswith(
            "sh.helm.release")]
        sts = s.model.statefulset(DATAFLOW)
        assert sts["metadata"]["annotations"][TRACKING] == (
            f"{APP}:apps/StatefulSet:{ns}/{STS}")
        assert app.out_of_sync() == []
        assert app.health()[0] == "Healthy", app.health()
        assert s.pods() == [f"{STS}-0", f"{STS}-1"]
        assert row.lost == 0 and row.answered >= 10, row


    def test_argo_sync_of_a_template_change_restarts_the_dataflow_once(self, argo: Argo) -> None:
        s, app = argo.scene, argo.app
        revision = s.update_revision()
        results: list[SyncResult | None] = []

        def commit_and_sync() -> str:
            app.commit("dataflow.image.tag=0.9.9-gitops")
            results.append(app.reconcile())
            return results[-1].phase if results[-1] else "no sync"

        row = s.scenario("sync of a new dataflow image tag", commit_and_sync)
        result = results[0]
        assert result is not None and result.phase == "Succeeded", result
        # Every sync runs the hooks again (Argo cannot tell an install from an upgrade).
        assert result.hooks == [("PreSync", "chatwax-nats-auth-init", "Succeeded"),
                                ("PostSync", "chatwax-smoke", "Succeeded")]
        assert s.update_revision() != revision
        assert s.pod_revisions() == {s.update_revision()}
        image = s.model.statefulset(DATAFLOW)["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image.endswith(":0.9.9-gitops"), image
        assert (row.replicas_before, row.replicas_after) == (2, 2)
        assert (row.lost, row.cluster_restarts) == (0, 1), row
        assert app.out_of_sync() == []


    def test_argo_cannot_run_the_charts_storage_check(self, argo: Argo) -> None:
        """`lookup` finds nothing under `helm template`: the chart's refusal of a new NATS
        volume size cannot run, the API server refuses the StatefulSet, and the rest of the
        wave is applied anyway (docs/kubernetes.md "Where nothing is checked")."""
        s, app = argo.scene, argo.app
        store, ns = s.model.store, s.namespace
        nats = store.get("StatefulSet", ns, f"{APP}-nats")
        assert nats is not None
        before = app.values
        results: list[SyncResult | None] = []

        def commit_and_sync() -> str:
            app.commit("nats.jetstream.storageSize=2Gi")
            results.append(app.reconcile())
            results.append(app.reconcile())  # the same revision again: not retried
            return results[0].phase if results[0] else "no sync"

        row = s.scenario("sync of nats.jetstream.storageSize 1Gi -> 2Gi", commit_and_sync)
        failed, again = results
        assert failed is not None and failed.phase == "Failed", failed
        assert ('The StatefulSet "chatwax-nats" is invalid: spec: Forbidden'
                in failed.message), failed.message
        assert again is None  # "will not reattempt a sync ... against the same commit-SHA"
        config = store.get("ConfigMap", ns, f"{APP}-nats-config")
        assert config is not None and "max_file_store: 2Gi" in config["data"]["nats.conf"]
        after = store.get("StatefulSet", ns, f"{APP}-nats")
        assert after is not None
        assert after["metadata"]["generation"] == nats["metadata"]["generation"]
        assert (row.lost, row.cluster_restarts) == (0, 0), row
        # The revert commit is synced and puts the ConfigMap back.
        app.commit(values=before)
        reverted = app.reconcile()
        assert reverted is not None and reverted.phase == "Succeeded", reverted
        config = store.get("ConfigMap", ns, f"{APP}-nats-config")
        assert config is not None and "max_file_store: 1Gi" in config["data"]["nats.conf"]


    def test_argo_self_heal_reverts_kubectl_scale(self, argo: Argo) -> None:
        s, app = argo.scene, argo.app
        results: list[SyncResult | None] = []

        def scale_then_reconcile() -> str:
            res = s.cli.kubectl("scale", "statefulset", STS, "--replicas=3", "-n", s.namespace)
            assert res.returncode == 0, res.stderr
            # The drift is seen at once (Argo watches the live objects); the model lets the
            # third pod join before the self-heal sync, so both re-formations are counted.
            s.model.wait_settled(DATAFLOW, 120)
            assert s.pods() == [f"{STS}-{i}" for i in range(3)]
            drift = app.out_of_sync()
            assert drift == [f"apps/StatefulSet/{STS}"], drift
            # The self-heal timeout (5 s) counts from the last sync, long past here.
            results.append(app.reconcile())
            return results[-1].phase if results[-1] else "no sync"

        row = s.scenario("kubectl scale 2 -> 3, then self-heal", scale_then_reconcile)
        result = results[0]
        assert result is not None and result.phase == "Succeeded", result
        assert (row.replicas_before, row.replicas_after) == (2, 2)
        assert s.pods() == [f"{STS}-0", f"{STS}-1"]
        # One re-formation for 3 processes, one for 2 again.
        assert (row.lost, row.cluster_restarts) == (0, 2), row
        # kubectl's client-side apply: a three-way strategic merge patch from the
        # last-applied-configuration annotation sets the rendered replicas back.
        patches = [r for r in s.model.apiserver.log if r.method == "PATCH"
                   and r.path.endswith(f"statefulsets/{STS}")]
        assert patches[-1].content_type == "application/strategic-merge-patch+json"
        assert patches[-1].body["spec"]["replicas"] == 2, patches[-1].body
        assert app.out_of_sync() == []


    def test_argo_fixes_an_unready_dataflow_with_the_next_commit(self, argo: Argo) -> None:
        s, app = argo.scene, argo.app
        good = s.update_revision()
        seen: dict[str, SyncResult | None] = {}
        health: list[tuple[str, list[str]]] = []

        def bad_then_fix() -> str:
            # Without the user's PostSync hook: with one, the bad sync would wait for the
            # dataflow's health before it (Argo's PostSync semantics), never get it, and keep
            # the operation running, so that no later commit is synced until someone terminates
            # it: the deadlock issue #21 describes for the chart's former rollout hook.
            app.commit("dataflow.image.tag=0.9.9-gitops",
                       "dataflow.extraEnv[0].name=CHATWAX_POLL_MS",
                       "dataflow.extraEnv[0].value=often", values=s.values)
            seen["bad"] = app.reconcile()
            bad = s.update_revision()
            assert bad != good

            settle(lambda: s.running.crash_looping(bad, DATAFLOW), 90,
                   "the dataflow pods on the bad value crashing")
            health.append(app.health())
            # --set-string: `--set ...value=100` renders an integer, which a real API
            # server refuses for an EnvVar's value, and so does the stand-in
            # (tests/support/apiserver.py `check_field_types`).
            app.commit(values=[*app.values, "--set-string", "dataflow.extraEnv[0].value=100"])
            seen["fix"] = app.reconcile()
            return " / ".join(f"{k}: {v.phase if v else 'no sync'}" for k, v in seen.items())

        row = s.scenario("bad value (dataflow unready), then the fix", bad_then_fix,
                         settle_s=150)
        bad_sync, fix_sync = seen["bad"], seen["fix"]
        # Argo does not wait for health after the last wave when it has no hook: the sync of
        # the bad value succeeds, the app is then Progressing on the StatefulSet.
        assert bad_sync is not None and bad_sync.phase == "Succeeded", bad_sync
        assert health[0][0] == "Progressing", health
        assert any(w.startswith(f"apps/StatefulSet/{STS}: Progressing Waiting for")
                   for w in health[0][1]), health
        # The fix is synced (no operation is stuck on a PostSync) and rolled out.
        assert fix_sync is not None and fix_sync.phase == "Succeeded", fix_sync
        env = s.model.statefulset(DATAFLOW)["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "CHATWAX_POLL_MS", "value": "100"} in env
        assert s.pod_revisions() == {s.update_revision()}
        assert app.health()[0] == "Healthy", app.health()
        assert row.lost == 0, row
        assert row.cluster_restarts == 1, row


# -- Flux -------------------------------------------------------------------------------------

class TestFlux:
    """One HelmRelease on another model cluster."""

    def test_flux_installs_the_release(self, flux: Scene) -> None:
        s = flux
        row = first_sync_row(s, lambda: describe(flux_reconcile(
            s.cli, APP, s.namespace, CHART, s.values)), "reconcile: install")
        assert row.outcome == "ok", row
        listed = s.cli.helm("list", "-n", s.namespace, "-o", "json")
        assert [(r["name"], r["status"], r["revision"]) for r in json.loads(listed.stdout)] == [
            (APP, "deployed", "1")]
        # helm 4 installs with server-side apply, as helm-controller's install does.
        managers = {(m["manager"], m["operation"]) for m in
                    s.model.statefulset(DATAFLOW)["metadata"]["managedFields"]}
        assert ("helm", "Apply") in managers, managers
        assert [(job, how) for _, job, how in s.model.jobs.runs] == [
            ("chatwax-nats-auth-init", "Complete")]
        assert s.pods() == [f"{STS}-0", f"{STS}-1"]
        assert row.lost == 0 and row.answered >= 10, row


    def test_flux_reconciles_an_upgrade_of_the_dataflow_once(self, flux: Scene) -> None:
        s = flux
        revision = s.update_revision()
        values = [*s.values, "--set", "dataflow.image.tag=0.9.9-gitops"]
        row = s.scenario("reconcile: upgrade of the dataflow image tag", lambda: describe(
            flux_reconcile(s.cli, APP, s.namespace, CHART, values)))
        assert row.outcome == "ok", row
        history = json.loads(s.cli.helm("history", APP, "-n", s.namespace, "-o", "json").stdout)
        assert [(h["revision"], h["status"]) for h in history] == [
            (1, "superseded"), (2, "deployed")]
        assert s.update_revision() != revision
        assert s.pod_revisions() == {s.update_revision()}
        assert (row.replicas_before, row.replicas_after) == (2, 2)
        assert (row.lost, row.cluster_restarts) == (0, 1), row

    def test_flux_reconcile_of_a_storage_value_is_refused_before_anything_is_applied(
            self, flux: Scene) -> None:
        """helm-controller renders with a client of the cluster, so the chart's `lookup`
        runs (unlike under Argo CD, above): the reconcile fails while rendering, with the
        chart's message; nothing is written, the release stays deployed at its revision,
        and nothing is rolled back (no remediation by default)."""
        s = flux
        store, ns = s.model.store, s.namespace
        nats = store.get("StatefulSet", ns, f"{APP}-nats")
        assert nats is not None
        logged = len(s.model.apiserver.log)
        values = [*s.values, "--set", "dataflow.image.tag=0.9.9-gitops",
                  "--set", "nats.jetstream.storageSize=2Gi"]
        done: list[str] = []

        def reconcile() -> str:
            res = flux_reconcile(s.cli, APP, ns, CHART, values)
            done.append(res.stderr)
            return describe(res)

        row = s.scenario("reconcile: upgrade of nats.jetstream.storageSize 1Gi -> 2Gi",
                         reconcile)
        assert row.outcome == ("refused by the chart: nats.jetstream.storageSize cannot "
                               "change after install"), row
        assert ("nats.jetstream.storageSize cannot change after install: the StatefulSet "
                "chatwax-nats has volumes of 1Gi, the new value is 2Gi") in done[0], done[0]
        writes = [(r.method, r.path) for r in s.model.apiserver.log[logged:]
                  if r.method in WRITES]
        assert writes == [], writes
        config = store.get("ConfigMap", ns, f"{APP}-nats-config")
        assert config is not None and "max_file_store: 1Gi" in config["data"]["nats.conf"]
        after = store.get("StatefulSet", ns, f"{APP}-nats")
        assert after is not None
        assert after["metadata"]["resourceVersion"] == nats["metadata"]["resourceVersion"]
        history = json.loads(s.cli.helm("history", APP, "-n", ns, "-o", "json").stdout)
        assert [(h["revision"], h["status"]) for h in history] == [
            (1, "superseded"), (2, "deployed")]
        assert (row.lost, row.cluster_restarts) == (0, 0), row
        assert row.answered == row.sent > 0, row


def test_write_the_table() -> None:
    """artifacts/cluster/gitops.md: the table docs/kubernetes.md reports."""
    assert ROWS, "no scenario ran"
    print(write_table(ROWS, ARTIFACTS / "gitops", "tool"))
