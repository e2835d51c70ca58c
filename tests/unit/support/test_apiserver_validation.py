"""Update validation of the API server stand-in: the upstream rules (k8s.io/kubernetes
v1.32) for the kinds the chart renders, answered as the real server answers (422 Invalid
with field causes, or admission's 403), so the real helm and kubectl print what they
print against a cluster."""

from __future__ import annotations

import copy
from typing import Any

from tests.support.apiserver import ApiServer
from tests.unit.support.test_apiserver import NS, STS, call, statefulset

PVCS = f"/api/v1/namespaces/{NS}/persistentvolumeclaims"
SVCS = f"/api/v1/namespaces/{NS}/services"
DEPLOYS = f"/apis/apps/v1/namespaces/{NS}/deployments"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
MERGE = "application/merge-patch+json"
SMP = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
STS_FORBIDDEN = ("spec: Forbidden: updates to statefulset spec for fields other than "
                 "'replicas', 'ordinals', 'template', 'updateStrategy', "
                 "'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and "
                 "'minReadySeconds' are forbidden")


def with_claims(size: str = "1Gi") -> dict[str, Any]:
    sts = statefulset()
    sts["spec"]["serviceName"] = "web-headless"
    sts["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}}]
    return sts


def test_statefulset_spec_outside_the_mutable_fields_is_forbidden(server: ApiServer) -> None:
    """ValidateStatefulSetUpdate: volumeClaimTemplates, serviceName, selector and
    podManagementPolicy cannot change; replicas, template, updateStrategy can. Through
    every write path: PUT, strategic merge patch, server-side apply."""
    assert call(server, "POST", STS, with_claims())[0] == 201
    code, status = call(server, "PATCH", f"{STS}/web", {"spec": {"volumeClaimTemplates": [
        with_claims("2Gi")["spec"]["volumeClaimTemplates"][0]]}}, SMP)
    assert (code, status["reason"]) == (422, "Invalid")
    assert status["message"] == f'StatefulSet.apps "web" is invalid: {STS_FORBIDDEN}'
    assert status["details"]["causes"] == [{"reason": "FieldValueForbidden", "field": "spec",
                                            "message": STS_FORBIDDEN.split(": ", 1)[1]}]
    live = server.store.get("StatefulSet", NS, "web")
    assert live is not None
    assert live["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] == {
        "storage": "1Gi"}
    for change in ({"serviceName": "other"}, {"podManagementPolicy": "Parallel"}):
        code, status = call(server, "PATCH", f"{STS}/web", {"spec": change}, MERGE)
        assert (code, status["message"]) == (422, f'StatefulSet.apps "web" is invalid: '
                                                  f"{STS_FORBIDDEN}"), change
    put = copy.deepcopy(live)
    put["spec"]["serviceName"] = "other"
    assert call(server, "PUT", f"{STS}/web", put)[0] == 422
    applied = with_claims("2Gi")
    code, status = call(server, "PATCH", f"{STS}/web?fieldManager=helm&force=true", applied,
                        APPLY)
    assert code == 422 and STS_FORBIDDEN in status["message"]
    # The mutable fields change; the defaults the server added stay equal.
    code, got = call(server, "PATCH", f"{STS}/web", {"spec": {
        "replicas": 5, "minReadySeconds": 3, "template": {"metadata": {"annotations": {
            "x": "y"}}}}}, SMP)
    assert code == 200 and got["spec"]["replicas"] == 5


def test_statefulset_defaults_and_the_on_delete_strategy_with_a_live_rolling_update(
        server: ApiServer) -> None:
    """SetDefaults_StatefulSet gives a RollingUpdate StatefulSet rollingUpdate.partition 0;
    a patch that sets only type OnDelete leaves it, and ValidateStatefulSetSpec refuses
    OnDelete with a rollingUpdate. Deleting it in the same patch (null) is accepted."""
    code, got = call(server, "POST", STS, statefulset())
    assert got["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                             "rollingUpdate": {"partition": 0}}
    assert (got["spec"]["podManagementPolicy"], got["spec"]["revisionHistoryLimit"]) == (
        "OrderedReady", 10)
    code, status = call(server, "PATCH", f"{STS}/web",
                        {"spec": {"updateStrategy": {"type": "OnDelete"}}}, SMP)
    assert code == 422
    assert status["message"] == (
        'StatefulSet.apps "web" is invalid: spec.updateStrategy.rollingUpdate: Invalid value: '
        '{"partition": 0}: only allowed for updateStrategy \'RollingUpdate\'')
    assert status["details"]["causes"][0]["reason"] == "FieldValueInvalid"
    code, got = call(server, "PATCH", f"{STS}/web", {"spec": {"updateStrategy": {
        "type": "OnDelete", "rollingUpdate": None}}}, SMP)
    assert (code, got["spec"]["updateStrategy"]) == (200, {"type": "OnDelete"})


def test_deployment_selector_is_immutable(server: ApiServer) -> None:
    """pkg/registry/apps/deployment/strategy.go ValidateUpdate (apps/v1)."""
    deploy = statefulset()
    deploy["kind"] = "Deployment"
    assert call(server, "POST", DEPLOYS, deploy)[0] == 201
    code, status = call(server, "PATCH", f"{DEPLOYS}/web", {"spec": {
        "selector": {"matchLabels": {"a": "c"}},
        "template": {"metadata": {"labels": {"a": "c"}}}}}, SMP)
    assert code == 422
    assert status["message"] == ('Deployment.apps "web" is invalid: spec.selector: Invalid '
                                 'value: {"matchLabels": {"a": "c"}}: field is immutable')
    code, status = call(server, "PATCH", f"{DEPLOYS}/web", {"spec": {
        "template": {"metadata": {"labels": {"a": "other"}}}}}, SMP)
    assert code == 422 and "`selector` does not match template `labels`" in status["message"]
    assert call(server, "PATCH", f"{DEPLOYS}/web", {"spec": {"replicas": 4}}, SMP)[0] == 200


def pvc(size: str = "1Gi", cls: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": size}}}
    if cls:
        spec["storageClassName"] = cls
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data"}, "spec": spec}


def test_pvc_spec_is_immutable_and_grows_only_bound_with_an_expandable_class(
        server: ApiServer) -> None:
    """ValidatePersistentVolumeClaimUpdate and the PersistentVolumeClaimResize admission
    plugin."""
    immutable = ('PersistentVolumeClaim "data" is invalid: spec: Forbidden: spec is '
                 "immutable after creation except resources.requests and "
                 "volumeAttributesClassName for bound claims")
    call(server, "POST", "/apis/storage.k8s.io/v1/storageclasses", {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "fixed"}, "provisioner": "x"})
    call(server, "POST", "/apis/storage.k8s.io/v1/storageclasses", {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "grows"}, "provisioner": "x", "allowVolumeExpansion": True})
    assert call(server, "POST", PVCS, pvc(cls="fixed"))[0] == 201
    # Unbound: the whole spec is immutable, storage too.
    code, status = call(server, "PATCH", f"{PVCS}/data", pvc("2Gi", "fixed"), SMP)
    assert (code, status["message"]) == (422, immutable)
    code, status = call(server, "PATCH", f"{PVCS}/data", {"spec": {"accessModes": [
        "ReadWriteMany"]}}, MERGE)
    assert (code, status["message"]) == (422, immutable)
    # Bound (what the volume binder writes): storage may grow if the class allows it.
    for name, cls in (("data", "fixed"), ("grown", "grows")):
        if name == "grown":
            body = pvc(cls=cls)
            body["metadata"]["name"] = name
            call(server, "POST", PVCS, body)
        server.store.update("PersistentVolumeClaim", NS, name, lambda o: o.__setitem__(
            "status", {"phase": "Bound", "capacity": {"storage": "1Gi"}}))
    code, status = call(server, "PATCH", f"{PVCS}/data", pvc("2Gi", "fixed"), SMP)
    assert (code, status["reason"]) == (403, "Forbidden")
    assert status["message"] == ('persistentvolumeclaims "data" is forbidden: only dynamically '
                                 "provisioned pvc can be resized and the storageclass that "
                                 "provisions the pvc must support resize")
    grown = pvc("2Gi", "grows")
    grown["metadata"]["name"] = "grown"
    code, got = call(server, "PATCH", f"{PVCS}/grown", grown, SMP)
    assert (code, got["spec"]["resources"]["requests"]["storage"]) == (200, "2Gi")
    code, status = call(server, "PATCH", f"{PVCS}/grown", {"spec": {"resources": {
        "requests": {"storage": "512Mi"}}}}, SMP)
    assert code == 422 and status["message"].endswith(
        "spec.resources.requests.storage: Forbidden: field can not be less than "
        "status.capacity")
    # A bound claim without a class may not grow, even with an expandable default class
    # (`allowResize` looks up no default: admission named it at create, if there was one).
    server.store.put({**pvc(), "metadata": {"name": "classless", "namespace": NS}})
    server.store.update("PersistentVolumeClaim", NS, "classless", lambda o: o.__setitem__(
        "status", {"phase": "Bound", "capacity": {"storage": "1Gi"}}))
    call(server, "POST", "/apis/storage.k8s.io/v1/storageclasses", {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "x",
        "allowVolumeExpansion": True, "metadata": {"name": "default", "annotations": {
            "storageclass.kubernetes.io/is-default-class": "true"}}})
    code, status = call(server, "PATCH", f"{PVCS}/classless", {"spec": {"resources": {
        "requests": {"storage": "2Gi"}}}}, SMP)
    assert (code, status["reason"]) == (403, "Forbidden"), status


def test_a_new_claim_without_a_class_gets_the_newest_default_class(server: ApiServer) -> None:
    """The DefaultStorageClass admission plugin: only at create, only for a claim that names
    no class ("" is a name: no class), the newest of several defaults."""
    classes = "/apis/storage.k8s.io/v1/storageclasses"
    assert call(server, "POST", PVCS, pvc())[1]["spec"].get("storageClassName") is None
    for name in ("old", "new"):
        call(server, "POST", classes, {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "x",
            "metadata": {"name": name, "annotations": {
                "storageclass.kubernetes.io/is-default-class": "true"}}})
        server.store.update("StorageClass", "", name, lambda o, n=name: o["metadata"].__setitem__(
            "creationTimestamp", "2026-01-01T00:00:00Z" if n == "old" else "2026-02-01T00:00:00Z"))
    for name, cls, want in (("a", None, "new"), ("b", "", ""), ("c", "old", "old")):
        body = pvc(cls=cls)
        if cls == "":
            body["spec"]["storageClassName"] = ""
        body["metadata"]["name"] = name
        code, got = call(server, "POST", PVCS, body)
        assert (code, got["spec"]["storageClassName"]) == (201, want), got
    # An update is not admitted again: the claim made before any default keeps no class.
    code, got = call(server, "PATCH", f"{PVCS}/data", {"metadata": {"labels": {"x": "y"}}},
                     MERGE)
    assert code == 200 and "storageClassName" not in got["spec"], got


def test_service_cluster_ip_may_not_change_once_set(server: ApiServer) -> None:
    """validateUpgradeDowngradeClusterIPs; an update without clusterIP keeps the old one
    (patchAllocatedValues)."""
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "h"},
           "spec": {"clusterIP": "None", "selector": {"a": "b"}, "ports": [{"port": 80}]}}
    assert call(server, "POST", SVCS, svc)[0] == 201
    code, status = call(server, "PATCH", f"{SVCS}/h", {"spec": {"clusterIP": "10.0.0.9",
                                                                "clusterIPs": ["10.0.0.9"]}},
                        MERGE)
    assert code == 422
    assert status["message"] == ('Service "h" is invalid: spec.clusterIPs[0]: Invalid value: '
                                 '["10.0.0.9"]: may not change once set')
    put = copy.deepcopy(svc)
    del put["spec"]["clusterIP"]
    code, got = call(server, "PUT", f"{SVCS}/h", put)
    assert (code, got["spec"]["clusterIP"]) == (200, "None")


def test_job_selector_and_template_are_immutable(server: ApiServer) -> None:
    """ValidateJobSpecUpdate."""
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "c", "image": "i"}]}}}}
    assert call(server, "POST", JOBS, job)[0] == 201
    code, status = call(server, "PATCH", f"{JOBS}/j", {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "j"}]}}}}, SMP)
    assert code == 422
    assert status["message"].startswith('Job.batch "j" is invalid: spec.template: Invalid '
                                        "value: ")
    assert status["message"].endswith(": field is immutable")
    assert call(server, "PATCH", f"{JOBS}/j", {"spec": {"backoffLimit": 2}}, SMP)[0] == 200
