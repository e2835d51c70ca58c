"""The control plane of the cluster model: the StatefulSet controller, the Job controller
(JobController, below) and cluster DNS.

StatefulSet controller (what it models, from the Kubernetes documentation):
- pods `<set>-<ordinal>` for ordinals 0..replicas-1, labelled with the template's labels,
  `controller-revision-hash` (a hash of the pod template) and
  `statefulset.kubernetes.io/pod-name`, owned by the StatefulSet (ownerReferences, so the
  garbage collector deletes them with it); hostname and subdomain set from the governing
  Service, claims of volumeClaimTemplates named `<claim>-<pod>` and kept across
  replacements;
- `podManagementPolicy`: Parallel creates and deletes every pod needed at once;
  OrderedReady creates the lowest missing ordinal once all lower ones are Running and
  Ready, and deletes the highest ordinal first, one at a time;
- `updateStrategy`: RollingUpdate deletes the highest ordinal that runs an older revision
  (at or above `rollingUpdate.partition`), and waits for every pod to be Running and Ready
  before it takes the next; OnDelete replaces nothing: a pod deleted by someone comes back
  on the update revision;
- status: replicas, readyReplicas, currentReplicas, updatedReplicas, observedGeneration,
  currentRevision, updateRevision.

Cluster DNS: a ClusterIP Service's name resolves to a Ready pod it selects (the model has
no virtual IPs); a headless Service gives each selected pod with that subdomain a record
`<hostname>.<service>.<namespace>.svc.<domain>` once the pod has an IP (all pods with
`publishNotReadyAddresses`, else Ready pods only). Records appear `dns_delay_s` after the
change, as endpoints and DNS caches lag in a cluster.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.cluster.network import Network
from tests.support.apiserver import Obj, Store, now_rfc3339

log = logging.getLogger("cluster.controllers")


def revision(sts: Obj) -> str:
    digest = hashlib.sha256(json.dumps(sts["spec"]["template"], sort_keys=True).encode())
    return f"{sts['metadata']['name']}-{digest.hexdigest()[:10]}"


def ordinal_of(pod: Obj, sts_name: str) -> int | None:
    rest = pod["metadata"]["name"].removeprefix(f"{sts_name}-")
    return int(rest) if rest.isdigit() else None


def is_ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return (pod.get("status") or {}).get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions)


class Loop:
    """A reconcile loop on a thread, woken by store events (and every `period_s`)."""

    def __init__(self, store: Store, name: str, period_s: float = 0.5) -> None:
        self.store = store
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.period_s = period_s
        store.listeners.append(lambda event: self.wake.set())
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.wake.wait(self.period_s)
            self.wake.clear()
            try:
                self.reconcile()
            except Exception:
                log.exception("%s failed", self._thread.name)

    def reconcile(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stop.set()
        self.wake.set()
        self._thread.join(5)


class StatefulSetController(Loop):
    def __init__(self, store: Store) -> None:
        super().__init__(store, "statefulset-controller")
        self.actions: list[tuple[float, str, str]] = []

    def reconcile(self) -> None:
        for sts in self.store.list("StatefulSet"):
            self._one(sts)

    def _one(self, sts: Obj) -> None:
        ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
        spec = sts["spec"]
        rev = revision(sts)
        replicas = spec.get("replicas", 1)
        selector = spec["selector"]["matchLabels"]
        pods = {ordinal_of(p, name): p for p in self.store.list("Pod", ns, selector)}
        pods.pop(None, None)
        parallel = spec.get("podManagementPolicy", "OrderedReady") == "Parallel"
        live = {o: p for o, p in pods.items() if not p["metadata"].get("deletionTimestamp")}
        # Scale down: highest ordinal first.
        extra = sorted((o for o in live if o >= replicas), reverse=True)
        if extra:
            if parallel:
                for o in extra:
                    self._delete(ns, live[o], "scale down")
            elif all(is_ready(live[o]) for o in live if o < replicas):
                self._delete(ns, live[extra[0]], "scale down")
        # Scale up, and recreate deleted pods.
        missing = [o for o in range(replicas) if o not in pods]
        for o in missing:
            if parallel or all(o2 in live and is_ready(live[o2]) for o2 in range(o)):
                self._create(sts, o, rev)
                if not parallel:
                    break
        # Updates.
        strategy = spec.get("updateStrategy", {"type": "RollingUpdate"})
        if strategy.get("type", "RollingUpdate") == "RollingUpdate" and not missing and \
                len(live) >= replicas and all(is_ready(p) for p in live.values()):
            partition = (strategy.get("rollingUpdate") or {}).get("partition", 0)
            stale = sorted((o for o, p in live.items() if partition <= o < replicas and
                            p["metadata"]["labels"].get("controller-revision-hash") != rev),
                           reverse=True)
            if stale:
                self._delete(ns, live[stale[0]], "rolling update")
        self._status(sts, rev, list(live.values()))

    def _create(self, sts: Obj, o: int, rev: str) -> None:
        ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
        template = copy.deepcopy(sts["spec"]["template"])
        pod_name = f"{name}-{o}"
        meta = template.get("metadata", {})
        labels = {**meta.get("labels", {}), "controller-revision-hash": rev,
                  "statefulset.kubernetes.io/pod-name": pod_name,
                  "apps.kubernetes.io/pod-index": str(o)}
        spec = template["spec"]
        spec["hostname"] = pod_name
        spec["subdomain"] = sts["spec"].get("serviceName", "")
        for claim in sts["spec"].get("volumeClaimTemplates", []):
            spec.setdefault("volumes", []).append({
                "name": claim["metadata"]["name"],
                "persistentVolumeClaim": {"claimName": f"{claim['metadata']['name']}-{pod_name}"}})
        owner = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name,
                 "uid": sts["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
        self.store.put({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": pod_name, "namespace": ns, "labels": labels,
                                     "annotations": meta.get("annotations", {}),
                                     "ownerReferences": [owner]},
                        "spec": spec})
        self.actions.append((time.time(), "create", pod_name))

    def _delete(self, ns: str, pod: Obj, why: str) -> None:
        self.store.request_delete("Pod", ns, pod["metadata"]["name"])
        self.actions.append((time.time(), f"delete ({why})", pod["metadata"]["name"]))

    def _status(self, sts: Obj, rev: str, live: list[Obj]) -> None:
        updated = [p for p in live
                   if p["metadata"]["labels"].get("controller-revision-hash") == rev]
        old = sts.get("status") or {}
        status = {
            "replicas": len(live), "readyReplicas": sum(is_ready(p) for p in live),
            "currentReplicas": len(live) - len(updated) if len(updated) < len(live)
            else len(live),
            "updatedReplicas": len(updated),
            "observedGeneration": sts["metadata"].get("generation", 1),
            "updateRevision": rev,
            "currentRevision": rev if len(updated) == len(live) else old.get(
                "currentRevision", rev),
        }
        if status != old:
            self.store.update("StatefulSet", sts["metadata"]["namespace"],
                              sts["metadata"]["name"], lambda o: o.__setitem__("status", status))


class Dns(Loop):
    """Keeps the hosts file every pod reads in line with Services and pods."""

    def __init__(self, store: Store, network: Network, domain: str = "cluster.local",
                 delay_s: float = 1.0, static: dict[str, str] | None = None) -> None:
        super().__init__(store, "cluster-dns", period_s=0.2)
        self.network = network
        self.domain = domain
        self.delay_s = delay_s
        self.static = dict(static or {})
        self._pending: list[tuple[float, dict[str, str]]] = []

    def wanted(self) -> dict[str, str]:
        names = dict(self.static)
        for svc in self.store.list("Service"):
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            selector = svc["spec"].get("selector")
            if not selector:
                continue
            pods = [p for p in self.store.list("Pod", ns, selector)
                    if (p.get("status") or {}).get("podIP")
                    and not p["metadata"].get("deletionTimestamp")]
            fqdn = f"{name}.{ns}.svc.{self.domain}"
            if svc["spec"].get("clusterIP") == "None":
                publish = svc["spec"].get("publishNotReadyAddresses", False)
                for p in pods:
                    if p["spec"].get("subdomain") == name and (publish or is_ready(p)):
                        names[f"{p['spec']['hostname']}.{fqdn}"] = p["status"]["podIP"]
            else:
                ready = [p for p in pods if is_ready(p)]
                if ready:
                    names[fqdn] = ready[0]["status"]["podIP"]
        return names

    def reconcile(self) -> None:
        now = time.monotonic()
        want = self.wanted()
        if not self._pending or self._pending[-1][1] != want:
            self._pending.append((now + self.delay_s, want))
        while self._pending and self._pending[0][0] <= now:
            self.network.set_names(self._pending.pop(0)[1])


JOB_BACKOFF_CAP_S = 360.0


def job_finished(job: Obj) -> str | None:
    """"Complete" or "Failed" once the Job controller has decided, else None."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


