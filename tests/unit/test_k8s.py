"""The process count follows the StatefulSet: the real `kubernetes` client against a small
local HTTP server standing in for the API server (none runs on these machines)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client

from chatwax import k8s
from chatwax.errors import ConfigError

NS, STS = "chat", "rel-chatwax-dataflow"
RENDERED = [f"{STS}-{i}.{STS}-headless.{NS}.svc.cluster.local:2101" for i in range(2)]


def statefulset(replicas: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": STS, "namespace": NS, "resourceVersion": str(replicas)},
            "spec": {"replicas": replicas, "serviceName": f"{STS}-headless",
                     "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}}


class FakeApiServer:
    """Serves GET of one StatefulSet and a watch stream of replica changes."""

    def __init__(self) -> None:
        self.replicas = 3
        self.watch_events: list[int] = []
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests.append(self.path)
                if self.path.startswith(f"/apis/apps/v1/namespaces/{NS}/statefulsets/{STS}"):
                    self._json(statefulset(outer.replicas))
                elif "watch=true" in self.path:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    for n in [outer.replicas, *outer.watch_events]:
                        line = {"type": "MODIFIED", "object": statefulset(n)}
                        self.wfile.write(json.dumps(line).encode() + b"\n")
                        self.wfile.flush()
                else:
                    self.send_response(404)
                    self.end_headers()

            def _json(self, obj: dict[str, Any]) -> None:
                body = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def api(self) -> client.AppsV1Api:
        cfg = client.Configuration(host=f"http://127.0.0.1:{self.server.server_port}")
        return client.AppsV1Api(client.ApiClient(cfg))


@pytest.fixture
def apiserver() -> Iterator[FakeApiServer]:
    srv = FakeApiServer()
    try:
        yield srv
    finally:
        srv.server.shutdown()


def test_kubernetes_mode_needs_namespace_and_statefulset() -> None:
    assert k8s.target_from_env({"CHATWAX_K8S_NAMESPACE": NS, "BYTEWAX_STATEFULSET_NAME": STS}) \
        == k8s.Target(NS, STS)
    assert k8s.target_from_env({"BYTEWAX_STATEFULSET_NAME": STS}) is None


def test_peer_list_follows_the_replica_count() -> None:
    got = k8s.addresses_for(RENDERED, STS, 4)
    assert got == [f"{STS}-{i}.{STS}-headless.{NS}.svc.cluster.local:2101" for i in range(4)]
    assert k8s.addresses_for(RENDERED, STS, 1) == RENDERED[:1]
    with pytest.raises(ConfigError, match="does not start with"):
        k8s.addresses_for(["other-0.x:1"], STS, 2)


def test_a_pod_beyond_the_replicas_refuses_to_join() -> None:
    k8s.check_ordinal(2, 3)
    with pytest.raises(ConfigError, match="process 3 but the StatefulSet has 3 replicas"):
        k8s.check_ordinal(3, 3)


def test_replicas_are_read_with_the_real_client(apiserver: FakeApiServer) -> None:
    apiserver.replicas = 5
    assert k8s.read_replicas(apiserver.api(), k8s.Target(NS, STS)) == 5
    assert any(p.startswith(f"/apis/apps/v1/namespaces/{NS}/statefulsets/{STS}")
               for p in apiserver.requests)


def test_a_scale_is_noticed_by_the_watch(apiserver: FakeApiServer) -> None:
    apiserver.replicas = 3
    apiserver.watch_events = [3, 5]  # kubectl scale --replicas=5
    changed = threading.Event()
    seen: list[int] = []

    def on_change(n: int) -> None:
        seen.append(n)
        changed.set()

    k8s.watch_replicas(apiserver.api(), k8s.Target(NS, STS), 3, on_change)
    assert changed.wait(10)
    assert seen == [5]
    watch = next(p for p in apiserver.requests if "watch=true" in p)
    assert "fieldSelector=metadata.name" in watch
