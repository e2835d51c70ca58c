"""Argo CD and Flux on the cluster model, run by the real helm and kubectl (issue #21).

Neither controller runs here (their releases come from GitHub, which this machine does not
reach), so what they do between the Git repository and the API server is modelled, and
each step they delegate to helm or kubectl runs as the real binary (tests/cluster/tools.py,
scripts/tools.sh) against the API-server stand-in. Sources: Argo CD and its gitops-engine
(argoproj/argo-cd master at 37ee0097, with gitops-engine/ in the same repository) and
Flux's helm-controller (fluxcd/helm-controller main at 0f61a860), read in their
repositories; paths below.

Argo CD (`ArgoCD`):
- Renders with `helm template <chart> --name-template <app> --namespace <ns>
  --kube-version <v> --api-versions <each> --include-crds` plus the values (argo-cd
  util/helm/cmd.go `template`): Helm is "only used to inflate charts" (docs/user-guide/
  helm.md), so there is no release, `lookup` finds nothing and `.Release.IsUpgrade` is
  false. The cluster's version and API versions (each group/version and
  group/version/Kind, argo-cd util/argo/argo.go `APIResourcesToStrings`) come from the real
  `kubectl version` and `kubectl api-resources` against the stand-in.
- Hooks (gitops-engine pkg/sync/hook/hook.go, hook/helm/type.go, sync_phase.go): an
  `argocd.argoproj.io/hook` annotation wins; otherwise `helm.sh/hook` pre-install and
  pre-upgrade are PreSync, post-install and post-upgrade PostSync, and any other Helm hook
  (test, pre/post-rollback) makes the object a hook of no phase Argo runs: it is never
  applied. Delete policies (hook/delete_policy.go, hook/helm/delete_policy.go):
  before-hook-creation, hook-succeeded and hook-failed map to BeforeHookCreation,
  HookSucceeded and HookFailed; none means BeforeHookCreation. Waves
  (syncwaves/waves.go): `argocd.argoproj.io/sync-wave`, else `helm.sh/hook-weight`, else 0.
- A client-side dry run of every task first (sync_context.go `Sync`, `applyObject`:
  "always run in client dry run mode"), so the API server's update validation is met only
  by the wet run. Order (sync_tasks.go `Less`, `kindOrder`): phase, wave, kind, name. Each
  wave is applied with the real `kubectl apply` (client-side apply: gitops-engine applies
  through kubectl's apply code; docs/user-guide/helm.md: hooks too are applied, not
  created); a hook with BeforeHookCreation that exists is deleted first (`kubectl delete`).
- Between waves (sync_context.go `Sync`): when a sync has more than one phase or wave, the
  next wave starts only once every hook of the last one completed (Job: Complete/Failed,
  Pod: Succeeded/Failed, health_job.go, health_pod.go) and every resource is Healthy by
  gitops-engine's health checks (pkg/health: StatefulSet, Deployment, Job, Pod, PVC,
  Service, Ingress; kinds without a check count as healthy). A resource that is Degraded
  fails the sync; one that stays Progressing keeps the operation running, with no timeout
  (the model gives up after `wait_s` and reports the operation as still running, with
  Argo's message). The last wave succeeds as soon as it is applied when it has no hooks,
  "EVEN if those objects subsequently degrade" (sync_context.go). Hooks with
  HookSucceeded are deleted when the operation succeeded, with HookFailed when it failed.
- Tracking (docs/user-guide/resource_tracking.md, annotation is the default): every
  applied object carries `argocd.argoproj.io/tracking-id: <app>:<group>/<kind>:<ns>/<name>`.
  Prune deletes tracked non-hook objects no longer rendered, except `helm.sh/resource-policy:
  keep` (helm.md: equivalent to `Delete=false`); no scenario removes an object yet.
- Automated sync (docs/user-guide/auto_sync.md): a reconcile syncs when the app is
  OutOfSync; once per revision (a failed sync of the same revision is not retried);
  with `selfHeal` a live change makes it OutOfSync and is synced again (no sooner than
  the self-heal timeout, 5 s by default, after the last sync). OutOfSync here: a rendered
  field whose live value differs (simplified from Argo's diff, which also normalizes
  defaults).

Flux (`flux_reconcile`): helm-controller runs the Helm SDK in-process (helm v4.2.1 in
go.mod); a reconcile of a HelmRelease is an install or an upgrade with its defaults
(internal/action/install.go `newInstall`, upgrade.go `newUpgrade`, wait.go
`getWaitStrategy`; api/v2/helmrelease_types.go): timeout 5m0s, wait with the kstatus
watcher, wait for Jobs, hooks run, take ownership, values reset to the chart's plus the
HelmRelease's, history 5, server-side apply on install and "auto" on upgrade, upgrade
remediation 0 retries with RemediateLastFailure false (a failed upgrade is left failed, not
rolled back); drift detection is off by default (not modelled). The model runs the real
helm 4 CLI with the flags those defaults correspond to.

What neither has here, because the model runs no such controller: Deployments, Ingresses
and PersistentVolumeClaims get the status their controllers would write on success
(`MissingControllers`), so that their health checks can pass; the frontend and an ingress
controller do not run (docs/kubernetes.md, "A cluster on one machine").
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.controllers import Loop
from tests.support.apiserver import Obj, Store, default_class

ARGO_HOOK = "argocd.argoproj.io/hook"
ARGO_DELETE = "argocd.argoproj.io/hook-delete-policy"
ARGO_WAVE = "argocd.argoproj.io/sync-wave"
ARGO_OPTIONS = "argocd.argoproj.io/sync-options"
TRACKING = "argocd.argoproj.io/tracking-id"
HELM_HOOK = "helm.sh/hook"
PHASES = ("PreSync", "Sync", "PostSync")
# gitops-engine pkg/sync/hook/helm/type.go `hookTypes`: the only Helm hooks Argo runs.
HELM_TO_ARGO = {"pre-install": "PreSync", "pre-upgrade": "PreSync",
                "post-install": "PostSync", "post-upgrade": "PostSync"}
# gitops-engine pkg/sync/hook/helm/delete_policy.go `hookDeletePolicies`.
HELM_DELETE = {"before-hook-creation": "BeforeHookCreation", "hook-succeeded": "HookSucceeded",
               "hook-failed": "HookFailed"}
# gitops-engine pkg/sync/sync_tasks.go `kindOrder`; kinds not listed come last.
KIND_ORDER = ["Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
              "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret",
              "SecretList", "ConfigMap", "StorageClass", "PersistentVolume",
              "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
              "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role",
              "RoleList", "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod",
              "ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler",
              "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService"]
GROUPS = {"Deployment": "apps", "StatefulSet": "apps", "Job": "batch",
          "Role": "rbac.authorization.k8s.io", "RoleBinding": "rbac.authorization.k8s.io",
          "NetworkPolicy": "networking.k8s.io", "Ingress": "networking.k8s.io",
          "PodDisruptionBudget": "policy", "HorizontalPodAutoscaler": "autoscaling",
          "PodMonitor": "monitoring.coreos.com"}


def _csv(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def annotations_of(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def hook_phases(obj: Obj) -> list[str] | None:
    """None for a plain resource (Sync phase); for a hook the phases Argo runs it in,
    empty when it runs in none (a Helm test or rollback hook, `Skip`): never applied."""
    ann = annotations_of(obj)
    if ARGO_HOOK in ann:  # "we ignore Helm hooks if we have Argo hook" (hook.go `Types`)
        return [t for t in _csv(ann[ARGO_HOOK]) if t in PHASES]
    if HELM_HOOK in ann and ann[HELM_HOOK] != "crd-install":  # hook/helm/hook.go `IsHook`
        return sorted({HELM_TO_ARGO[t] for t in _csv(ann[HELM_HOOK]) if t in HELM_TO_ARGO})
    return None


def wave(obj: Obj) -> int:
    """syncwaves/waves.go `Wave`: the sync-wave annotation, else the Helm hook weight."""
    ann = annotations_of(obj)
    for key in (ARGO_WAVE, "helm.sh/hook-weight"):
        try:
            return int(ann[key])
        except (KeyError, ValueError):
            continue
    return 0


def delete_policies(obj: Obj) -> set[str]:
    """hook/delete_policy.go `DeletePolicies`: Argo's and the mapped Helm policies, and
    BeforeHookCreation when there are none."""
    ann = annotations_of(obj)
    found = set(_csv(ann.get(ARGO_DELETE)))
    found |= {HELM_DELETE[p] for p in _csv(ann.get("helm.sh/hook-delete-policy"))
              if p in HELM_DELETE}
    return found or {"BeforeHookCreation"}


def ref(obj: Obj) -> str:
    """group/Kind/name, as Argo names resources in its messages."""
    return f"{GROUPS.get(obj['kind'], '')}/{obj['kind']}/{obj['metadata']['name']}"


# -- gitops-engine's health checks (pkg/health/health_*.go) ---------------------------------

def _conditions(obj: Obj) -> dict[str, Obj]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def health(obj: Obj) -> tuple[str, str] | None:
    """(status, message) by gitops-engine's built-in check for the kind, None for kinds
    with no check (they count as healthy). health.go `GetResourceHealth`."""
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "Progressing", "Pending deletion"
    kind = obj["kind"]
    if kind == "StatefulSet":  # health_statefulset.go getAppsv1StatefulSetHealth
        replicas = spec.get("replicas", 1)
        observed = status.get("observedGeneration", 0)
        if observed == 0 or meta.get("generation", 1) > observed:
            return "Progressing", "Waiting for statefulset spec update to be observed..."
        ready = status.get("readyReplicas", 0)
        if ready < replicas:
            return "Progressing", f"Waiting for {replicas - ready} pods to be ready..."
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type") == "RollingUpdate" and "rollingUpdate" in strategy:
            partition = strategy["rollingUpdate"].get("partition")
            if partition is not None and status.get("updatedReplicas", 0) < replicas - partition:
                return "Progressing", "Waiting for partitioned roll out to finish..."
            return "Healthy", "partitioned roll out complete"
        if strategy.get("type") == "OnDelete":
            return "Healthy", f"statefulset has {ready} ready pods"
        if status.get("updateRevision") != status.get("currentRevision"):
            return "Progressing", "waiting for statefulset rolling update to complete"
        return "Healthy", "statefulset rolling update complete"
    if kind == "Deployment":  # health_deployment.go getAppsv1DeploymentHealth
        if spec.get("paused"):
            return "Suspended", "Deployment is paused"
        if meta.get("generation", 1) > status.get("observedGeneration", 0):
            return "Progressing", ("Waiting for rollout to finish: observed deployment "
                                   "generation less than desired generation")
        progressing = _conditions(obj).get("Progressing") or {}
        if progressing.get("reason") == "ProgressDeadlineExceeded":
            return "Degraded", f"Deployment {meta['name']!r} exceeded its progress deadline"
        updated = status.get("updatedReplicas", 0)
        if updated < spec.get("replicas", 1) or status.get("replicas", 0) > updated \
                or status.get("availableReplicas", 0) < updated:
            return "Progressing", "Waiting for rollout to finish"
        return "Healthy", ""
    if kind == "Job":  # health_job.go getBatchv1JobHealth
        conds = {t: c for t, c in _conditions(obj).items() if c.get("status") == "True"}
        if "Failed" in conds:
            return "Degraded", conds["Failed"].get("message", "")
        if "Complete" in conds:
            return "Healthy", conds["Complete"].get("message", "")
        return "Progressing", ""
    if kind == "Pod":  # health_pod.go getCorev1PodHealth (phases; no waiting reasons)
        phase = status.get("phase", "Pending")
        if phase == "Succeeded":
            return "Healthy", status.get("message", "")
        if phase == "Failed":
            return "Degraded", status.get("message", "")
        if phase == "Running" and spec.get("restartPolicy", "Always") == "Always":
            ready = _conditions(obj).get("Ready", {}).get("status") == "True"
            return ("Healthy", "") if ready else ("Progressing", "")
        return "Progressing", status.get("message", "")
    if kind == "PersistentVolumeClaim":  # health_pvc.go getCorev1PVCHealth
        return {"Lost": "Degraded", "Pending": "Progressing", "Bound": "Healthy"}.get(
            status.get("phase", ""), "Unknown"), ""
    if kind == "Service":  # health_service.go getCorev1ServiceHealth
        if spec.get("type") == "LoadBalancer" and not (
                status.get("loadBalancer") or {}).get("ingress"):
            return "Progressing", ""
        return "Healthy", ""
    if kind == "Ingress":  # health_ingress.go getIngressHealth
        lb = (status.get("loadBalancer") or {}).get("ingress")
        return ("Healthy", "") if lb else ("Progressing", "")
    return None


def _set_status(status: Obj) -> Callable[[Obj], None]:
    def change(obj: Obj) -> None:
        obj["status"] = status
    return change


class MissingControllers(Loop):
    """The status the controllers the model does not run would write once they are done:
    the Deployment controller (a complete rollout: observedGeneration, every replica
    updated and available, condition Progressing/NewReplicaSetAvailable, and the new
    ReplicaSet, named and labelled by pod-template-hash and controlled by the Deployment, that
    helm's legacy wait looks up: pkg/kube/ready.go `IsReady` -> deployment/util
    `GetNewReplicaSet`, a ReplicaSet the Deployment controls whose template equals the
    Deployment's but for that label), an ingress controller (its address in
    status.loadBalancer), and a provisioner binding each claim (in the default
    StorageClass, if there is one, for a claim that names none). Without them Argo's health
    checks and helm's or Flux's wait would wait for ever; with them they pass the moment the
    object exists, so these kinds prove nothing about timing. `kinds` picks which run."""

    KINDS = ("Deployment", "Ingress", "PersistentVolumeClaim")

    def __init__(self, store: Store, namespace: str, kinds: Iterable[str] = KINDS) -> None:
        super().__init__(store, "missing-controllers")
        self.namespace = namespace
        self.kinds = tuple(kinds)

    def reconcile(self) -> None:
        wants = {"Deployment": self._deployment, "Ingress": self._ingress,
                 "PersistentVolumeClaim": self._claim}
        for kind in self.kinds:
            for obj in self.store.list(kind, self.namespace):
                if kind == "PersistentVolumeClaim":
                    obj = self._default_class(obj)
                status = wants[kind](obj)
                if obj.get("status") != status:
                    self.store.update(kind, self.namespace, obj["metadata"]["name"],
                                      _set_status(status))
                if kind == "Deployment":
                    self._replica_set(obj)

    def _replica_set(self, deployment: Obj) -> None:
        """The Deployment's new ReplicaSet, all replicas ready; older ones scaled to 0 (a
        finished rollout: pkg/controller/deployment `getNewReplicaSet` names it
        "<deployment>-<pod-template-hash>"; the hash here is of the template's JSON, not
        upstream's fnv of its Go printing, which no client reads)."""
        meta, spec = deployment["metadata"], deployment["spec"]
        template = copy.deepcopy(spec["template"])
        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = digest
        name, n = f"{meta['name']}-{digest}", spec.get("replicas", 1)
        owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"],
                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}
        for rs in self.store.list("ReplicaSet", self.namespace):
            refs = rs["metadata"].get("ownerReferences") or []
            if rs["metadata"]["name"] != name and any(r.get("uid") == meta["uid"] for r in refs) \
                    and rs["spec"].get("replicas"):
                def scale_down(o: Obj) -> None:
                    o["spec"]["replicas"] = 0
                    o["status"] = {"replicas": 0, "observedGeneration":
                                   o["metadata"].get("generation", 1) + 1}
                self.store.update("ReplicaSet", self.namespace, rs["metadata"]["name"],
                                  scale_down)
        current = self.store.get("ReplicaSet", self.namespace, name)
        want_spec = {"replicas": n, "selector": spec["selector"], "template": template}
        if current is None:
            current = self.store.put({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": name, "namespace": self.namespace,
                             "labels": template["metadata"]["labels"],
                             "ownerReferences": [owner]},
                "spec": want_spec})
        elif current["spec"] != want_spec:
            def rescale(o: Obj) -> None:
                o["spec"] = want_spec
            current = self.store.update("ReplicaSet", self.namespace, name, rescale)
        status = {"replicas": n, "fullyLabeledReplicas": n, "readyReplicas": n,
                  "availableReplicas": n,
                  "observedGeneration": current["metadata"].get("generation", 1)}
        if current.get("status") != status:
            self.store.update("ReplicaSet", self.namespace, name, _set_status(status))

    @staticmethod
    def _deployment(obj: Obj) -> Obj:
        n = obj["spec"].get("replicas", 1)
        return {"observedGeneration": obj["metadata"].get("generation", 1), "replicas": n,
                "updatedReplicas": n, "readyReplicas": n, "availableReplicas": n,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                    {"type": "Progressing", "status": "True",
                     "reason": "NewReplicaSetAvailable"}]}

    @staticmethod
    def _ingress(obj: Obj) -> Obj:
        return {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}

    def _default_class(self, claim: Obj) -> Obj:
        """A claim without a class gets the default StorageClass, if there is one, before it
        binds: the PV controller's retroactive assignment (pkg/controller/volume/
        persistentvolume/pv_controller.go `assignDefaultStorageClass`, GA in 1.28; the
        DefaultStorageClass admission plugin does the same at create)."""
        if claim["spec"].get("storageClassName") or claim.get("status", {}).get("phase"):
            return claim
        if (default := default_class(self.store)) is None:
            return claim

        def assign(o: Obj) -> None:
            o["spec"]["storageClassName"] = default
        return self.store.update("PersistentVolumeClaim", self.namespace,
                                 claim["metadata"]["name"], assign)

    @staticmethod
    def _claim(obj: Obj) -> Obj:
        spec = obj["spec"]
        return {"phase": "Bound", "accessModes": spec.get("accessModes", []),
                "capacity": {"storage": spec["resources"]["requests"]["storage"]}}


