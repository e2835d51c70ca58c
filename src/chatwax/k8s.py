"""Kubernetes: the process count comes from the dataflow StatefulSet's current replicas.

The chart renders a peer list for `dataflow.processes`, but `kubectl scale` changes the
replicas without touching the pod template. A Bytewax cluster must have exactly one
process per address, so at start-up each pod reads its StatefulSet's replicas and builds
the peer list from them, and while running it watches the StatefulSet: when the replica
count changes, the pod exits so that it restarts with the new count. Only this module
talks to the API server (a Role allows get/list/watch on that one StatefulSet).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chatwax.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    namespace: str
    statefulset: str


def target_from_env(env: Mapping[str, str]) -> Target | None:
    """Kubernetes mode is on when the pod knows its namespace and its StatefulSet."""
    namespace, sts = env.get("CHATWAX_K8S_NAMESPACE"), env.get("BYTEWAX_STATEFULSET_NAME")
    if namespace and sts:
        return Target(namespace, sts)
    return None


def addresses_for(rendered: list[str], statefulset: str, replicas: int) -> list[str]:
    """The peer list for `replicas` pods, following the naming of the rendered list.

    `<sts>-0.<headless>...:port` becomes `<sts>-<i>.<headless>...:port` for each ordinal.
    """
    if not rendered:
        raise ConfigError("no rendered peer address to follow (BYTEWAX_ADDRESSES)")
    pattern = re.compile(rf"^{re.escape(statefulset)}-\d+(?=[.:])")
    if not pattern.match(rendered[0]):
        raise ConfigError(f"peer address {rendered[0]!r} does not start with '{statefulset}-N'")
    return [pattern.sub(f"{statefulset}-{i}", rendered[0]) for i in range(replicas)]


def check_ordinal(process_id: int, replicas: int) -> None:
    """A pod beyond the replica count is being removed: it must not join the cluster."""
    if process_id >= replicas:
        raise ConfigError(
            f"this pod is process {process_id} but the StatefulSet has {replicas} replicas"
        )


def apps_api() -> Any:
    """AppsV1Api from the pod's service account (in-cluster configuration)."""
    from kubernetes import client, config

    config.load_incluster_config()
    return client.AppsV1Api()


def read_replicas(api: Any, target: Target) -> int:
    sts = api.read_namespaced_stateful_set(target.statefulset, target.namespace)
    return int(sts.spec.replicas if sts.spec.replicas is not None else 1)


def watch_replicas(
    api: Any, target: Target, current: int, on_change: Callable[[int], None]
) -> threading.Thread:
    """Call `on_change(new)` once the StatefulSet's replicas differ from `current`.

    Runs on a daemon thread and re-opens the watch when the API server closes it.
    """
    from kubernetes import watch

    def run() -> None:
        while True:
            try:
                w = watch.Watch()
                for event in w.stream(
                    api.list_namespaced_stateful_set, target.namespace,
                    field_selector=f"metadata.name={target.statefulset}", timeout_seconds=300,
                ):
                    obj = event["object"]
                    replicas = obj.spec.replicas if obj.spec.replicas is not None else 1
                    if event["type"] in ("ADDED", "MODIFIED") and replicas != current:
                        log.warning("StatefulSet %s now has %d replicas (was %d): restarting",
                                    target.statefulset, replicas, current)
                        on_change(int(replicas))
                        return
            except Exception:
                log.warning("watching StatefulSet %s failed; retrying", target.statefulset,
                            exc_info=True)
                threading.Event().wait(2.0)

    thread = threading.Thread(target=run, name="chatwax-k8s-watch", daemon=True)
    thread.start()
    return thread
