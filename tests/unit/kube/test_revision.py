"""A pod made from an older template deletes itself, at start and through the StatefulSet
watch: the pure decision, and the real `kubernetes` client against the API server stand-in
with Kubernetes' RBAC and a Role like the chart's (delete on the StatefulSet's pod names
only). The cluster model (tests/cluster/test_day2.py) runs it with pods that restart."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client

from chatwax.dataflow import process
from chatwax.kube import replicas as k8s
from chatwax.kube import revision
from tests.support.apiserver import ApiServer
from tests.unit.kube.test_replicas import Changes

NS, STS, ACCOUNT = "chat", "rel-chatwax-dataflow", "rel-chatwax-dataflow"
OLD, NEW = f"{STS}-5d8f7b9c4", f"{STS}-7f6c8d9b2"


def sts_object(update: str | None, observed: int | None, generation: int = 2) -> Any:
    """The parts of a V1StatefulSet the decision reads."""
    status = None if update is None else SimpleNamespace(
        update_revision=update, observed_generation=observed)
    return SimpleNamespace(metadata=SimpleNamespace(name=STS, generation=generation),
                           status=status)


def test_only_an_observed_newer_revision_replaces_the_pod() -> None:
    assert revision.should_replace(OLD, sts_object(NEW, observed=2))
    assert revision.should_replace(OLD, sts_object(NEW, observed=3))
    assert not revision.should_replace(NEW, sts_object(NEW, observed=2))  # up to date
    # The controller has not yet seen the latest spec: its updateRevision may be the one
    # this pod is leaving, or older than the one a just-created pod runs.
    assert not revision.should_replace(OLD, sts_object(NEW, observed=1))
    assert not revision.should_replace(OLD, sts_object(None, observed=None))  # no status
    assert not revision.should_replace(OLD, sts_object("", observed=2))
    # A pod that does not know its revision (an older chart's) never acts.
    assert not revision.should_replace(None, sts_object(NEW, observed=2))
    assert not revision.should_replace("", sts_object(NEW, observed=2))


def test_a_pod_knows_itself_only_with_namespace_name_and_revision() -> None:
    env = {"CHATWAX_K8S_NAMESPACE": NS, "BYTEWAX_POD_NAME": f"{STS}-1",
           "CHATWAX_POD_REVISION": OLD}
    assert revision.self_from_env(env) == revision.Self(NS, f"{STS}-1", OLD)
    for key in env:
        assert revision.self_from_env({**env, key: ""}) is None


def statefulset(update: str, observed: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": STS, "namespace": NS},
            "spec": {"replicas": 2, "serviceName": f"{STS}-headless",
                     "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"replicas": 2, "observedGeneration": observed,
                       "updateRevision": update}}


def pod(i: int, rev: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{STS}-{i}", "namespace": NS,
                         "labels": {"a": "b", "controller-revision-hash": rev}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    """A StatefulSet on OLD with pods 0..2, and the chart's dataflow Role for M = 2."""
    server = ApiServer(rbac=True)
    server.store.put(statefulset(OLD, observed=1))
    for i in range(3):
        server.store.put(pod(i, OLD))
    server.store.put({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                      "metadata": {"name": STS, "namespace": NS},
                      "rules": [{"apiGroups": ["apps"], "resources": ["statefulsets"],
                                 "resourceNames": [STS], "verbs": ["get", "watch"]},
                                {"apiGroups": [""], "resources": ["pods"],
                                 "resourceNames": [f"{STS}-0", f"{STS}-1"],
                                 "verbs": ["delete"]}]})
    server.store.put({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                      "metadata": {"name": STS, "namespace": NS},
                      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": STS},
                      "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT,
                                    "namespace": NS}]})
    try:
        yield server
    finally:
        server.close()


def new_template(server: ApiServer) -> None:
    """`helm upgrade` of the template: the API server raises the generation, the
    controller's status follows (`controller_catches_up`)."""
    server.store.update("StatefulSet", NS, STS, lambda o: o["spec"]["template"][
        "metadata"].__setitem__("annotations", {"checksum/env": "new"}))


def controller_catches_up(server: ApiServer, update: str) -> None:
    def status(o: dict[str, Any]) -> None:
        o["status"] = {**o["status"], "observedGeneration": o["metadata"]["generation"],
                       "updateRevision": update}

    server.store.update("StatefulSet", NS, STS, status)


def deleting(server: ApiServer, i: int) -> bool:
    obj = server.store.get("Pod", NS, f"{STS}-{i}")
    return obj is not None and bool(obj["metadata"].get("deletionTimestamp"))


def pod_env(i: int, rev: str = OLD) -> dict[str, str]:
    return {"CHATWAX_K8S_NAMESPACE": NS, "BYTEWAX_STATEFULSET_NAME": STS,
            "BYTEWAX_POD_NAME": f"{STS}-{i}", "CHATWAX_POD_REVISION": rev}


