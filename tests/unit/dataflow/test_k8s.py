"""The process count follows the StatefulSet: the real `kubernetes` client against a small
local HTTP server standing in for the API server (none runs on these machines)."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client

from chatwax.core.errors import ConfigError
from chatwax.dataflow import k8s

NS, STS = "chat", "rel-chatwax-dataflow"
RENDERED = [f"{STS}-{i}.{STS}-headless.{NS}.svc.cluster.local:2101" for i in range(2)]
STS_PATH = f"/apis/apps/v1/namespaces/{NS}/statefulsets"


def statefulset(replicas: int, version: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": STS, "namespace": NS, "resourceVersion": str(version)},
            "spec": {"replicas": replicas, "serviceName": f"{STS}-headless",
                     "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}}


class FakeApiServer:
    """GET of one StatefulSet, and watches of it.

    Each watch request takes the next entry of `watches`: a list of replica counts to
    send as events before closing the stream, or an HTTP status to fail with. With none
    left, a watch sends the current replicas and stays open until shutdown.
    """

    def __init__(self) -> None:
        self.replicas = 3
        self.forbidden = False
        self.watches: list[list[int] | int] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.closing = threading.Event()
        self.version = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                outer.requests.append((url.path, query))
                if outer.forbidden:
                    self._send(403, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                     "reason": "Forbidden", "code": 403})
                elif url.path == f"{STS_PATH}/{STS}":
                    self._send(200, statefulset(outer.replicas, outer.next_version()))
                elif url.path == STS_PATH and query.get("watch") == "true":
                    self._watch()
                else:
                    self._send(404, {"kind": "Status", "code": 404})

            def _watch(self) -> None:
                plan = outer.watches.pop(0) if outer.watches else None
                if isinstance(plan, int):
                    self._send(plan, {"kind": "Status", "code": plan})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                for i, n in enumerate(plan or [outer.replicas]):
                    event = {"type": "ADDED" if i == 0 else "MODIFIED",
                             "object": statefulset(n, outer.next_version())}
                    self.wfile.write(json.dumps(event).encode() + b"\n")
                    self.wfile.flush()
                if plan is None:
                    outer.closing.wait(30)

            def _send(self, status: int, obj: dict[str, Any]) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next_version(self) -> int:
        self.version += 1
        return self.version

    def api(self) -> client.AppsV1Api:
        cfg = client.Configuration(host=f"http://127.0.0.1:{self.server.server_port}")
        return client.AppsV1Api(client.ApiClient(cfg))

    def watch_requests(self) -> list[dict[str, str]]:
        return [q for path, q in self.requests if path == STS_PATH and q.get("watch") == "true"]


@pytest.fixture
def apiserver() -> Iterator[FakeApiServer]:
    srv = FakeApiServer()
    try:
        yield srv
    finally:
        srv.closing.set()
        srv.server.shutdown()
        srv.server.server_close()


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


def test_a_pod_beyond_the_replicas_refuses_to_join() -> None:
    k8s.check_ordinal(2, 3)
    with pytest.raises(ConfigError, match="process 3 but the StatefulSet has 3 replicas"):
        k8s.check_ordinal(3, 3)


def test_replicas_are_read_with_the_real_client(apiserver: FakeApiServer) -> None:
    apiserver.replicas = 5
    assert k8s.read_replicas(apiserver.api(), k8s.Target(NS, STS)) == 5
    # A named GET: the `get` verb the chart's Role grants on this one StatefulSet.
    assert apiserver.requests == [(f"{STS_PATH}/{STS}", {})]


def test_a_refused_read_is_a_clear_configuration_error(apiserver: FakeApiServer) -> None:
    apiserver.forbidden = True
    with pytest.raises(ConfigError, match=f"{NS}/{STS}: 403 Forbidden.*get and watch"):
        k8s.read_replicas(apiserver.api(), k8s.Target(NS, STS))


def test_outside_a_pod_kubernetes_mode_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    with pytest.raises(ConfigError, match="no in-cluster API access"):
        k8s.apps_api()


def test_a_scale_is_noticed_by_the_watch(apiserver: FakeApiServer) -> None:
    apiserver.watches = [[3, 3, 5]]  # kubectl scale --replicas=5
    changes = Changes()
    thread = k8s.watch_replicas(apiserver.api(), k8s.Target(NS, STS), 3, changes)
    assert thread.daemon
    assert changes.event.wait(10)
    assert changes.seen == [5]
    thread.join(5)
    assert not thread.is_alive()  # one change, one call
    # A watch the chart's Role allows: `watch` restricted to the StatefulSet's name.
    watch = apiserver.watch_requests()[0]
    assert watch["fieldSelector"] == f"metadata.name={STS}"


def test_an_unchanged_statefulset_never_triggers(apiserver: FakeApiServer) -> None:
    changes = Changes()
    thread = k8s.watch_replicas(apiserver.api(), k8s.Target(NS, STS), 3, changes)
    assert not changes.event.wait(1.0)
    assert thread.is_alive() and apiserver.watch_requests()


def test_a_closed_watch_is_reopened_and_sees_the_change(apiserver: FakeApiServer) -> None:
    apiserver.watches = [[3], [3], [3, 2]]  # the API server ends watches now and then
    changes = Changes()
    k8s.watch_replicas(apiserver.api(), k8s.Target(NS, STS), 3, changes, retry_s=0.05)
    assert changes.event.wait(10)
    assert changes.seen == [2]
    assert len(apiserver.watch_requests()) >= 3


def test_a_failed_watch_is_retried(apiserver: FakeApiServer) -> None:
    apiserver.watches = [500, 503, [4]]  # the API server restarting, then a scale to 4
    changes = Changes()
    k8s.watch_replicas(apiserver.api(), k8s.Target(NS, STS), 3, changes, retry_s=0.05)
    assert changes.event.wait(10)
    assert changes.seen == [4]
    assert len(apiserver.watch_requests()) == 3


def test_a_pod_added_by_kubectl_scale_gets_its_place(apiserver: FakeApiServer) -> None:
    """`kubectl scale --replicas=3` keeps the template's 2-peer list; pod 2 must join a
    3-process cluster instead of being refused for lying outside that list."""
    from chatwax.dataflow.runspec import RunSpec

    env = {"BYTEWAX_POD_NAME": f"{STS}-2", "BYTEWAX_STATEFULSET_NAME": STS,
           "BYTEWAX_ADDRESSES": ";".join(RENDERED), "CHATWAX_K8S_NAMESPACE": NS}
    with pytest.raises(ConfigError, match="outside the 2 peer addresses"):
        RunSpec.from_env(env)  # what the pod template alone says
    apiserver.replicas = 3
    target = k8s.target_from_env(env)
    assert target is not None
    replicas = k8s.read_replicas(apiserver.api(), target)
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
