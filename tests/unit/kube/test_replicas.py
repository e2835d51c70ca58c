"""The process count follows the StatefulSet: the real `kubernetes` client against the API
server stand-in (tests/support/apiserver.py; no real one runs on these machines)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from chatwax.core.errors import ConfigError
from chatwax.dataflow.runspec import RunSpec
from chatwax.kube import replicas as k8s
from tests.support.apiserver import ApiServer

NS, STS = "chat", "rel-chatwax-dataflow"
RENDERED = [f"{STS}-{i}.{STS}-headless.{NS}.svc.cluster.local:2101" for i in range(2)]
STS_PATH = f"/apis/apps/v1/namespaces/{NS}/statefulsets"


def statefulset(replicas: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": STS, "namespace": NS},
            "spec": {"replicas": replicas, "serviceName": f"{STS}-headless",
                     "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}}


def scale(server: ApiServer, replicas: int) -> None:
    server.store.update("StatefulSet", NS, STS,
                        lambda o: o["spec"].__setitem__("replicas", replicas))


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    server = ApiServer()
    server.store.put(statefulset(3))
    try:
        yield server
    finally:
        server.close()


def apps(server: ApiServer, token: str | None = None) -> Any:
    return k8s.apps_api(server.client(token))


class Changes:
    """Collects on_change calls and lets a test wait for the first."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.event = threading.Event()

    def __call__(self, replicas: int) -> None:
        self.seen.append(replicas)
        self.event.set()


def test_kubernetes_mode_needs_namespace_and_statefulset() -> None:
    assert k8s.target_from_env({"CHATWAX_K8S_NAMESPACE": NS, "BYTEWAX_STATEFULSET_NAME": STS}) \
        == k8s.Target(NS, STS)
    assert k8s.target_from_env({"BYTEWAX_STATEFULSET_NAME": STS}) is None
    assert k8s.target_from_env({"CHATWAX_K8S_NAMESPACE": NS}) is None
    assert k8s.target_from_env({"CHATWAX_K8S_NAMESPACE": "", "BYTEWAX_STATEFULSET_NAME": STS}) \
        is None


def test_peer_list_follows_the_replica_count() -> None:
    got = k8s.addresses_for(RENDERED, STS, 4)
    assert got == [f"{STS}-{i}.{STS}-headless.{NS}.svc.cluster.local:2101" for i in range(4)]
    assert k8s.addresses_for(RENDERED, STS, 1) == RENDERED[:1]
    assert k8s.addresses_for(RENDERED, STS, 2) == RENDERED
    with pytest.raises(ConfigError, match="does not start with"):
        k8s.addresses_for(["other-0.x:1"], STS, 2)
    with pytest.raises(ConfigError, match="no rendered peer address"):
        k8s.addresses_for([], STS, 2)


def test_a_pod_knows_its_ordinal_and_one_beyond_the_replicas_refuses_to_join() -> None:
    target = k8s.Target(NS, STS)
    assert k8s.ordinal({"BYTEWAX_POD_NAME": f"{STS}-12"}, target) == 12
    assert k8s.ordinal({"BYTEWAX_POD_NAME": "elsewhere"}, target) is None
    k8s.check_ordinal(2, 3)
    with pytest.raises(ConfigError, match="process 3 but the StatefulSet has 3 replicas"):
        k8s.check_ordinal(3, 3)


def test_replicas_are_read_with_the_real_client(apiserver: ApiServer) -> None:
    scale(apiserver, 5)
    assert k8s.read_replicas(apps(apiserver), k8s.Target(NS, STS)) == 5
    # A named GET: the `get` verb the chart's Role grants on this one StatefulSet.
    assert apiserver.requests == [("GET", f"{STS_PATH}/{STS}", {})]