@pytest.fixture
def as_pod(apiserver: ApiServer, monkeypatch: pytest.MonkeyPatch) -> ApiServer:
    """`chatwax.kube.api.connect` gives the dataflow ServiceAccount's credentials."""
    token = apiserver.token_for(NS, ACCOUNT)
    monkeypatch.setattr("chatwax.kube.api.connect", lambda: apiserver.client(token))
    return apiserver


def test_at_start_a_pod_on_an_older_revision_deletes_itself(as_pod: ApiServer) -> None:
    assert not process.replace_if_stale(pod_env(0))  # the StatefulSet is on OLD too
    new_template(as_pod)
    assert not process.replace_if_stale(pod_env(0))  # its status is not yet current
    controller_catches_up(as_pod, NEW)
    assert process.replace_if_stale(pod_env(0))
    assert deleting(as_pod, 0)
    assert not process.replace_if_stale(pod_env(1, NEW))  # made from the new template
    assert not deleting(as_pod, 1)
    # Outside Kubernetes mode, or without the revision (an older chart), nothing is read.
    before = len(as_pod.requests)
    assert not process.replace_if_stale({k: v for k, v in pod_env(1).items()
                                         if k != "CHATWAX_POD_REVISION"})
    assert not process.replace_if_stale({})
    assert len(as_pod.requests) == before


def test_a_refused_delete_is_logged_and_the_pod_carries_on(
        as_pod: ApiServer, caplog: pytest.LogCaptureFixture) -> None:
    """Pod 2 is beyond the Role's names (a `kubectl scale` past maxProcesses)."""
    new_template(as_pod)
    controller_catches_up(as_pod, NEW)
    with caplog.at_level(logging.ERROR, "chatwax.kube.revision"):
        assert not process.replace_if_stale(pod_env(2))
    assert not deleting(as_pod, 2)
    assert "403 Forbidden" in caplog.text and "dataflow.replicaLookup.maxProcesses" in caplog.text
    assert f"kubectl delete pod {STS}-2 -n {NS}" in caplog.text


def test_an_unreachable_api_is_no_refusal() -> None:
    nowhere = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))
    nowhere.configuration.retries = 0
    me = revision.Self(NS, f"{STS}-0", OLD)
    with pytest.raises(k8s.ApiUnreachable, match=f"cannot delete pod {NS}/{STS}-0"):
        revision.delete_self(revision.core_api(nowhere), me, NEW, timeout_s=1)


def watch(server: ApiServer, i: int, changes: Changes) -> threading.Thread:
    token = server.token_for(NS, ACCOUNT)
    api_client = server.client(token)
    me = revision.Self(NS, f"{STS}-{i}", OLD)
    return k8s.watch_replicas(k8s.apps_api(api_client), k8s.Target(NS, STS), 2, changes,
                              replace=revision.replacer(revision.core_api(api_client), me))


def test_every_pod_on_the_old_revision_deletes_itself_on_the_same_watch_event(
        apiserver: ApiServer) -> None:
    changes = Changes()
    threads = [watch(apiserver, i, changes) for i in (0, 1)]
    new_template(apiserver)
    # The spec changed, the status is not yet current: nobody acts on it.
    threads[0].join(0.3)
    assert all(t.is_alive() for t in threads)
    assert not deleting(apiserver, 0) and not deleting(apiserver, 1)
    controller_catches_up(apiserver, NEW)
    for t in threads:
        t.join(10)
        assert not t.is_alive()  # the watch ends: this pod is going
    assert deleting(apiserver, 0) and deleting(apiserver, 1)
    assert not deleting(apiserver, 2)  # nobody deletes another pod
    assert changes.seen == []  # no in-place restart on top of the replacement
    # Each pod deleted itself, by name (the `delete` the Role grants on that name).
    assert sorted(p for m, p, _ in apiserver.requests if m == "DELETE") == [
        f"/api/v1/namespaces/{NS}/pods/{STS}-{i}" for i in (0, 1)]


def test_a_new_count_waits_for_the_controller_and_then_restarts_in_place(
        apiserver: ApiServer) -> None:
    """`kubectl scale` leaves the template as it is: the process restarts with the new
    count, once the status is current, and the pod stays."""
    controller_catches_up(apiserver, OLD)
    changes = Changes()
    watch(apiserver, 0, changes)
    apiserver.store.update("StatefulSet", NS, STS,
                           lambda o: o["spec"].__setitem__("replicas", 3))
    assert not changes.event.wait(0.3)
    controller_catches_up(apiserver, OLD)
    assert changes.event.wait(10)
    assert changes.seen == [3]
    assert not deleting(apiserver, 0)


def test_the_check_at_start_never_stops_a_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever goes wrong with it (here: an object the client cannot read), the process
    carries on to its settings; the watch checks again."""
    def broken() -> Any:
        raise ValueError("1 validation error for V1EnvVar")

    monkeypatch.setattr("chatwax.kube.api.connect", broken)
    assert not process.replace_if_stale(pod_env(0))
