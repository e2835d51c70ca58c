"""The dataflow's process count comes from its StatefulSet's current replicas.

The chart renders a peer list for `dataflow.processes`, but `kubectl scale` changes the
replicas without touching the pod template. A Bytewax cluster must have exactly one
process per address, so at start-up each pod reads its StatefulSet's replicas and builds
the peer list from them, and while running it watches the StatefulSet: when the replica
count changes, the process restarts with the new count. The chart's Role allows get and
watch on that one StatefulSet, and delete on the StatefulSet's own pods by name, which
the same watch uses to replace a pod made from an older template (chatwax.kube.revision).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chatwax.core.errors import ConfigError
from chatwax.kube.api import describe

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


def ordinal(env: Mapping[str, str], target: Target) -> int | None:
    """This pod's ordinal, from its name (`<statefulset>-<ordinal>`), if it has one."""
    rest = env.get("BYTEWAX_POD_NAME", "").removeprefix(f"{target.statefulset}-")
    return int(rest) if rest.isdigit() else None


def check_ordinal(process_id: int, replicas: int) -> None:
    """A pod beyond the replica count is being removed: it must not join the cluster."""
    if process_id >= replicas:
        raise ConfigError(
            f"this pod is process {process_id} but the StatefulSet has {replicas} replicas"
        )


def env_with_replicas(env: Mapping[str, str], target: Target, replicas: int) -> dict[str, str]:
    """`env` with BYTEWAX_ADDRESSES rebuilt for the StatefulSet's current `replicas`.

    Apply it before the run spec is read from the environment: after `kubectl scale
    --replicas=3` the pod template still lists 2 peers, and the new pod 2 belongs in the
    cluster even though that list has no place for it. A pod beyond `replicas` (being
    removed) is refused. Without BYTEWAX_ADDRESSES (a hostfile), `env` is returned as is.
    """
    rendered = [a.strip() for a in env.get("BYTEWAX_ADDRESSES", "").split(";") if a.strip()]
    if not rendered:
        return dict(env)
    mine = ordinal(env, target)
    if mine is not None:
        check_ordinal(mine, replicas)
    addresses = addresses_for(rendered, target.statefulset, replicas)
    if len(addresses) != len(rendered):
        log.warning("StatefulSet %s has %d replicas, the pod template %d peers: using %d",
                    target.statefulset, replicas, len(rendered), replicas)
    return {**env, "BYTEWAX_ADDRESSES": ";".join(addresses)}


def apps_api(api_client: Any) -> Any:
    from kubernetes import client

    return client.AppsV1Api(api_client)


class ApiUnreachable(Exception):
    """The API did not answer (connection refused or reset, a timeout, a 5xx or 429): a
    condition that passes, unlike a refusal, which is a configuration error."""


def read_replicas(api: Any, target: Target, *, timeout_s: float = 5.0) -> int:
    """The StatefulSet's desired replicas: the process count the cluster must have."""
    return _replicas(read_statefulset(api, target, timeout_s=timeout_s))


