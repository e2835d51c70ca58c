"""Restart the dataflow's pods together after its pod template changed (`chatwax kube rollout`).

A Bytewax cluster cannot lose or gain a member while it runs: when one process goes, the
others stop and the cluster re-forms. Kubernetes' RollingUpdate replaces one pod at a time
and waits for each to be Ready, so an upgrade of N pods would tear the cluster down N times.
The chart therefore gives the dataflow StatefulSet the OnDelete strategy (a template change
replaces nothing by itself) and runs this command as a post-upgrade hook: if any pod is not
on the StatefulSet's update revision, every pod is deleted at once, the controller recreates
them from the new template, and the cluster re-forms once.

The hook's Role allows `get` on the one StatefulSet and `list` and `delete` on pods.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chatwax.core.errors import ConfigError
from chatwax.kube.api import describe

log = logging.getLogger(__name__)

REVISION_LABEL = "controller-revision-hash"


@dataclass(frozen=True, slots=True)
class Pod:
    name: str
    revision: str | None
    ready: bool
    deleting: bool


def stale(pods: Sequence[Pod], update_revision: str) -> list[str]:
    """The pods that still run an older template."""
    return [p.name for p in pods if p.revision != update_revision]


def settled(pods: Sequence[Pod], replicas: int, update_revision: str) -> bool:
    """Every wanted pod exists, runs the update revision and is Ready."""
    live = [p for p in pods if not p.deleting]
    return (len(live) == replicas and not stale(live, update_revision)
            and all(p.ready for p in live))


def _pod(obj: Any) -> Pod:
    conditions = (obj.status.conditions or []) if obj.status else []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    labels = obj.metadata.labels or {}
    return Pod(obj.metadata.name, labels.get(REVISION_LABEL), ready,
               obj.metadata.deletion_timestamp is not None)


def _selector(sts: Any) -> str:
    labels = sts.spec.selector.match_labels or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


@dataclass(frozen=True, slots=True)
class Outcome:
    restarted: list[str]
    update_revision: str
    waited_s: float


class Rollout:
    """One StatefulSet, read and restarted through the given API clients."""

    def __init__(self, api_client: Any, namespace: str, statefulset: str,
                 poll_s: float = 1.0) -> None:
        from kubernetes import client

        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.statefulset = statefulset
        self.poll_s = poll_s

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            raise ConfigError(f"cannot {what}: {describe(exc)}") from None

    def observed(self, deadline: float) -> Any:
        """The StatefulSet once its controller has seen its latest spec."""
        while True:
            sts = self._call(f"read StatefulSet {self.namespace}/{self.statefulset}",
                             self.apps.read_namespaced_stateful_set, self.statefulset,
                             self.namespace)
            status = sts.status
            if (status is not None and status.update_revision
                    and (status.observed_generation or 0) >= (sts.metadata.generation or 0)):
                return sts
            if time.monotonic() > deadline:
                raise TimeoutError("the StatefulSet controller did not observe the new spec")
            time.sleep(self.poll_s)

    def pods(self, sts: Any) -> list[Pod]:
        found = self._call(f"list the pods of {self.statefulset}",
                           self.core.list_namespaced_pod, self.namespace,
                           label_selector=_selector(sts))
        return [_pod(p) for p in found.items]

    def run(self, timeout_s: float, wait: bool) -> Outcome:
        started = time.monotonic()
        deadline = started + timeout_s
        sts = self.observed(deadline)
        revision = sts.status.update_revision
        pods = self.pods(sts)
        restarted: list[str] = []
        if stale(pods, revision):
            # All of them: a cluster with one new pod re-forms anyway, so one restart is
            # the least there can be.
            restarted = [p.name for p in pods if not p.deleting]
            log.info("pods on an older revision: %s; restarting all %d pods of %s together",
                     ", ".join(stale(pods, revision)), len(restarted), self.statefulset)
            for name in restarted:
                self._call(f"delete pod {name}", self.core.delete_namespaced_pod, name,
                           self.namespace)
        else:
            log.info("every pod of %s runs revision %s: nothing to restart",
                     self.statefulset, revision)
        if wait:
            replicas = sts.spec.replicas if sts.spec.replicas is not None else 1
            while not settled(self.pods(sts), replicas, revision):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.statefulset} did not become ready on revision "
                                       f"{revision} within {timeout_s:g}s")
                time.sleep(self.poll_s)
            log.info("%s: %d pods ready on revision %s", self.statefulset, replicas, revision)
        return Outcome(restarted, revision, time.monotonic() - started)
