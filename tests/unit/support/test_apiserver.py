"""The API server stand-in (tests/support/apiserver.py) where real clients depend on it:
selectors, watches from a resourceVersion, the scale subresource, JSON patch, server-side
apply conflicts, protobuf bodies, garbage collection. tests/cluster/test_real_tools.py
drives it with the real helm and kubectl; these pin the pieces on their own."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from tests.support.apiserver import (
    ApiServer,
    BadRequest,
    ManagedFields,
    PatchError,
    Store,
    decode_protobuf,
    json_patch,
    matches,
    parse_label_selector,
)

NS = "chat"


def call(server: ApiServer, method: str, path: str, body: Any = None,
         content_type: str = "application/json", raw: bytes | None = None,
         agent: str = "test/1.0") -> tuple[int, Any]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": content_type, "User-Agent": agent}
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    text = resp.read()
    conn.close()
    return resp.status, json.loads(text) if text else None


def statefulset(replicas: int = 2) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}}


STS = f"/apis/apps/v1/namespaces/{NS}/statefulsets"


def test_label_selectors_follow_the_upstream_grammar() -> None:
    """k8s.io/apimachinery/pkg/labels/selector.go: equality, inequality, set-based and
    existence requirements, commas inside `in (...)`."""
    reqs = parse_label_selector("owner=helm,name==x,status in (deployed, failed),!gone,"
                                "tier notin (db),present,env!=prod")
    assert reqs == [("owner", "=", ("helm",)), ("name", "=", ("x",)),
                    ("status", "in", ("deployed", "failed")), ("gone", "!exists", ()),
                    ("tier", "notin", ("db",)), ("present", "exists", ()),
                    ("env", "!=", ("prod",))]
    labels = {"owner": "helm", "name": "x", "status": "failed", "present": ""}
    assert matches(reqs, labels)
    assert not matches(reqs, {**labels, "status": "superseded"})
    assert not matches(reqs, {**labels, "gone": "1"})
    assert not matches(reqs, {**labels, "env": "prod"})
    assert matches(parse_label_selector("env!=prod,tier notin (db)"), {})  # absent passes
    with pytest.raises(BadRequest):
        parse_label_selector("a in b")


def test_lists_select_by_label_and_field_and_refuse_unknown_fields(server: ApiServer) -> None:
    for name, status in (("r.v1", "superseded"), ("r.v2", "deployed"), ("other", "x")):
        server.store.put({"apiVersion": "v1", "kind": "Secret", "metadata": {
            "name": name, "namespace": NS, "labels": {"owner": "helm", "status": status}},
            "type": "helm.sh/release.v1"})
    path = f"/api/v1/namespaces/{NS}/secrets"
    code, got = call(server, "GET", path + "?labelSelector=owner%3Dhelm%2Cstatus+in+"
                                          "%28deployed%2Csuperseded%29")
    assert code == 200
    assert [i["metadata"]["name"] for i in got["items"]] == ["r.v1", "r.v2"]
    code, got = call(server, "GET", path + "?fieldSelector=metadata.name%3Dr.v2")
    assert [i["metadata"]["name"] for i in got["items"]] == ["r.v2"]
    code, got = call(server, "GET", path + "?fieldSelector=type%3Dhelm.sh%2Frelease.v1")
    assert len(got["items"]) == 3
    code, got = call(server, "GET", path + "?fieldSelector=data.x%3Dy")
    assert code == 400 and got["reason"] == "BadRequest"


def test_json_patch_follows_rfc_6902() -> None:
    """RFC 6902 appendix A: A.1 add, A.2 add into an array, A.4 remove from an array,
    A.6 move, A.8 test, A.16 add with "-"; and a failed test."""
    assert json_patch({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}]) == {
        "baz": "qux", "foo": "bar"}
    assert json_patch({"foo": ["bar", "baz"]},
                      [{"op": "add", "path": "/foo/1", "value": "qux"}]) == {
        "foo": ["bar", "qux", "baz"]}
    assert json_patch({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}]) \
        == {"foo": ["bar", "baz"]}
    assert json_patch({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
                      [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]) == {
        "foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}
    doc = {"baz": "qux", "foo": ["a", 2, "c"]}
    assert json_patch(doc, [{"op": "test", "path": "/baz", "value": "qux"},
                            {"op": "test", "path": "/foo/1", "value": 2}]) == doc
    assert json_patch({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-",
                                          "value": ["abc", "def"]}]) == {
        "foo": ["bar", ["abc", "def"]]}
    with pytest.raises(PatchError):
        json_patch({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}])


def test_the_scale_subresource_reads_and_writes_spec_replicas(server: ApiServer) -> None:
    """What `kubectl scale` sends (a merge patch of an autoscaling/v1 Scale), recorded in
    managedFields under the User-Agent's manager with subresource "scale"."""
    assert call(server, "POST", STS, statefulset())[0] == 201
    code, scale = call(server, "GET", f"{STS}/web/scale")
    assert code == 200
    assert (scale["kind"], scale["apiVersion"], scale["spec"]) == (
        "Scale", "autoscaling/v1", {"replicas": 2})
    assert scale["status"]["selector"] == "a=b"
    code, scale = call(server, "PATCH", f"{STS}/web/scale", {"spec": {"replicas": 3}},
                       "application/merge-patch+json", agent="kubectl/v1.32.3 (linux/amd64)")
    assert (code, scale["spec"]["replicas"]) == (200, 3)
    sts = server.store.get("StatefulSet", NS, "web")
    assert sts is not None and sts["spec"]["replicas"] == 3
    managers = {(m["manager"], m["operation"], m.get("subresource", "")): m["fieldsV1"]
                for m in sts["metadata"]["managedFields"]}
    assert managers[("kubectl", "Update", "scale")] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in managers[("test", "Update", "")]["f:spec"]