# -- the real binaries ----------------------------------------------------------------------

@dataclass
class Cli:
    """The real helm and kubectl with a kubeconfig of the model; every command logged."""

    helm_path: str
    kubectl_path: str
    env: dict[str, str]
    workdir: Path
    commands: list[tuple[str, int, float]] = field(default_factory=list)

    def run(self, *argv: str, timeout_s: float = 360) -> subprocess.CompletedProcess[str]:
        began = time.monotonic()
        res = subprocess.run(list(argv), capture_output=True, text=True, env=self.env,
                             timeout=timeout_s)
        shown = " ".join([f"{Path(argv[0]).parent.name}/{Path(argv[0]).name}", *argv[1:]])
        self.commands.append((shown, res.returncode, round(time.monotonic() - began, 1)))
        return res

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(self.helm_path, *args)

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(self.kubectl_path, *args)

    def manifest(self, name: str, docs: Iterable[Obj]) -> str:
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
        return str(path)


def checked(res: subprocess.CompletedProcess[str]) -> str:
    if res.returncode != 0:
        raise RuntimeError(f"{res.args[0]} {' '.join(res.args[1:3])}: {res.stderr.strip()}")
    return res.stdout


# The request methods that change something in the API server.
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def describe(res: subprocess.CompletedProcess[str]) -> str:
    """How a helm or kubectl command ended, for the tables: "ok"; "refused by the chart: "
    and the first clause of the chart's own message (a `fail` while rendering); or
    "failed: " and the gist of the last error line."""
    if res.returncode == 0:
        return "ok"
    last = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
    if chart := re.search(r"execution error at \(.*?\): (.*?)(?::|$)", last):
        return "refused by the chart: " + chart.group(1)
    gist = last[last.index("Apply failed"):] if "Apply failed" in last else last
    return "failed: " + gist[:300]


