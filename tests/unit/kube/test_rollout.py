"""`chatwax kube rollout`: which pods are stale, and that all of them go together; the real
`kubernetes` client against the API server stand-in. The cluster model
(tests/cluster/) runs the command as the chart's hook, against pods that really restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chatwax.core.errors import ConfigError
from chatwax.kube.rollout import Pod, Rollout, settled, stale
from tests.support.apiserver import ApiServer

NS, STS = "chat", "rel-chatwax-dataflow"
LABELS = {"app.kubernetes.io/component": "dataflow"}


def pod(i: int, revision: str, ready: bool = True) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{STS}-{i}", "namespace": NS,
                         "labels": {**LABELS, "controller-revision-hash": revision}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"conditions": [{"type": "Ready", "status": str(ready)}]}}


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    server = ApiServer()
    server.store.put({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": STS, "namespace": NS},
        "spec": {"replicas": 3, "selector": {"matchLabels": LABELS}, "template": {}},
        "status": {"replicas": 3, "observedGeneration": 1, "updateRevision": f"{STS}-new"}})
    try:
        yield server
    finally:
        server.close()


def test_stale_pods_are_those_on_another_revision() -> None:
    pods = [Pod("p-0", "new", True, False), Pod("p-1", "old", True, False),
            Pod("p-2", None, False, False)]
    assert stale(pods, "new") == ["p-1", "p-2"]
    assert not settled(pods, 3, "new")
    fresh = [Pod(f"p-{i}", "new", True, False) for i in range(3)]
    assert settled(fresh, 3, "new")
    assert not settled(fresh[:2], 3, "new")  # one still missing
    assert not settled([*fresh[:2], Pod("p-2", "new", False, False)], 3, "new")
    assert settled([*fresh, Pod("p-3", "new", True, True)], 3, "new")  # one on its way out


def test_one_stale_pod_restarts_every_pod_at_once(apiserver: ApiServer) -> None:
    apiserver.store.put(pod(0, f"{STS}-new"))
    apiserver.store.put(pod(1, f"{STS}-old"))
    apiserver.store.put(pod(2, f"{STS}-new"))
    outcome = Rollout(apiserver.client(), NS, STS, poll_s=0.05).run(10, wait=False)
    assert outcome.restarted == [f"{STS}-{i}" for i in range(3)]
    deleted = [path for method, path, _ in apiserver.requests if method == "DELETE"]
    assert deleted == [f"/api/v1/namespaces/{NS}/pods/{STS}-{i}" for i in range(3)]
    listed = [q for m, path, q in apiserver.requests if m == "GET" and path.endswith("/pods")]
    assert listed[0]["labelSelector"] == "app.kubernetes.io/component=dataflow"


def test_nothing_restarts_when_every_pod_is_current(apiserver: ApiServer) -> None:
    for i in range(3):
        apiserver.store.put(pod(i, f"{STS}-new"))
    outcome = Rollout(apiserver.client(), NS, STS, poll_s=0.05).run(10, wait=True)
    assert outcome.restarted == []
    assert not [m for m, _, _ in apiserver.requests if m == "DELETE"]


def test_the_hook_waits_for_the_controller_to_see_the_new_template(
        apiserver: ApiServer) -> None:
    """Right after `helm upgrade` the StatefulSet's status still describes the old spec;
    deciding from it would keep the old pods."""
    apiserver.store.update("StatefulSet", NS, STS, lambda o: o["spec"].update(template={"x": 1}))
    for i in range(3):
        apiserver.store.put(pod(i, f"{STS}-old"))

    def controller() -> None:
        time.sleep(0.5)
        apiserver.store.update("StatefulSet", NS, STS, lambda o: o.update(status={"replicas": 3,
            "observedGeneration": o["metadata"]["generation"],
            "updateRevision": f"{STS}-newer"}))

    threading.Thread(target=controller).start()
    outcome = Rollout(apiserver.client(), NS, STS, poll_s=0.05).run(10, wait=False)
    assert outcome.update_revision == f"{STS}-newer"
    assert len(outcome.restarted) == 3 and outcome.waited_s >= 0.5


def test_waiting_for_ready_pods_times_out_with_a_clear_error(apiserver: ApiServer) -> None:
    apiserver.store.put(pod(0, f"{STS}-new", ready=False))
    with pytest.raises(TimeoutError, match="did not become ready on revision"):
        Rollout(apiserver.client(), NS, STS, poll_s=0.05).run(0.3, wait=True)


def test_a_refused_call_names_what_was_refused(apiserver: ApiServer) -> None:
    apiserver.rbac = True
    token = apiserver.token_for(NS, "no-rights")
    with pytest.raises(ConfigError, match=f"cannot read StatefulSet {NS}/{STS}: 403 Forbidden"):
        Rollout(apiserver.client(token), NS, STS).run(5, wait=False)