def test_server_side_apply_conflicts_on_a_field_another_manager_changed(
        server: ApiServer) -> None:
    """Kubernetes documentation, Server-Side Apply: a field another manager owns with a
    different value is a conflict (409) unless forced; forcing takes it over."""
    apply = "application/apply-patch+yaml"
    code, _ = call(server, "PATCH", f"{STS}/web?fieldManager=helm&force=false",
                   statefulset(), apply)
    assert code == 201
    call(server, "PATCH", f"{STS}/web/scale", {"spec": {"replicas": 3}},
         "application/merge-patch+json", agent="kubectl/v1.32.3")
    again = statefulset()
    again["spec"]["template"]["metadata"]["labels"]["new"] = "label"
    code, status = call(server, "PATCH", f"{STS}/web?fieldManager=helm&force=false",
                        again, apply)
    assert code == 409
    assert status["message"] == ('Apply failed with 1 conflict: conflict with "kubectl" with '
                                 'subresource "scale" using apps/v1: .spec.replicas')
    assert server.store.get("StatefulSet", NS, "web")["spec"]["replicas"] == 3  # type: ignore
    # The same value is no conflict: the field is then shared.
    same = statefulset(3)
    code, got = call(server, "PATCH", f"{STS}/web?fieldManager=helm", same, apply)
    assert code == 200
    code, got = call(server, "PATCH", f"{STS}/web?fieldManager=helm&force=true", again, apply)
    assert code == 200
    assert got["spec"]["replicas"] == 2
    assert got["spec"]["template"]["metadata"]["labels"]["new"] == "label"
    owners = {m["manager"] for m in got["metadata"]["managedFields"]}
    assert owners == {"helm"}
    # A field the applier stops applying goes when no one else owns it.
    del again["spec"]["template"]["metadata"]["labels"]["new"]
    code, got = call(server, "PATCH", f"{STS}/web?fieldManager=helm", again, apply)
    assert "new" not in got["spec"]["template"]["metadata"]["labels"]


def test_apply_needs_a_field_manager_and_strategic_patch_needs_a_known_kind(
        server: ApiServer) -> None:
    code, status = call(server, "PATCH", f"{STS}/web", statefulset(),
                        "application/apply-patch+yaml")
    assert code == 400 and "field manager" in status["message"]
    call(server, "POST", STS, statefulset())
    code, status = call(server, "PATCH", f"{STS}/web", {"spec": {}}, "text/plain")
    assert (code, status["reason"]) == (415, "UnsupportedMediaType")


def encode_field(number: int, payload: bytes) -> bytes:
    def varint(n: int) -> bytes:
        out = b""
        while True:
            byte, n = n & 0x7F, n >> 7
            out += bytes([byte | (0x80 if n else 0)])
            if not n:
                return out

    return varint(number << 3 | 2) + varint(len(payload)) + payload


def test_protobuf_bodies_of_typed_clients_are_decoded() -> None:
    """A Secret as client-go's protobuf serializer writes it (magic "k8s\\0", Unknown with
    TypeMeta and raw): field numbers of k8s.io/api core/v1 generated.proto."""
    meta = encode_field(1, b"sh.helm.release.v1.r.v1") + encode_field(
        11, encode_field(1, b"owner") + encode_field(2, b"helm")) + encode_field(3, b"")
    secret = encode_field(1, meta) + encode_field(
        2, encode_field(1, b"release") + encode_field(2, b"\x00\x01")) + encode_field(
        3, b"helm.sh/release.v1")
    unknown = encode_field(1, encode_field(1, b"v1") + encode_field(2, b"Secret")) + \
        encode_field(2, secret)
    assert decode_protobuf(b"k8s\x00" + unknown) == {
        "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {"name": "sh.helm.release.v1.r.v1", "labels": {"owner": "helm"}},
        "data": {"release": "AAE="}}