def read_statefulset(api: Any, target: Target, *, timeout_s: float = 5.0) -> Any:
    """The StatefulSet (a V1StatefulSet); ConfigError when refused, ApiUnreachable when
    the API does not answer."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    where = f"StatefulSet {target.namespace}/{target.statefulset}"
    try:
        sts = api.read_namespaced_stateful_set(target.statefulset, target.namespace,
                                               _request_timeout=timeout_s)
    except ApiException as exc:
        if exc.status in (0, 429) or (exc.status or 0) >= 500:
            raise ApiUnreachable(f"cannot read {where}: {describe(exc)}") from None
        raise ConfigError(
            f"cannot read {where}: {describe(exc)}; the pod's ServiceAccount needs get and "
            "watch on it (the chart's dataflow Role, rbac.create)"
        ) from None
    except (HTTPError, OSError) as exc:
        raise ApiUnreachable(f"cannot read {where}: {type(exc).__name__}: {exc}") from None
    return sts


def replicas_or_rendered(
    api: Any, target: Target, rendered: int, *, timeout_s: float, wait_s: float,
    retry_s: float = 2.0,
) -> int:
    """The StatefulSet's replicas, or `rendered` (the peer list the chart rendered, from
    `dataflow.processes`) when the API stays unreachable for `wait_s`.

    A pod must not stay down because the API server is: the rendered list is right unless
    someone ran `kubectl scale`, and the watch started next restarts the process with the
    StatefulSet's count as soon as the API answers again.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return read_replicas(api, target, timeout_s=timeout_s)
        except ApiUnreachable as exc:
            if time.monotonic() + retry_s > deadline:
                log.warning("%s for %gs: forming the cluster from the rendered peer list "
                            "(%d processes)", exc, wait_s, rendered)
                return rendered
            log.info("%s; retrying in %gs", exc, retry_s)
            time.sleep(retry_s)


def _replicas(sts: Any) -> int:
    # The API server defaults spec.replicas to 1; be as lenient with a missing value.
    return int(sts.spec.replicas if sts.spec.replicas is not None else 1)


def status_current(sts: Any) -> bool:
    """The controller has written the status for the latest spec (observedGeneration has
    caught up with the generation, which the API server raises on every spec change)."""
    status = sts.status
    return status is not None and (status.observed_generation or 0) >= (
        sts.metadata.generation or 0)


def watch_replicas(
    api: Any, target: Target, current: int, on_change: Callable[[int], None],
    *, retry_s: float = 2.0, timeout_s: float = 5.0,
    replace: Callable[[Any], bool] | None = None,
) -> threading.Thread:
    """Call `on_change(new)` once the StatefulSet's replicas differ from `current`.

    `replace(sts)` sees every version first and ends the watch by returning True (this pod
    is being deleted to take a new template: chatwax.kube.revision). A version whose
    status the controller has not yet caught up with is passed over: its next status
    follows within moments, and a template change together with a new count (a new
    `dataflow.processes`) then replaces the pod once instead of also restarting it.
    Runs on a daemon thread. The API server ends watches now and then: the watch is
    re-opened, and as a new watch starts with the current object, no change is missed.
    Errors (API server restarts, a 410 Gone, a delete the API did not answer) are logged
    and retried every `retry_s`.
    """
    from kubernetes import watch

    def run() -> None:
        while True:
            opened = time.monotonic()
            try:
                # A watch restricted by resourceNames must select that one name.
                for event in watch.Watch().stream(
                    api.list_namespaced_stateful_set, target.namespace,
                    field_selector=f"metadata.name={target.statefulset}", timeout_seconds=300,
                    # connect within timeout_s; a watch silent past the server's own end
                    # is a dead connection, to re-open.
                    _request_timeout=(timeout_s, 300 + 30),
                ):
                    if event["type"] not in ("ADDED", "MODIFIED"):
                        continue
                    sts = event["object"]
                    if replace is not None and replace(sts):
                        return
                    if sts.status is not None and not status_current(sts):
                        continue
                    replicas = _replicas(sts)
                    if replicas != current:
                        log.warning("StatefulSet %s now has %d replicas (was %d): restarting",
                                    target.statefulset, replicas, current)
                        on_change(replicas)
                        return
            except Exception as exc:  # noqa: BLE001 - whatever failed, the watch must go on
                log.warning("watching StatefulSet %s failed (%s: %s); retrying in %gs",
                            target.statefulset, type(exc).__name__, str(exc)[:200], retry_s)
                time.sleep(retry_s)
                continue
            if time.monotonic() - opened < 1.0:  # closed at once: do not spin
                time.sleep(retry_s)

    thread = threading.Thread(target=run, name="chatwax-k8s-watch", daemon=True)
    thread.start()
    return thread
