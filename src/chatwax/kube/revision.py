"""A dataflow pod made from an older pod template deletes itself, so that a new template
restarts the Bytewax cluster exactly once, whoever applied it (Helm, Argo CD, Flux,
`kubectl apply`, `kubectl rollout restart`), with no hook to wait for.

The StatefulSet uses OnDelete: a new template replaces no pod by itself, and a Bytewax
cluster cannot swap its members one at a time. Each pod knows the revision it was made
from (CHATWAX_POD_REVISION: the downward API's `controller-revision-hash` label) and
already watches its StatefulSet for the replica count. Once the controller has observed
the latest spec (`status.observedGeneration >= metadata.generation`) and names another
`status.updateRevision`, the pod deletes itself and the controller recreates it from the
new template. Every pod on the old revision sees the same watch event, so they go
together and the cluster re-forms once. A crash-looping pod does this at its next start,
before it reads its settings: a dataflow that never became Ready still gets the fix.

Upstream (kubernetes/kubernetes pkg/controller/statefulset): the controller labels each
pod it creates with the ControllerRevision it was made from (stateful_set_utils.go
`newVersionedStatefulSetPod`, `setPodRevision`: label `controller-revision-hash`), reports
the revision of the current template as `status.updateRevision` together with
`status.observedGeneration` (stateful_set_control.go `updateStatefulSetStatus` after
`computeReplicaStatus`), and under OnDelete recreates a deleted pod on the update revision.
The chart's Role allows `delete` on the pods `<statefulset>-0` to `-(M-1)` by name only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chatwax.kube.api import describe
from chatwax.kube.replicas import ApiUnreachable, status_current

log = logging.getLogger(__name__)

REVISION_ENV = "CHATWAX_POD_REVISION"


def should_replace(own: str | None, sts: Any) -> bool:
    """This pod runs an older template than its StatefulSet's current one.

    Only a status the controller wrote for the latest spec counts: a stale one may still
    name the revision this pod is leaving, or the one a just-created pod already runs.
    A pod that does not know its revision never acts.
    """
    if not own or not status_current(sts):
        return False
    update = sts.status.update_revision
    return bool(update) and update != own


@dataclass(frozen=True, slots=True)
class Self:
    namespace: str
    pod: str
    revision: str


def self_from_env(env: Mapping[str, str]) -> Self | None:
    """This pod's namespace, name and revision, when the chart gave it all three."""
    namespace, pod = env.get("CHATWAX_K8S_NAMESPACE"), env.get("BYTEWAX_POD_NAME")
    revision = env.get(REVISION_ENV)
    if namespace and pod and revision:
        return Self(namespace, pod, revision)
    return None


def core_api(api_client: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api_client)


def delete_self(core: Any, me: Self, update_revision: str, *, timeout_s: float = 5.0) -> bool:
    """Delete this pod so the controller recreates it from `update_revision`.

    False when the API refuses (logged with the reason: the pod carries on with its old
    template); ApiUnreachable when it does not answer (the watch retries).
    """
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    where = f"pod {me.namespace}/{me.pod}"
    # Said before the request: the kubelet's SIGTERM can end the process before the
    # answer arrives.
    log.warning("%s runs revision %s, its StatefulSet's template is %s: deleting itself to "
                "be recreated from the new template", where, me.revision, update_revision)
    try:
        core.delete_namespaced_pod(me.pod, me.namespace, _request_timeout=timeout_s)
    except ApiException as exc:
        if exc.status in (0, 429) or (exc.status or 0) >= 500:
            raise ApiUnreachable(f"cannot delete {where}: {describe(exc)}") from None
        if exc.status == 404:  # already gone: someone else deleted it
            return True
        log.error(
            "cannot delete %s to take the new template: %s. The chart's Role lets the "
            "dataflow delete its pods <statefulset>-0 to -(M-1) only, M = max("
            "dataflow.processes, dataflow.replicaLookup.maxProcesses); this pod keeps the "
            "old template until deleted by hand (kubectl delete pod %s -n %s)",
            where, describe(exc), me.pod, me.namespace)
        return False
    except (HTTPError, OSError) as exc:
        raise ApiUnreachable(f"cannot delete {where}: {type(exc).__name__}: {exc}") from None
    return True


def replacer(core: Any, me: Self, *, timeout_s: float = 5.0) -> Callable[[Any], bool]:
    """For the StatefulSet watch: called with each version of the StatefulSet, True once
    this pod is being deleted. A refused delete is tried once per update revision, not
    on every event."""
    refused: str | None = None

    def replace(sts: Any) -> bool:
        nonlocal refused
        if not should_replace(me.revision, sts) or sts.status.update_revision == refused:
            return False
        if delete_self(core, me, sts.status.update_revision, timeout_s=timeout_s):
            return True
        refused = sts.status.update_revision
        return False

    return replace
