"""`helm install`, `helm upgrade` and `helm test` of the cluster model, on rendered manifests.

What it models of Helm: hooks by event (`pre-install`, `post-install`, `pre-upgrade`,
`post-upgrade`, `test`) in weight order, hook Jobs (run by the model's Job controller) and
hook Pods waited for and failing the release when they fail, `before-hook-creation` and
`hook-succeeded` delete policies applied after every hook of the event succeeded,
`hook-failed` applied to the one hook that failed (as Helm does); the release's objects
applied between the pre and post hooks, each object as the manifest says: a StatefulSet
scaled with `kubectl scale` gets the chart's `spec.replicas` back, as helm 3's three-way
strategic merge patch sets it (the live count differs from the manifest's), which
tests/cluster/test_real_tools.py shows with the real helm v3.17 against the stand-in. (helm
4's server-side apply instead fails such an upgrade with a conflict on `.spec.replicas`,
owned by "kubectl" through the scale subresource, unless `--force-conflicts`: that case is
only in test_real_tools.py.)

What it leaves out: objects the model does not run are not applied (Deployments, Ingress,
HPA, PodDisruptionBudget, NetworkPolicy, PodMonitor, PersistentVolumeClaim: claims are
folders made on first use); objects dropped from a release are not deleted.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from tests.cluster.controllers import wait_job, wait_pod
from tests.support.apiserver import Obj, Store

APPLIED = {"ConfigMap", "Secret", "Service", "ServiceAccount", "Role", "RoleBinding",
           "StatefulSet"}
HOOK = "helm.sh/hook"


class HookFailed(RuntimeError):
    pass


def hooks_of(docs: list[Obj], event: str) -> list[Obj]:
    found = [d for d in docs if event in
             (d["metadata"].get("annotations") or {}).get(HOOK, "").split(",")]
    return sorted(found, key=lambda d: int(d["metadata"]["annotations"].get(
        "helm.sh/hook-weight", "0")))


class Helm:
    def __init__(self, store: Store, namespace: str) -> None:
        self.store = store
        self.namespace = namespace
        self.applied: list[Obj] = []
        self.hook_runs: list[tuple[str, str, bool]] = []

    def _ns(self, doc: Obj) -> Obj:
        doc = copy.deepcopy(doc)
        doc["metadata"].setdefault("namespace", self.namespace)
        return doc

    def _hooks(self, docs: list[Obj], event: str,
               run: Callable[[Obj], bool] | None = None) -> None:
        made: list[Obj] = []
        for hook in hooks_of(docs, event):
            hook = self._ns(hook)
            meta = hook["metadata"]
            policy = meta["annotations"].get("helm.sh/hook-delete-policy",
                                             "before-hook-creation")
            if "before-hook-creation" in policy:
                self.store.remove(hook["kind"], meta["namespace"], meta["name"])
            self.store.put(hook)
            made.append(hook)
            if hook["kind"] in ("Job", "Pod"):
                ok = (run or self._run)(hook)
                self.hook_runs.append((event, meta["name"], ok))
                if not ok:  # Helm applies hook-failed to the hook that failed, only
                    if "hook-failed" in policy:
                        self.store.remove(hook["kind"], meta["namespace"], meta["name"])
                    raise HookFailed(f"{event} hook {meta['name']} failed")
        for hook in made:
            policy = hook["metadata"]["annotations"].get("helm.sh/hook-delete-policy", "")
            if "hook-succeeded" in policy:
                self.store.remove(hook["kind"], hook["metadata"]["namespace"],
                                  hook["metadata"]["name"])

    def _run(self, hook: Obj) -> bool:
        """Wait for the hook as Helm does: a Job's Complete or Failed condition (the
        model's Job controller runs it), a Pod's Succeeded or Failed phase."""
        if hook["kind"] == "Job":
            return wait_job(self.store, hook)
        return wait_pod(self.store, hook)

    def _apply(self, docs: list[Obj]) -> None:
        applied = []
        for doc in docs:
            if doc["kind"] not in APPLIED or HOOK in (doc["metadata"].get("annotations") or {}):
                continue
            doc = self._ns(doc)
            self.store.put(doc)
            applied.append(doc)
        self.applied = applied

    def install(self, docs: list[Obj]) -> None:
        self._hooks(docs, "pre-install")
        self._apply(docs)
        self._hooks(docs, "post-install")

    def upgrade(self, docs: list[Obj]) -> None:
        self._hooks(docs, "pre-upgrade")
        self._apply(docs)
        self._hooks(docs, "post-upgrade")

    def test(self, docs: list[Obj], run: Callable[[Obj], bool] | None = None) -> None:
        self._hooks(docs, "test", run)


def edit(docs: list[Obj], kind: str, suffix: str, change: Callable[[Obj], Any]) -> list[Obj]:
    """A copy of a render with one object changed (what a values change would render)."""
    out = copy.deepcopy(docs)
    for d in out:
        if d["kind"] == kind and d["metadata"]["name"].endswith(suffix):
            change(d)
    return out
