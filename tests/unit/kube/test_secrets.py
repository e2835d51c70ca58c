"""`chatwax kube ensure-secret`: made once, missing keys added, values never changed; the
real `kubernetes` client against the API server stand-in, with Kubernetes' RBAC and the
narrow Role the chart gives the hook."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from chatwax.core.errors import ConfigError
from chatwax.kube.secrets import ensure_secret, missing, new_value
from tests.support.apiserver import ApiServer

NS, NAME = "chat", "rel-nats-auth"


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    server = ApiServer(rbac=True)
    server.store.put({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                      "metadata": {"name": "auth-init", "namespace": NS},
                      "rules": [{"apiGroups": [""], "resources": ["secrets"],
                                 "verbs": ["create"]},
                                {"apiGroups": [""], "resources": ["secrets"],
                                 "resourceNames": [NAME], "verbs": ["get", "patch"]}]})
    server.store.put({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                      "metadata": {"name": "auth-init", "namespace": NS},
                      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "auth-init"},
                      "subjects": [{"kind": "ServiceAccount", "name": "auth-init",
                                    "namespace": NS}]})
    try:
        yield server
    finally:
        server.close()


def values(server: ApiServer, name: str = NAME) -> dict[str, str]:
    secret = server.store.get("Secret", NS, name)
    assert secret is not None
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def client(server: ApiServer) -> Any:
    return server.client(server.token_for(NS, "auth-init"))


def test_missing_keeps_order_and_ignores_present_keys() -> None:
    assert missing({"a": "x"}, ["a", "b", "c", "b"]) == ["b", "c"]
    assert missing(None, ["a"]) == ["a"]


def test_the_secret_is_made_once_and_never_changes(apiserver: ApiServer) -> None:
    added = ensure_secret(client(apiserver), NS, NAME, ["dataflow-password", "frontend-password"],
                          {"app.kubernetes.io/part-of": "chatwax"})
    assert added == ["dataflow-password", "frontend-password"]
    first = values(apiserver)
    assert all(len(v) == 32 for v in first.values()) and len(set(first.values())) == 2
    secret = apiserver.store.get("Secret", NS, NAME)
    assert secret is not None
    assert secret["metadata"]["labels"] == {"app.kubernetes.io/part-of": "chatwax"}
    # Every later run (every upgrade) leaves it alone.
    for _ in range(2):
        assert ensure_secret(client(apiserver), NS, NAME,
                             ["dataflow-password", "frontend-password"]) == []
    assert values(apiserver) == first


def test_a_new_key_is_added_without_touching_the_others(apiserver: ApiServer) -> None:
    ensure_secret(client(apiserver), NS, NAME, ["dataflow-password"])
    before = values(apiserver)
    added = ensure_secret(client(apiserver), NS, NAME, ["dataflow-password", "operator-password"])
    assert added == ["operator-password"]
    after = values(apiserver)
    assert after["dataflow-password"] == before["dataflow-password"]
    assert len(after["operator-password"]) == 32


def test_the_role_allows_nothing_beyond_its_one_secret(apiserver: ApiServer) -> None:
    """The chart's Role: create any Secret (Kubernetes cannot narrow create by name), but
    read or change only this one."""
    apiserver.store.put({"apiVersion": "v1", "kind": "Secret",
                         "metadata": {"name": "someone-elses", "namespace": NS},
                         "data": {"k": base64.b64encode(b"v").decode()}})
    with pytest.raises(ConfigError, match="cannot read Secret chat/someone-elses: 403"):
        ensure_secret(client(apiserver), NS, "someone-elses", ["k", "extra"])
    assert values(apiserver, "someone-elses") == {"k": "v"}


def test_a_concurrent_writer_is_never_overwritten(apiserver: ApiServer) -> None:
    """The patch carries the resourceVersion it read: if another hook run wrote between the
    read and the patch, the patch is refused (409) and the Secret read again."""
    ensure_secret(client(apiserver), NS, NAME, ["a"])
    store = apiserver.store
    real_get = store.get
    raced = []

    def get_then_race(kind: str, ns: str, name: str) -> dict[str, Any] | None:
        obj = real_get(kind, ns, name)
        if kind == "Secret" and not raced:
            raced.append(True)  # another run adds `b` right after our read
            store.update(kind, ns, name, lambda o: o["data"].update(
                b=base64.b64encode(b"theirs").decode()))
        return obj

    store.get = get_then_race  # type: ignore[method-assign]
    try:
        added = ensure_secret(client(apiserver), NS, NAME, ["a", "b"])
    finally:
        store.get = real_get  # type: ignore[method-assign]
    assert added == []  # on the second read, `b` was there
    assert values(apiserver)["b"] == "theirs"


def test_generated_values_are_passwords_nats_server_can_read_from_its_environment(
        tmp_path: Any) -> None:
    """A `$VAR` value starting with '-' is parsed as a number by nats-server and fails; a
    generated value always starts with a letter, and each is new."""
    import subprocess

    from chatwax.dev.natsserver import nats_server_binary

    values = [new_value() for _ in range(2000)]
    assert all(v[0].isalpha() and len(v) == 32 for v in values)
    assert len(set(values)) == len(values)
    conf = tmp_path / "nats.conf"
    conf.write_text("listen: 127.0.0.1:4999\n"
                    "authorization { users: [ { user: a, password: $P } ] }\n")
    for value in ("-Fabc", values[0]):
        res = subprocess.run([nats_server_binary(), "-c", str(conf), "-t"], capture_output=True,
                             text=True, env={"P": value}, timeout=30)
        assert (res.returncode == 0) is (value != "-Fabc"), res.stderr