def scale_to(replicas: int) -> Any:
    return lambda o: o["spec"].__setitem__("replicas", replicas)


def test_a_watch_from_a_resource_version_gets_only_later_events() -> None:
    """k8s.io/apiserver's watch cache: a watch from resourceVersion N sends what happened
    after N; one older than the history kept is answered with 410 Expired."""

    class Small(Store):
        HISTORY = 3

    server = ApiServer(Small())
    try:
        server.store.put(statefulset())
        rv = int(server.store.get("StatefulSet", NS, "web")["metadata"]  # type: ignore
                 ["resourceVersion"])
        server.store.update("StatefulSet", NS, "web",
                            lambda o: o["spec"].__setitem__("replicas", 5))
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        conn.request("GET", f"{STS}?watch=true&resourceVersion={rv}&timeoutSeconds=1")
        lines = [json.loads(line) for line in conn.getresponse().read().splitlines() if line]
        assert [(e["type"], e["object"]["spec"]["replicas"]) for e in lines] == [
            ("MODIFIED", 5)]
        for n in range(5):
            server.store.update("StatefulSet", NS, "web", scale_to(n))
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        conn.request("GET", f"{STS}?watch=true&resourceVersion={rv}&timeoutSeconds=1")
        lines = [json.loads(line) for line in conn.getresponse().read().splitlines() if line]
        assert [(e["type"], e["object"]["code"]) for e in lines] == [("ERROR", 410)]
    finally:
        server.close()


def test_deleting_an_owner_deletes_its_dependents_unless_orphaned(server: ApiServer) -> None:
    """The garbage collector: Background (what helm sends) deletes dependents, Orphan
    only drops the reference."""
    for name in ("job-a", "job-b"):
        owner = server.store.put({"apiVersion": "batch/v1", "kind": "Job", "metadata": {
            "name": name, "namespace": NS}, "spec": {}})
        server.store.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": f"{name}-dep", "namespace": NS, "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "Job", "name": name,
                "uid": owner["metadata"]["uid"]}]}})
    jobs = f"/apis/batch/v1/namespaces/{NS}/jobs"
    assert call(server, "DELETE", f"{jobs}/job-a", {"propagationPolicy": "Background"})[0] \
        == 200
    assert server.store.get("ConfigMap", NS, "job-a-dep") is None
    assert call(server, "DELETE", f"{jobs}/job-b?propagationPolicy=Orphan")[0] == 200
    orphan = server.store.get("ConfigMap", NS, "job-b-dep")
    assert orphan is not None and orphan["metadata"]["ownerReferences"] == []


def test_secret_string_data_is_folded_into_data_and_status_is_the_status_subresources(
        server: ApiServer) -> None:
    code, got = call(server, "POST", f"/api/v1/namespaces/{NS}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "stringData": {"k": "v"}})
    assert code == 201
    assert (got["data"], got["type"], "stringData" in got) == ({"k": "dg=="}, "Opaque", False)
    call(server, "POST", STS, statefulset())
    code, got = call(server, "PATCH", f"{STS}/web", {"status": {"replicas": 9}},
                     "application/merge-patch+json")
    assert code == 200 and "status" not in got  # the main resource ignores status
    code, got = call(server, "PATCH", f"{STS}/web/status", {"status": {"replicas": 9},
                                                            "spec": {"replicas": 7}},
                     "application/merge-patch+json")
    assert (got["status"]["replicas"], got["spec"]["replicas"]) == (9, 2)


def test_an_env_entry_an_applier_stops_applying_goes_whole() -> None:
    """A list element only its applier owned is removed with all its fields; removing its
    key field first (the stand-in once did) left `{"valueFrom": {"fieldRef": {}}}`, which
    a kubelet cannot run. Seen when helm 4 applied the previous chart's template, which has
    no CHATWAX_POD_REVISION (tests/cluster/test_real_tools.py)."""
    def sts(*env: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "web", "namespace": NS},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "c", "image": "i", "env": list(env)}]}}}}

    name = {"name": "A", "value": "1"}
    revision = {"name": "REV", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.labels['controller-revision-hash']"}}}
    fields = ManagedFields()
    live = fields.apply(None, sts(name, revision), "helm", False, "StatefulSet")
    older = fields.apply(live, sts(name), "helm", False, "StatefulSet")
    assert older["spec"]["template"]["spec"]["containers"][0]["env"] == [name]
    again = fields.apply(older, sts(name, revision), "helm", False, "StatefulSet")
    assert again["spec"]["template"]["spec"]["containers"][0]["env"] == [name, revision]
