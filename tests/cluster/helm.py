"""`helm install`, `helm upgrade` and `helm test` of the cluster model, on rendered manifests.

What it models of Helm: hooks by event (`pre-install`, `post-install`, `pre-upgrade`,
`post-upgrade`, `test`) in weight order, hook Jobs waited for and failing the release when
they fail, `before-hook-creation` and `hook-succeeded` delete policies applied after every
hook of the event succeeded, `hook-failed` applied to the one hook that failed (as Helm
does); the release's objects applied between the pre and post hooks; the three-way merge
only for a StatefulSet's `spec.replicas` (a `kubectl scale` survives an upgrade that does
not change the chart's value).

What it leaves out: objects the model does not run are not applied (Deployments, Ingress,
HPA, PodDisruptionBudget, NetworkPolicy, PodMonitor, PersistentVolumeClaim: claims are
folders made on first use); objects dropped from a release are not deleted.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from tests.cluster.controllers import run_job
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
        if hook["kind"] == "Job":
            return run_job(self.store, hook)
        job = {"kind": "Job", "metadata": hook["metadata"],
               "spec": {"backoffLimit": 0, "template": {"metadata": hook["metadata"],
                                                        "spec": hook["spec"]}}}
        return run_job(self.store, job)

    def _apply(self, docs: list[Obj]) -> None:
        previous = {(d["kind"], d["metadata"]["name"]): d for d in self.applied}
        applied = []
        for doc in docs:
            if doc["kind"] not in APPLIED or HOOK in (doc["metadata"].get("annotations") or {}):
                continue
            doc = self._ns(doc)
            key = (doc["kind"], doc["metadata"]["name"])
            live = self.store.get(doc["kind"], self.namespace, doc["metadata"]["name"])
            scaled = doc["kind"] == "StatefulSet" and live is not None and key in previous
            if scaled and previous[key]["spec"].get("replicas") == doc["spec"].get("replicas"):
                doc["spec"]["replicas"] = live["spec"].get("replicas")  # three-way merge
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