def test_a_refused_read_is_a_clear_configuration_error(apiserver: ApiServer) -> None:
    apiserver.rbac = True  # and no Role grants anything to this token's account
    token = apiserver.token_for(NS, "nobody")
    with pytest.raises(ConfigError, match=f"{NS}/{STS}: 403 Forbidden.*get and watch"):
        k8s.read_replicas(apps(apiserver, token), k8s.Target(NS, STS))


def test_a_scale_is_noticed_by_the_watch(apiserver: ApiServer) -> None:
    changes = Changes()
    thread = k8s.watch_replicas(apps(apiserver), k8s.Target(NS, STS), 3, changes)
    assert thread.daemon
    assert not changes.event.wait(0.5)  # the current object says 3: no change
    scale(apiserver, 5)  # kubectl scale --replicas=5
    assert changes.event.wait(10)
    assert changes.seen == [5]
    thread.join(5)
    assert not thread.is_alive()  # one change, one call
    # A watch the chart's Role allows: `watch` restricted to the StatefulSet's name.
    assert apiserver.watch_requests()[0]["fieldSelector"] == f"metadata.name={STS}"


def test_a_change_made_between_the_read_and_the_watch_is_not_missed(
        apiserver: ApiServer) -> None:
    """A watch starts with the current object, so a scale just before it opens counts."""
    scale(apiserver, 2)
    changes = Changes()
    k8s.watch_replicas(apps(apiserver), k8s.Target(NS, STS), 3, changes)
    assert changes.event.wait(10)
    assert changes.seen == [2]


def test_a_closed_watch_is_reopened_and_sees_the_change(apiserver: ApiServer) -> None:
    apiserver.watch_plans = ["close", "close"]  # API servers end watches now and then
    changes = Changes()
    k8s.watch_replicas(apps(apiserver), k8s.Target(NS, STS), 3, changes, retry_s=0.05)
    while len(apiserver.watch_requests()) < 3:
        assert not changes.event.wait(0.05)
    scale(apiserver, 2)
    assert changes.event.wait(10)
    assert changes.seen == [2]


def test_a_failed_watch_is_retried(apiserver: ApiServer) -> None:
    apiserver.watch_plans = [500, 503]  # the API server restarting
    changes = Changes()
    k8s.watch_replicas(apps(apiserver), k8s.Target(NS, STS), 3, changes, retry_s=0.05)
    while len(apiserver.watch_requests()) < 3:
        assert not changes.event.wait(0.05)
    scale(apiserver, 4)
    assert changes.event.wait(10)
    assert changes.seen == [4]
    assert len(apiserver.watch_requests()) == 3


def test_a_pod_added_by_kubectl_scale_gets_its_place(apiserver: ApiServer) -> None:
    """`kubectl scale --replicas=3` keeps the template's 2-peer list; pod 2 must join a
    3-process cluster instead of being refused for lying outside that list."""
    env = {"BYTEWAX_POD_NAME": f"{STS}-2", "BYTEWAX_STATEFULSET_NAME": STS,
           "BYTEWAX_ADDRESSES": ";".join(RENDERED), "CHATWAX_K8S_NAMESPACE": NS}
    with pytest.raises(ConfigError, match="outside the 2 peer addresses"):
        RunSpec.from_env(env)  # what the pod template alone says
    target = k8s.target_from_env(env)
    assert target is not None
    replicas = k8s.read_replicas(apps(apiserver), target)
    spec = RunSpec.from_env(k8s.env_with_replicas(env, target, replicas))
    assert (spec.process_id, spec.process_count) == (2, 3)
    assert spec.addresses == [f"{STS}-{i}.{STS}-headless.{NS}.svc.cluster.local:2101"
                              for i in range(3)]
    # Scaled down to 2, pod 2 is on its way out and must not join.
    with pytest.raises(ConfigError, match="process 2 but the StatefulSet has 2 replicas"):
        k8s.env_with_replicas(env, target, 2)
    # A hostfile setup is left alone.
    hostfile = {"BYTEWAX_HOSTFILE_PATH": "/etc/hosts-list"}
    assert k8s.env_with_replicas(hostfile, target, 3) == hostfile