# -- Argo CD --------------------------------------------------------------------------------

@dataclass
class Task:
    phase: str
    wave: int
    obj: Obj
    hook: bool

    def key(self) -> tuple[int, int, int, str]:
        kind = self.obj["kind"]
        order = KIND_ORDER.index(kind) - len(KIND_ORDER) if kind in KIND_ORDER else 0
        return PHASES.index(self.phase), self.wave, order, self.obj["metadata"]["name"]


@dataclass
class SyncResult:
    """An operation's outcome: Succeeded, Failed, or Running (still waiting when the model
    stopped looking; Argo would go on waiting)."""

    phase: str
    message: str
    revision: str
    # (phase, wave, objects, when it was applied (time.time()), seconds waited after it)
    waves: list[tuple[str, int, list[str], float, float]] = field(default_factory=list)
    hooks: list[tuple[str, str, str]] = field(default_factory=list)
    # the app's health (hooks excluded) when each wave after the first was applied
    health_before: list[tuple[str, int, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    seconds: float = 0.0


class StillRunning(Exception):
    pass


class SyncFailed(Exception):
    pass


class ArgoCD:
    """One Application: a Helm chart from "Git" (the chart directory and a values list
    standing for a commit) synced into one namespace with automated sync, prune and
    selfHeal."""

    def __init__(self, cli: Cli, store: Store, app: str, namespace: str, chart: Path,
                 values: list[str], wait_s: float = 120) -> None:
        self.cli = cli
        self.store = store
        self.app = app
        self.namespace = namespace
        self.chart = chart
        self.values = list(values)
        self.wait_s = wait_s
        self.history: list[SyncResult] = []
        self._cluster: tuple[str, list[str]] | None = None

    # -- the source ---------------------------------------------------------------------

    def commit(self, *sets: str, values: list[str] | None = None) -> str:
        """A new commit: `values` (helm arguments) replaced, or `--set` pairs added."""
        base = self.values if values is None else values
        self.values = base + [a for s in sets for a in ("--set", s)]
        return self.revision

    @property
    def revision(self) -> str:
        return json.dumps(self.values)

    def cluster_info(self) -> tuple[str, list[str]]:
        """The destination's version and API versions as Argo passes them to helm: each
        group/version and group/version/Kind (argo-cd util/argo/argo.go
        `APIResourcesToStrings` with kinds), read here with the real kubectl from the
        stand-in's discovery (`kubectl version`, `kubectl api-resources`)."""
        if self._cluster is None:
            version = json.loads(checked(self.cli.kubectl("version", "-o", "json")))
            apis: set[str] = set()
            for line in checked(self.cli.kubectl("api-resources", "--no-headers")).splitlines():
                # NAME [SHORTNAMES] APIVERSION NAMESPACED KIND
                group_version, _, kind = line.split()[-3:]
                apis |= {group_version, f"{group_version}/{kind}"}
            self._cluster = (version["serverVersion"]["gitVersion"], sorted(apis))
        return self._cluster

    def render(self) -> list[Obj]:
        """argo-cd util/helm/cmd.go `template`."""
        kube_version, apis = self.cluster_info()
        args = ["template", str(self.chart), "--name-template", self.app,
                "--namespace", self.namespace, "--kube-version", kube_version]
        args += self.values
        for api in apis:
            args += ["--api-versions", api]
        args.append("--include-crds")
        docs = [d for d in yaml.safe_load_all(checked(self.cli.helm(*args))) if d]
        for d in docs:  # Argo sets the destination namespace on namespaced objects
            d["metadata"].setdefault("namespace", self.namespace)
            meta = d["metadata"]
            meta.setdefault("annotations", {})[TRACKING] = (
                f"{self.app}:{GROUPS.get(d['kind'], '')}/{d['kind']}:"
                f"{self.namespace}/{meta['name']}")
        return docs

    # -- comparison ---------------------------------------------------------------------

    def live(self, obj: Obj) -> Obj | None:
        return self.store.get(obj["kind"], self.namespace, obj["metadata"]["name"])

    def out_of_sync(self, docs: list[Obj] | None = None) -> list[str]:
        """Rendered non-hook objects missing or with a rendered field whose live value
        differs, and tracked objects no longer rendered."""
        docs = self.render() if docs is None else docs
        found = []
        for d in docs:
            if hook_phases(d) is not None:
                continue
            live = self.live(d)
            if live is None or not _contained(d, live):
                found.append(ref(d))
        found += [ref(o) for o in self._orphans(docs)]
        return found

    def _orphans(self, docs: list[Obj]) -> list[Obj]:
        wanted = {(d["kind"], d["metadata"]["name"]) for d in docs}
        out = []
        for kind in KIND_ORDER:
            for o in self.store.list(kind, self.namespace):
                tracking = annotations_of(o).get(TRACKING, "")
                if tracking.startswith(f"{self.app}:") and hook_phases(o) is None \
                        and (kind, o["metadata"]["name"]) not in wanted:
                    out.append(o)
        return out

    def health(self, docs: list[Obj] | None = None) -> tuple[str, list[str]]:
        """The app's health: the worst of its resources' (hooks excluded)."""
        docs = self.render() if docs is None else docs
        order = ["Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown"]
        worst, why = "Healthy", []
        for d in docs:
            if hook_phases(d) is not None:
                continue
            live = self.live(d)
            got = ("Missing", "") if live is None else health(live)
            if got is None or got[0] == "Healthy":
                continue
            why.append(f"{ref(d)}: {got[0]} {got[1]}".strip())
            if order.index(got[0]) > order.index(worst):
                worst = got[0]
        return worst, why

    # -- automated sync -----------------------------------------------------------------

    def reconcile(self) -> SyncResult | None:
        """One pass of the application controller with automated sync, prune and selfHeal:
        sync when OutOfSync, except a revision whose last sync failed; a live drift of a
        revision already synced is synced again (selfHeal)."""
        docs = self.render()
        if not self.out_of_sync(docs):
            return None
        last = self.history[-1] if self.history else None
        if last is not None and last.revision == self.revision and last.phase == "Failed":
            return None
        return self.sync(docs)

    def sync(self, docs: list[Obj] | None = None) -> SyncResult:
        """One sync operation (gitops-engine sync_context.go `Sync`, run to its end)."""
        began = time.monotonic()
        docs = self.render() if docs is None else docs
        result = SyncResult("Running", "", self.revision)
        tasks: list[Task] = []
        for d in docs:
            phases = hook_phases(d)
            if phases is None:
                tasks.append(Task("Sync", wave(d), d, hook=False))
            elif not phases:
                result.ignored.append(ref(d))
            tasks += [Task(p, wave(d), d, hook=True) for p in phases or []]
        tasks.sort(key=Task.key)
        steps = sorted({(t.phase, t.wave) for t in tasks},
                       key=lambda s: (PHASES.index(s[0]), s[1]))
        multi_step = len(steps) > 1
        done: list[Task] = []
        try:
            # "kubectl apply --dry-run" of everything first, always client-side (sync_context.go
            # `Sync`, `applyObject`): it catches malformed manifests, not immutable fields.
            res = self.cli.kubectl("apply", "--dry-run=client", "-n", self.namespace, "-f",
                                   self.cli.manifest("argo-dry-run", [t.obj for t in tasks]))
            if res.returncode != 0:
                raise SyncFailed("one or more objects failed to apply (dry run): "
                                 + res.stderr.strip())
            for i, step in enumerate(steps):
                now = [t for t in tasks if (t.phase, t.wave) == step]
                if step[0] == "Sync" and not any(s[0] == "Sync" for s in steps[:i]):
                    result.pruned = self._prune(docs)
                if i:
                    result.health_before.append((step[0], step[1], self.health(docs)[0]))
                applied = time.time()
                self._apply(now)
                done += now
                last = i == len(steps) - 1
                waited = time.monotonic()
                try:
                    if last and not any(t.hook for t in now):
                        break  # "successful EVEN if those objects subsequently degrades"
                    if multi_step or any(t.hook for t in now):
                        self._wait(now, result, waiting_resources=multi_step)
                finally:
                    result.waves.append((step[0], step[1], [ref(t.obj) for t in now],
                                         applied, round(time.monotonic() - waited, 1)))
        except StillRunning as e:
            result.message = str(e)
        except SyncFailed as e:
            result.phase, result.message = "Failed", str(e)
            self._delete_hooks(done, "HookFailed")
        else:
            result.phase, result.message = "Succeeded", "successfully synced (all tasks run)"
            self._delete_hooks(done, "HookSucceeded")
        result.seconds = round(time.monotonic() - began, 1)
        self.history.append(result)
        return result

    def _apply(self, tasks: list[Task]) -> None:
        for t in tasks:
            if t.hook and "BeforeHookCreation" in delete_policies(t.obj) and self.live(t.obj):
                name = t.obj["metadata"]["name"]
                checked(self.cli.kubectl("delete", t.obj["kind"].lower(), name,
                                         "-n", self.namespace, "--wait=true"))
        path = self.cli.manifest(f"argo-{tasks[0].phase}-{tasks[0].wave}",
                                 [t.obj for t in tasks])
        res = self.cli.kubectl("apply", "-f", path, "-n", self.namespace)
        if res.returncode != 0:
            raise SyncFailed(f"one or more objects failed to apply: {res.stderr.strip()}")

    def _wait(self, tasks: list[Task], result: SyncResult, waiting_resources: bool) -> None:
        """Until every hook completed and (multi-step) every resource is Healthy; a
        Degraded one fails the sync."""
        deadline = time.monotonic() + self.wait_s
        pending = [t for t in tasks if t.hook or waiting_resources]
        while True:
            running = []
            for t in pending:
                live = self.live(t.obj)
                if live is None:
                    if t.hook and t.obj["kind"] in ("Job", "Pod"):
                        raise SyncFailed(f"{ref(t.obj)} is missing, it might have been deleted")
                    running.append(t)
                    continue
                got = health(live)
                state = "Healthy" if got is None else got[0]
                if t.hook and state in ("Unknown", "Degraded"):
                    result.hooks.append((t.phase, t.obj["metadata"]["name"], "Failed"))
                    raise SyncFailed(f"{ref(t.obj)} failed: {got[1] if got else ''}")
                if not t.hook and state == "Degraded":
                    raise SyncFailed(f"{ref(t.obj)} is Degraded: {got[1] if got else ''}")
                if state == "Healthy":
                    if t.hook and got is not None:  # hooks that run: Jobs, Pods
                        result.hooks.append((t.phase, t.obj["metadata"]["name"], "Succeeded"))
                else:
                    running.append(t)
            if not running:
                return
            pending = running
            if time.monotonic() > deadline:
                what = "completion of hook" if any(t.hook for t in running) \
                    else "healthy state of"
                more = f" and {len(running) - 1} more" if len(running) > 1 else ""
                raise StillRunning(f"waiting for {what} {ref(running[0].obj)}{more}")
            time.sleep(0.2)

    def _prune(self, docs: list[Obj]) -> list[str]:
        pruned = []
        for o in self._orphans(docs):
            ann = annotations_of(o)
            if ann.get("helm.sh/resource-policy") == "keep" or any(
                    opt in _csv(ann.get(ARGO_OPTIONS)) for opt in ("Prune=false",
                                                                     "Delete=false")):
                continue
            checked(self.cli.kubectl("delete", o["kind"].lower(), o["metadata"]["name"],
                                     "-n", self.namespace))
            pruned.append(ref(o))
        return pruned

    def _delete_hooks(self, tasks: list[Task], policy: str) -> None:
        seen = set()
        for t in tasks:
            key = (t.obj["kind"], t.obj["metadata"]["name"])
            if t.hook and key not in seen and policy in delete_policies(t.obj) \
                    and self.live(t.obj):
                seen.add(key)
                self.cli.kubectl("delete", key[0].lower(), key[1], "-n", self.namespace,
                                 "--ignore-not-found")


def _contained(want: Any, live: Any) -> bool:
    """Every field of `want` has the same value in `live` (lists element by element). A
    field rendered as null is left out: gitops-engine's diff first remarshals the rendered
    object through its Go type (pkg/diff/diff.go `remarshal`: "This will drop any omitempty
    fields"), so the chart's `rollingUpdate: null` is not a difference from a live
    StatefulSet without one."""
    if isinstance(want, dict):
        return isinstance(live, dict) and all(
            k in live and _contained(v, live[k]) for k, v in want.items()
            if k not in ("status",) and v is not None)
    if isinstance(want, list):
        return isinstance(live, list) and len(want) == len(live) and all(
            _contained(a, b) for a, b in zip(want, live, strict=True))
    if {type(want), type(live)} in ({int, str}, {float, str}):
        return str(want) == str(live)
    return bool(want == live)


# -- Flux -----------------------------------------------------------------------------------

# helm-controller defaults as helm CLI flags: HelmReleaseSpec.Timeout 5m0s, wait with the
# kstatus watcher (wait.go `getWaitStrategy`: StatusWatcherStrategy unless Helm 3 defaults),
# WaitForJobs (!DisableWaitForJobs), TakeOwnership (!DisableTakeOwnership), ResetValues
# (!PreserveValues), MaxHistory 5; no rollback on failure (remediation retries 0,
# RemediateLastFailure false).
FLUX_FLAGS = ("--install", "--wait=watcher", "--wait-for-jobs", "--timeout", "5m0s",
              "--take-ownership", "--reset-values", "--history-max", "5")


def flux_reconcile(cli: Cli, release: str, namespace: str, chart: Path, values: list[str]
                   ) -> subprocess.CompletedProcess[str]:
    """One HelmRelease reconcile that installs or upgrades: the real helm 4."""
    return cli.helm("upgrade", release, str(chart), "-n", namespace, *FLUX_FLAGS, *values)