class JobController(Loop):
    """The Job controller, for Jobs that run one pod to completion (what Helm hooks are):
    every Job in the store gets a pod `<job>-<5 characters>` from its template, labelled
    `job-name`, `batch.kubernetes.io/job-name`, `controller-uid` and
    `batch.kubernetes.io/controller-uid` and owned by the Job (so deleting the Job deletes
    its pods); a failed pod (restartPolicy Never) is replaced after the back-off (10 s,
    doubling, capped at 6 minutes) until `backoffLimit` failures; `activeDeadlineSeconds`
    ends it. Status as the real controller writes it (Kubernetes 1.31+): startTime, active,
    ready, succeeded, failed, terminating, and the conditions SuccessCriteriaMet then
    Complete (reason CompletionsReached), or FailureTarget then Failed (reasons
    BackoffLimitExceeded, DeadlineExceeded), with completionTime on success. Finished pods
    stay (as "Completed") until the Job is deleted.

    Left out: completions and parallelism above 1, indexed Jobs, podFailurePolicy,
    successPolicy, suspend, ttlSecondsAfterFinished, and failures counted from container
    restarts with restartPolicy OnFailure (the kubelet restarts the container in place and
    the Job waits for the pod to succeed).
    """

    def __init__(self, store: Store, backoff_s: float = 10.0) -> None:
        super().__init__(store, "job-controller")
        self.backoff_s = backoff_s
        self._running: dict[str, threading.Thread] = {}
        self.runs: list[tuple[float, str, str]] = []  # (time, job, "Complete" | "Failed")

    def reconcile(self) -> None:
        for job in self.store.list("Job"):
            uid = job["metadata"]["uid"]
            if uid in self._running or job_finished(job) or (job["spec"] or {}).get("suspend"):
                continue
            thread = threading.Thread(target=self._execute, args=(job,), daemon=True,
                                      name=f"job-{job['metadata']['name']}")
            self._running[uid] = thread
            thread.start()

    def _current(self, job: Obj) -> Obj | None:
        meta = job["metadata"]
        now = self.store.get("Job", meta["namespace"], meta["name"])
        return now if now and now["metadata"]["uid"] == meta["uid"] else None

    def _status(self, job: Obj, **changes: Any) -> bool:
        meta = job["metadata"]
        if self._current(job) is None:
            return False
        try:
            self.store.update("Job", meta["namespace"], meta["name"], lambda o: o.update(
                status={**(o.get("status") or {}), **changes}))
        except KeyError:
            return False
        return True

    def _pod(self, job: Obj) -> str:
        meta, spec = job["metadata"], job["spec"]
        template = copy.deepcopy(spec["template"])
        name = f"{meta['name']}-{secrets.token_hex(3)[:5]}"
        uid = meta["uid"]
        labels = {**(template.get("metadata") or {}).get("labels", {}),
                  "batch.kubernetes.io/controller-uid": uid,
                  "batch.kubernetes.io/job-name": meta["name"], "controller-uid": uid,
                  "job-name": meta["name"]}
        self.store.put({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name, "namespace": meta["namespace"], "labels": labels,
            "annotations": (template.get("metadata") or {}).get("annotations", {}),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                 "uid": uid, "controller": True,
                                 "blockOwnerDeletion": True}]},
            "spec": template["spec"]})
        return name

    def _conditions(self, kinds: tuple[str, str], reason: str, message: str) -> list[Obj]:
        now = now_rfc3339()
        return [{"type": k, "status": "True", "reason": reason, "message": message,
                 "lastProbeTime": now, "lastTransitionTime": now} for k in kinds]

    def _execute(self, job: Obj) -> None:
        ns = job["metadata"]["namespace"]
        spec = job["spec"]
        backoff_limit = int(spec.get("backoffLimit", 6))
        started = time.monotonic()
        deadline = started + float(spec.get("activeDeadlineSeconds") or 1e9)
        failed = 0
        self._status(job, startTime=now_rfc3339(), active=0, ready=0, terminating=0)
        outcome: tuple[str, str, str] | None = None
        while outcome is None and not self.stop.is_set():
            pod = self._pod(job)
            if not self._status(job, active=1):
                return
            phase, ready_reported = None, 0
            while time.monotonic() < deadline and not self.stop.is_set():
                if self._current(job) is None:
                    return
                obj = self.store.get("Pod", ns, pod)
                status = (obj or {}).get("status") or {}
                phase = status.get("phase")
                if phase in ("Succeeded", "Failed") or obj is None:
                    break
                ready = int(is_ready(obj))
                if ready != ready_reported:
                    ready_reported = ready
                    self._status(job, ready=ready)
                time.sleep(0.2)
            if phase == "Succeeded":
                outcome = ("Complete", "CompletionsReached", "Reached expected number of "
                                                             "succeeded pods")
                self._status(job, active=0, ready=0, succeeded=1,
                             completionTime=now_rfc3339(),
                             conditions=self._conditions(("SuccessCriteriaMet", "Complete"),
                                                         *outcome[1:]))
                break
            if time.monotonic() >= deadline:
                self.store.request_delete("Pod", ns, pod)
                outcome = ("Failed", "DeadlineExceeded", "Job was active longer than "
                                                         "specified deadline")
                self._status(job, active=0, ready=0, failed=failed + 1,
                             conditions=self._conditions(("FailureTarget", "Failed"),
                                                         *outcome[1:]))
                break
            failed += 1
            self._status(job, active=0, ready=0, failed=failed)
            if failed > backoff_limit:
                outcome = ("Failed", "BackoffLimitExceeded", "Job has reached the specified "
                                                             "backoff limit")
                self._status(job, conditions=self._conditions(("FailureTarget", "Failed"),
                                                              *outcome[1:]))
                break
            delay = min(self.backoff_s * 2 ** (failed - 1), JOB_BACKOFF_CAP_S)
            if self.stop.wait(min(delay, max(0.0, deadline - time.monotonic()))):
                return
        if outcome is not None:
            self.runs.append((time.time(), job["metadata"]["name"], outcome[0]))


def wait_job(store: Store, job: Obj, timeout_s: float = 600) -> bool:
    """What Helm does after creating a hook Job: wait for the Job controller's Complete
    (True) or Failed (False) condition; a Job deleted meanwhile counts as done."""
    meta = job["metadata"]

    def outcome() -> str | None:
        now = store.get("Job", meta["namespace"], meta["name"])
        if now is None:
            return "Complete"
        return job_finished(now)

    return settle(outcome, timeout_s, f"Job {meta['name']} finishing") == "Complete"


def wait_pod(store: Store, pod: Obj, timeout_s: float = 600) -> bool:
    """What Helm does after creating a hook Pod: wait for phase Succeeded or Failed."""
    meta = pod["metadata"]

    def phase() -> str | None:
        now = store.get("Pod", meta["namespace"], meta["name"])
        if now is None:
            return "Succeeded"
        got = (now.get("status") or {}).get("phase")
        return got if got in ("Succeeded", "Failed") else None

    return settle(phase, timeout_s, f"Pod {meta['name']} finishing") == "Succeeded"


def settle(check: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.2) -> Any:
    """Wait until `check()` returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s:g}s")
        time.sleep(poll_s)
