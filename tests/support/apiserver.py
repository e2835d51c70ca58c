"""A stand-in for the Kubernetes API server, for the real `kubernetes` client and for the
real `helm` (3 and 4) and `kubectl` binaries.

No API server can run on these machines (no kube-apiserver binary, no container runtime),
so this one holds objects in memory and speaks the parts of the REST API those clients use.
What it implements, and where the behaviour comes from (upstream paths are of
k8s.io/apiserver, k8s.io/apimachinery and k8s.io/api at v0.32.x, the libraries of
Kubernetes 1.32, unless said otherwise):

- `/version`, `/healthz`, `/readyz`, `/livez`; legacy discovery (`/api`, `/api/v1`, `/apis`,
  `/apis/<group>`, `/apis/<group>/<version>`) with each resource's kind, verbs, namespaced
  flag, short names and subresources (`status`, `scale` as autoscaling/v1 Scale,
  `pods/log`). Clients ask for aggregated discovery (`Accept:
  application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList, ...,
  application/json`); the stand-in answers with the plain `application/json` document, as
  a server without aggregated discovery does, and client-go reads the legacy documents
  (k8s.io/client-go/discovery/discovery_client.go `downloadAPIs`/`downloadLegacy` decide by
  the response's content type).
- `/openapi/v3` and `/openapi/v3/<api|apis/group>/<version>`: a minimal but truthful
  document, the PATCH operation of every resource with its
  `x-kubernetes-group-version-kind` and its query parameters (`fieldValidation`,
  `fieldManager`, `force`, `dryRun`), and no schemas. kubectl's validator (used by helm's
  `Build(validate=true)`) reads exactly that to learn that the server validates fields
  itself and then skips client-side schema validation
  (k8s.io/cli-runtime/pkg/resource/query_param_verifier_v3.go `supportsQueryParamV3`,
  k8s.io/kubectl/pkg/validation/schema.go `paramVerifyingSchema`). `/openapi/v2` is 404.
  The stand-in keeps unknown fields (it has no schemas): server-side field validation is
  NOT implemented, `fieldValidation=Strict` is accepted and ignored.
- Storage for every kind the chart renders and the controllers make (RESOURCE_TYPES):
  create (generateName, AlreadyExists, `stringData` folded into a Secret's `data`, status
  dropped on create for kinds with a status subresource), get, list and watch with label
  selectors (the whole grammar of k8s.io/apimachinery/pkg/labels/selector.go `Parse`:
  `=`, `==`, `!=`, `in`, `notin`, `key`, `!key`, `>`, `<`) and field selectors
  (`metadata.name`, `metadata.namespace` and the pod, secret and event fields the real
  server knows; others are a 400), update (PUT, resourceVersion precondition), patch,
  delete with `propagationPolicy` (Background, Foreground, Orphan; a simple garbage
  collector follows ownerReferences), the `status` subresource (main-resource writes keep
  the status, status writes keep the rest), and `scale` (GET/PUT/PATCH of an
  autoscaling/v1 Scale onto `spec.replicas`).
- Watches: `resourceVersion` semantics of k8s.io/apiserver/pkg/storage/cacher (unset or
  "0": the current objects as ADDED first; a version: only the events after it, from a
  bounded history, 410 Expired beyond it), events filtered by label and field selectors
  (an object leaving the selection is DELETED, one entering it ADDED), `timeoutSeconds`,
  and `sendInitialEvents=true` (watch-list: initial ADDED events, then a BOOKMARK with the
  `k8s.io/initial-events-end` annotation).
- PATCH content types (k8s.io/apiserver/pkg/endpoints/handlers/patch.go):
  `application/json-patch+json` (RFC 6902), `application/merge-patch+json` (RFC 7386),
  `application/strategic-merge-patch+json` (a port of the apply side of
  k8s.io/apimachinery/pkg/util/strategicpatch/patch.go, see `strategic_merge_patch`, with
  the patch strategies and merge keys of the struct tags in k8s.io/api, PATCH_TYPES), and
  `application/apply-patch+yaml` (server-side apply, simplified: see `ManagedFields`);
  any other content type is a 415. The stand-in serves no custom resources.
- metadata.managedFields for every write through HTTP: the manager is the `fieldManager`
  parameter or the User-Agent up to its first "/" (k8s.io/apiserver/pkg/endpoints/handlers/
  rest.go `managerOrUserAgent`); subresource writes are recorded with their `subresource`.
- RBAC (`rbac=True`): Kubernetes' rules for ServiceAccount tokens from Roles, ClusterRoles,
  RoleBindings and ClusterRoleBindings (verbs, resources incl. `resource/subresource`,
  resourceNames, and the rule that a list or watch limited by resourceNames must select
  that name with a `metadata.name` field selector); `admin_token()` stands for a
  `system:masters` identity (what a kubeconfig of kind or minikube gives). Discovery and
  `/version` are open to everyone, as the `system:discovery` and
  `system:public-info-viewer` roles make them.
- Namespaces: with `require_namespaces=True` a create in a namespace that does not exist
  is a 404, as the NamespaceLifecycle admission plugin makes it.
- Admission at create: a Service gets a cluster IP (`allocate_cluster_ip`), a claim that
  names no StorageClass gets the default one if there is one (`admit_default_class`).

- Defaulting and update validation (`apply_defaults`, VALIDATORS): the upstream rules for
  StatefulSet, Deployment, PersistentVolumeClaim (with the resize admission check),
  Service and Job, answered with the real 422 Invalid Status (`invalid_error`).
- Field types, for one case only: a container's `env[].name` or `env[].value` that is not
  a string (what `helm --set ...value=100` renders) is refused on every write path as the
  typed decoding of the real server refuses it (`check_field_types`: 400 on create and
  update, 422 on patches, 500 on server-side apply); other fields' types are not checked.

Not implemented: defaulting, validation and admission beyond those (other objects are
stored as sent),
protobuf and CBOR (JSON only), tables for `kubectl get` (the client prints lists itself),
pagination (`limit` is ignored; every list is complete), aggregated discovery, finalizers
other than foreground deletion's, Service IP ranges other than one IPv4 range, and
authentication other than bearer tokens.

It can serve plain HTTP (unit tests) or HTTPS with its own CA (pods' in-cluster config and
the binaries' kubeconfig).
"""

from __future__ import annotations

import base64
import collections
import copy
import decimal
import hashlib
import ipaddress
import json
import queue
import re
import secrets
import ssl
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Obj = dict[str, Any]
KUBERNETES_VERSION = ("1", "32", "v1.32.3")


def replace_with(new: Obj) -> Callable[[Obj], None]:
    """A Store.update change that makes the object `new`."""

    def change(obj: Obj) -> None:
        obj.clear()
        obj.update(new)

    return change


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def group_of(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


# -- resources ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """One REST resource: what discovery says of it and where it is stored (by kind)."""

    plural: str
    kind: str
    group_version: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        return group_of(self.group_version)

    @property
    def version(self) -> str:
        return self.group_version.rsplit("/", 1)[-1]


VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
RESOURCE_TYPES = [
    Resource("configmaps", "ConfigMap", "v1", short_names=("cm",)),
    Resource("endpoints", "Endpoints", "v1", short_names=("ep",)),
    Resource("events", "Event", "v1", short_names=("ev",)),
    Resource("namespaces", "Namespace", "v1", namespaced=False, short_names=("ns",),
             subresources=("status",)),
    Resource("persistentvolumeclaims", "PersistentVolumeClaim", "v1", short_names=("pvc",),
             subresources=("status",)),
    Resource("persistentvolumes", "PersistentVolume", "v1", namespaced=False,
             short_names=("pv",), subresources=("status",)),
    Resource("pods", "Pod", "v1", short_names=("po",), subresources=("status", "log"),
             categories=("all",)),
    Resource("secrets", "Secret", "v1"),
    Resource("serviceaccounts", "ServiceAccount", "v1", short_names=("sa",)),
    Resource("services", "Service", "v1", short_names=("svc",), subresources=("status",),
             categories=("all",)),
    Resource("controllerrevisions", "ControllerRevision", "apps/v1"),
    Resource("daemonsets", "DaemonSet", "apps/v1", short_names=("ds",),
             subresources=("status",), categories=("all",)),
    Resource("deployments", "Deployment", "apps/v1", short_names=("deploy",),
             subresources=("status", "scale"), categories=("all",)),
    Resource("replicasets", "ReplicaSet", "apps/v1", short_names=("rs",),
             subresources=("status", "scale"), categories=("all",)),
    Resource("statefulsets", "StatefulSet", "apps/v1", short_names=("sts",),
             subresources=("status", "scale"), categories=("all",)),
    Resource("cronjobs", "CronJob", "batch/v1", short_names=("cj",), subresources=("status",),
             categories=("all",)),
    Resource("jobs", "Job", "batch/v1", subresources=("status",), categories=("all",)),
    Resource("horizontalpodautoscalers", "HorizontalPodAutoscaler", "autoscaling/v2",
             short_names=("hpa",), subresources=("status",), categories=("all",)),
    Resource("poddisruptionbudgets", "PodDisruptionBudget", "policy/v1", short_names=("pdb",),
             subresources=("status",)),
    Resource("ingressclasses", "IngressClass", "networking.k8s.io/v1", namespaced=False),
    Resource("ingresses", "Ingress", "networking.k8s.io/v1", short_names=("ing",),
             subresources=("status",)),
    Resource("networkpolicies", "NetworkPolicy", "networking.k8s.io/v1",
             short_names=("netpol",)),
    Resource("clusterrolebindings", "ClusterRoleBinding", "rbac.authorization.k8s.io/v1",
             namespaced=False),
    Resource("clusterroles", "ClusterRole", "rbac.authorization.k8s.io/v1", namespaced=False),
    Resource("rolebindings", "RoleBinding", "rbac.authorization.k8s.io/v1"),
    Resource("roles", "Role", "rbac.authorization.k8s.io/v1"),
    Resource("storageclasses", "StorageClass", "storage.k8s.io/v1", namespaced=False,
             short_names=("sc",)),
]
BY_PATH = {(r.group_version, r.plural): r for r in RESOURCE_TYPES}
BY_KIND = {r.kind: r for r in RESOURCE_TYPES}
# Kept for callers of the earlier stand-in: resource (URL) -> (kind, apiVersion).
RESOURCES = {r.plural: (r.kind, r.group_version) for r in RESOURCE_TYPES}
KIND_RESOURCE = {r.kind: r.plural for r in RESOURCE_TYPES}


def group_versions() -> list[str]:
    return list(dict.fromkeys(r.group_version for r in RESOURCE_TYPES))


def resource_list(group_version: str) -> Obj:
    """The APIResourceList of one group version (legacy discovery)."""
    out: list[Obj] = []
    for r in RESOURCE_TYPES:
        if r.group_version != group_version:
            continue
        entry: Obj = {"name": r.plural, "singularName": r.kind.lower(),
                      "namespaced": r.namespaced, "kind": r.kind, "verbs": VERBS,
                      "storageVersionHash": base64.b64encode(hashlib.sha256(
                          f"{r.group_version}/{r.kind}".encode()).digest()[:8]).decode()}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        out.append(entry)
        for sub in r.subresources:
            sub_entry: Obj = {"name": f"{r.plural}/{sub}", "singularName": "",
                              "namespaced": r.namespaced, "kind": r.kind,
                              "verbs": ["get", "patch", "update"]}
            if sub == "scale":
                sub_entry.update(group="autoscaling", version="v1", kind="Scale")
            if sub == "log":
                sub_entry["verbs"] = ["get"]
            out.append(sub_entry)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": out}


def api_group(group: str) -> Obj:
    versions = [{"groupVersion": gv, "version": gv.split("/")[1]}
                for gv in group_versions() if group_of(gv) == group]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions,
            "preferredVersion": versions[0]}


def openapi_v3_doc(group_version: str) -> Obj:
    """The PATCH operations of one group version, with their query parameters: what
    kubectl's field-validation verifier looks for (no schemas)."""
    params = [{"name": n, "in": "query", "schema": {"type": t}, "uniqueItems": True}
              for n, t in (("dryRun", "string"), ("fieldManager", "string"),
                           ("fieldValidation", "string"), ("force", "boolean"))]
    paths: Obj = {}
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    for r in RESOURCE_TYPES:
        if r.group_version != group_version:
            continue
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        scope = "/namespaces/{namespace}" if r.namespaced else ""
        paths[f"{prefix}{scope}/{r.plural}/{{name}}"] = {"patch": {
            "operationId": f"patch{r.kind}", "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk, "parameters": params,
            "responses": {"200": {"description": "OK"}}}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes",
                                         "version": KUBERNETES_VERSION[2]},
            "paths": paths, "components": {"schemas": {}}}


# -- selectors ---------------------------------------------------------------------------


class BadRequest(Exception):
    pass


Requirement = tuple[str, str, tuple[str, ...]]  # key, operator, values


def parse_label_selector(text: str | None) -> list[Requirement]:
    """The grammar of k8s.io/apimachinery/pkg/labels/selector.go `Parse`."""
    out: list[Requirement] = []
    depth, start, parts = 0, 0, []
    text = text or ""
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if m := re.fullmatch(r"([^\s!=<>(),]+)\s+(in|notin)\s*\(([^)]*)\)", part):
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            out.append((m.group(1), m.group(2), values))
        elif m := re.fullmatch(r"([^\s!=<>(),]+)\s*(==|!=|=|>|<)\s*([^\s,]*)", part):
            op = {"==": "=", "=": "="}.get(m.group(2), m.group(2))
            out.append((m.group(1), op, (m.group(3),)))
        elif m := re.fullmatch(r"!\s*([^\s!=<>(),]+)", part):
            out.append((m.group(1), "!exists", ()))
        elif re.fullmatch(r"[^\s!=<>(),]+", part):
            out.append((part, "exists", ()))
        else:
            raise BadRequest(f"unable to parse requirement: {part!r}")
    return out


def parse_selector(text: str | None) -> dict[str, str]:
    """`a=b,c=d` as a dict (equality requirements only; kept for callers)."""
    return {k: v[0] for k, op, v in parse_label_selector(text) if op == "="}


def matches(requirements: Iterable[Requirement], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    for key, op, values in requirements:
        has, value = key in labels, labels.get(key)
        if op == "=":
            ok = has and value == values[0]
        elif op == "!=":
            ok = not has or value != values[0]
        elif op == "in":
            ok = has and value in values
        elif op == "notin":
            ok = not has or value not in values
        elif op == "exists":
            ok = has
        elif op == "!exists":
            ok = not has
        else:  # ">" and "<" compare integers
            try:
                number, bound = int(str(value)), int(values[0])
                ok = has and (number > bound if op == ">" else number < bound)
            except ValueError:
                ok = False
        if not ok:
            return False
    return True


def labels_match(selector: dict[str, str], labels: dict[str, str] | None) -> bool:
    return matches([(k, "=", (v,)) for k, v in selector.items()], labels)


# The field selectors the real server knows beyond metadata.name and metadata.namespace
# (pkg/registry/core/pod/strategy.go ToSelectableFields and its siblings).
FIELD_LABELS = {
    "Pod": {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
            "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
            "status.nominatedNodeName"},
    "Secret": {"type"},
    "Event": {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
              "involvedObject.uid", "involvedObject.apiVersion",
              "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
              "reportingComponent", "source", "type"},
    "Job": {"status.successful"},
}


def parse_field_selector(text: str | None, kind: str) -> list[Requirement]:
    out: list[Requirement] = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        m = re.fullmatch(r"([^=!]+?)\s*(==|!=|=)\s*(.*)", part)
        if not m:
            raise BadRequest(f"invalid field selector: {part!r}")
        key = m.group(1)
        if key not in ("metadata.name", "metadata.namespace") and \
                key not in FIELD_LABELS.get(kind, set()):
            raise BadRequest(f'"{key}" is not a known field selector: only '
                             '"metadata.name", "metadata.namespace"')
        out.append((key, "!=" if m.group(2) == "!=" else "=", (m.group(3),)))
    return out


def field_value(obj: Obj, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def fields_match(requirements: Iterable[Requirement], obj: Obj) -> bool:
    return all((field_value(obj, k) == v[0]) == (op == "=") for k, op, v in requirements)


# -- patches -----------------------------------------------------------------------------


class PatchError(Exception):
    """A patch that cannot be applied: `code` is the HTTP status the server answers."""

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.code = code


def merge(base: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386): maps merge, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(base) if isinstance(base, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out


def json_patch(doc: Any, operations: list[Obj]) -> Any:
    """JSON patch (RFC 6902): add, remove, replace, move, copy, test."""
    doc = copy.deepcopy(doc)

    def split(pointer: str) -> list[str]:
        if pointer == "":
            return []
        if not pointer.startswith("/"):
            raise PatchError(f"invalid JSON pointer {pointer!r}")
        return [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]

    def parent(root: Any, parts: list[str]) -> tuple[Any, str]:
        node = root
        for p in parts[:-1]:
            try:
                node = node[int(p)] if isinstance(node, list) else node[p]
            except (KeyError, IndexError, ValueError):
                raise PatchError(f"path {'/'.join(parts)} does not exist") from None
        return node, parts[-1]

    def get(root: Any, pointer: str) -> Any:
        parts = split(pointer)
        if not parts:
            return root
        node, last = parent(root, parts)
        try:
            return node[int(last)] if isinstance(node, list) else node[last]
        except (KeyError, IndexError, ValueError):
            raise PatchError(f"path {pointer} does not exist") from None

    def remove(root: Any, pointer: str) -> Any:
        node, last = parent(root, split(pointer))
        try:
            return node.pop(int(last)) if isinstance(node, list) else node.pop(last)
        except (KeyError, IndexError, ValueError):
            raise PatchError(f"unable to remove nonexistent key {pointer}") from None

    def add(root: Any, pointer: str, value: Any) -> Any:
        parts = split(pointer)
        if not parts:
            return value
        node, last = parent(root, parts)
        if isinstance(node, list):
            if last == "-":
                node.append(value)
            else:
                index = int(last)
                if index > len(node):
                    raise PatchError(f"index {index} out of bounds")
                node.insert(index, value)
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise PatchError(f"cannot add at {pointer}")
        return root

    for op in operations:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "add":
            doc = add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            remove(doc, path)
        elif kind == "replace":
            get(doc, path)
            if split(path):
                remove(doc, path)
            doc = add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "move":
            value = remove(doc, op["from"])
            doc = add(doc, path, value)
        elif kind == "copy":
            doc = add(doc, path, copy.deepcopy(get(doc, op["from"])))
        elif kind == "test":
            if get(doc, path) != op.get("value"):
                raise PatchError(f"testing value {path} failed")
        else:
            raise PatchError(f"unexpected JSON patch operation {kind!r}")
    return doc


@dataclass(frozen=True)
class F:
    """One field of an API type: its type (for nested lookups), its strategic-merge-patch
    strategy and merge key (the struct tags), and how server-side apply sees its list
    (x-kubernetes-list-type / list-map-keys markers; "atomic" also for atomic structs)."""

    type: str | None = None
    strategy: str = ""
    merge_key: str = ""
    ssa: str = ""  # "", "map", "set" or "atomic"
    keys: tuple[str, ...] = ()


def _merge_list(type_: str | None, key: str, ssa_keys: tuple[str, ...] = ()) -> F:
    return F(type_, "merge", key, "map", ssa_keys or (key,))


# The fields of the kinds the chart renders (and their parts) that carry patch strategies,
# merge keys or list types; every other list is atomic and every other map merges. Sources:
# k8s.io/api core/v1/types.go (PodSpec: volumes `patchStrategy:"merge,retainKeys"
# patchMergeKey:"name"`, initContainers/containers/ephemeralContainers
# `patchStrategy:"merge" patchMergeKey:"name"`, imagePullSecrets merge/name, hostAliases
# merge/ip, topologySpreadConstraints merge/topologyKey with listMapKeys topologyKey and
# whenUnsatisfiable, schedulingGates merge/name, resourceClaims merge,retainKeys/name;
# Container: ports merge/containerPort with listMapKeys containerPort and protocol, env
# merge/name, volumeMounts merge/mountPath, volumeDevices merge/devicePath; PodStatus:
# conditions merge/type, podIPs and hostIPs merge/ip; ServiceSpec: ports merge/port with
# listMapKeys port and protocol; ServiceAccount: secrets merge/name;
# PersistentVolumeClaimStatus: conditions merge/type), apps/v1/types.go (DeploymentSpec:
# strategy `patchStrategy:"retainKeys"`; StatefulSet/Deployment/ReplicaSet/DaemonSet
# status conditions merge/type), batch/v1/types.go (JobStatus conditions merge/type),
# policy/v1/types.go (PodDisruptionBudgetSpec: selector `patchStrategy:"replace"`; status
# conditions merge/type), autoscaling/v2/types.go (HPA status conditions merge/type), and
# k8s.io/apimachinery pkg/apis/meta/v1/types.go (ObjectMeta: ownerReferences
# merge/uid, finalizers `patchStrategy:"merge"`; LabelSelector and OwnerReference are
# `+structType=atomic`).
META = {"ownerReferences": F("OwnerReference", "merge", "uid", "map", ("uid",)),
        "finalizers": F(None, "merge", "", "set")}
SELECTOR = F("LabelSelector", ssa="atomic")
CONDITIONS = _merge_list("Condition", "type")
POD_TEMPLATE = F("PodTemplateSpec")
PATCH_TYPES: dict[str, dict[str, F]] = {
    "ObjectMeta": META,
    "PodTemplateSpec": {"metadata": F("ObjectMeta"), "spec": F("PodSpec")},
    "PodSpec": {
        "volumes": F("Volume", "merge,retainKeys", "name", "map", ("name",)),
        "initContainers": _merge_list("Container", "name"),
        "containers": _merge_list("Container", "name"),
        "ephemeralContainers": _merge_list("Container", "name"),
        "imagePullSecrets": _merge_list(None, "name"),
        "hostAliases": _merge_list(None, "ip"),
        "topologySpreadConstraints": _merge_list("TopologySpreadConstraint", "topologyKey",
                                                 ("topologyKey", "whenUnsatisfiable")),
        "schedulingGates": _merge_list(None, "name"),
        "resourceClaims": F(None, "merge,retainKeys", "name", "map", ("name",)),
        "affinity": F("Affinity"),
    },
    "TopologySpreadConstraint": {"labelSelector": SELECTOR},
    "Affinity": {"podAffinity": F("PodAffinity"), "podAntiAffinity": F("PodAffinity")},
    "Container": {
        "ports": _merge_list(None, "containerPort", ("containerPort", "protocol")),
        "env": _merge_list("EnvVar", "name"),
        "volumeMounts": _merge_list(None, "mountPath"),
        "volumeDevices": _merge_list(None, "devicePath"),
    },
    "PodStatus": {"conditions": CONDITIONS, "podIPs": _merge_list(None, "ip"),
                  "hostIPs": _merge_list(None, "ip")},
    "ServiceSpec": {"ports": _merge_list(None, "port", ("port", "protocol")),
                    "selector": F()},
    "StatefulSetSpec": {"template": POD_TEMPLATE, "selector": SELECTOR},
    "DeploymentSpec": {"template": POD_TEMPLATE, "selector": SELECTOR,
                       "strategy": F(None, "retainKeys")},
    "ReplicaSetSpec": {"template": POD_TEMPLATE, "selector": SELECTOR},
    "DaemonSetSpec": {"template": POD_TEMPLATE, "selector": SELECTOR},
    "JobSpec": {"template": POD_TEMPLATE, "selector": SELECTOR},
    "CronJobSpec": {"jobTemplate": F("JobTemplateSpec")},
    "JobTemplateSpec": {"metadata": F("ObjectMeta"), "spec": F("JobSpec")},
    "PodDisruptionBudgetSpec": {"selector": F("LabelSelector", "replace", ssa="atomic")},
    "ConditionsStatus": {"conditions": CONDITIONS},
}
KIND_TYPES = {  # kind -> (spec type, status type)
    "Pod": ("PodSpec", "PodStatus"),
    "StatefulSet": ("StatefulSetSpec", "ConditionsStatus"),
    "Deployment": ("DeploymentSpec", "ConditionsStatus"),
    "ReplicaSet": ("ReplicaSetSpec", "ConditionsStatus"),
    "DaemonSet": ("DaemonSetSpec", "ConditionsStatus"),
    "Job": ("JobSpec", "ConditionsStatus"),
    "CronJob": ("CronJobSpec", None),
    "Service": ("ServiceSpec", "ConditionsStatus"),
    "PersistentVolumeClaim": (None, "ConditionsStatus"),
    "PodDisruptionBudget": ("PodDisruptionBudgetSpec", "ConditionsStatus"),
    "HorizontalPodAutoscaler": (None, "ConditionsStatus"),
}
for _kind in BY_KIND:
    _spec, _status = KIND_TYPES.get(_kind, (None, None))
    PATCH_TYPES[_kind] = {"metadata": F("ObjectMeta"), "spec": F(_spec), "status": F(_status)}
PATCH_TYPES["ServiceAccount"]["secrets"] = _merge_list(None, "name")


class Schema:
    """Patch metadata of one type (LookupPatchMeta in strategicpatch/meta.go). A field the
    table does not know has no strategy: its lists are replaced, its maps merged."""

    def __init__(self, type_name: str | None, types: dict[str, dict[str, F]] | None = None
                 ) -> None:
        self.type_name = type_name
        self.types = PATCH_TYPES if types is None else types

    def field(self, key: str) -> tuple[Schema, F]:
        spec = (self.types.get(self.type_name or "") or {}).get(key, F())
        return Schema(spec.type, self.types), spec


MARKER, DELETE, REPLACE, MERGE = "$patch", "delete", "replace", "merge"
RETAIN_KEYS = "$retainKeys"
DELETE_PRIMITIVE = "$deleteFromPrimitiveList"
SET_ORDER = "$setElementOrder"


def _kind_of(value: Any) -> str:
    """The Go type a JSON value decodes to (numbers are all float64 in Go)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _strategy(spec: F) -> str:
    """extractRetainKeysPatchStrategy: the strategy other than retainKeys."""
    parts = [s for s in spec.strategy.split(",") if s]
    others = [s for s in parts if s != "retainKeys"]
    if len(parts) > 2 or len(others) > 1:
        raise PatchError(f"unexpected patch strategy: {parts}")
    return others[0] if others else ""


def _remove_directives(obj: Any) -> tuple[Any, bool]:
    if isinstance(obj, dict):
        if MARKER in obj:
            return None, False
        out = {}
        for k, v in obj.items():
            v2, keep = _remove_directives(v)
            if keep:
                out[k] = v2
        return out, True
    if isinstance(obj, list):
        return [v2 for v2, keep in map(_remove_directives, obj) if keep], True
    return obj, True


def drop_nulls(value: Any) -> None:
    """Remove every null field, in place. A merge patch's null deletes; and a field sent as
    null is decoded into the typed object as unset (a nil pointer, slice or map), so it is
    not stored: `rollingUpdate: null` clears a StatefulSet's rollingUpdate
    (k8s.io/apimachinery runtime/serializer/json decodes into the Go types; their fields
    are `omitempty`)."""
    if isinstance(value, dict):
        for k in [k for k, v in value.items() if v is None]:
            del value[k]
        for v in value.values():
            drop_nulls(v)
    elif isinstance(value, list):
        for v in value:
            drop_nulls(v)


def _element_kind(*lists: list[Any]) -> str:
    """sliceElementType: all elements of one type, not lists."""
    found = None
    for items in lists:
        for v in items:
            kind = _kind_of(v)
            if found is None:
                if kind == "list":
                    raise PatchError("lists of lists are not supported")
                found = kind
            elif kind != found:
                raise PatchError(f"list element types are not identical: {lists}")
    if found is None:
        raise PatchError("no elements in any of the given slices")
    return found


def _key_of(item: Any, merge_key: str, kind: str) -> Any:
    return item.get(merge_key) if kind == "dict" and isinstance(item, dict) else item


def _index(items: list[Any], value: Any, merge_key: str, kind: str) -> int:
    wanted = _key_of(value, merge_key, kind)
    for i, v in enumerate(items):
        if _key_of(v, merge_key, kind) == wanted:
            return i
    return -1


def _normalize_slice_order(to_sort: list[Any], order: list[Any], merge_key: str,
                           kind: str) -> list[Any]:
    to_delete: list[Any] = []
    if kind == "dict":
        for item in [*to_sort, *order]:
            if not isinstance(item, dict) or merge_key not in item:
                raise PatchError(f"map: {item} does not contain declared merge key: "
                                 f"{merge_key}")
        to_delete = [v for v in to_sort if v.get(MARKER) == DELETE]
        to_sort = [v for v in to_sort if v.get(MARKER) != DELETE]
    # sort.SliceStable with less(i, j) = both found in order and i before j, else true:
    # for the items found in `order` that is their order; upstream's comparator is not a
    # strict order otherwise, and for the lists patches make the effect is "found items
    # by order, unfound ones kept where they are relative to each other". The port does
    # what the Go code does: an insertion sort with the same `less`.
    items = list(to_sort)

    def less(a: Any, b: Any) -> bool:
        ia = _index(order, a, merge_key, kind)
        if ia >= 0:
            ib = _index(order, b, merge_key, kind)
            if ib >= 0:
                return ia < ib
        return True

    # Go's sort.SliceStable is an insertion sort for fewer than 20 elements and a
    # merge-based stable sort otherwise; with a consistent `less` both agree.
    for i in range(1, len(items)):
        j = i
        while j > 0 and less(items[j], items[j - 1]):
            items[j], items[j - 1] = items[j - 1], items[j]
            j -= 1
    return items + to_delete


def _merge_sorted(left: list[Any], right: list[Any], server_order: list[Any], merge_key: str,
                  kind: str) -> list[Any]:
    """mergeSortedSlice: server-only items (left) into patch items (right)."""
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li = _index(server_order, left[i], merge_key, kind)
            ri = _index(server_order, right[j], merge_key, kind)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _normalize_element_order(patch: list[Any], server_only: list[Any], patch_order: list[Any],
                             server_order: list[Any], merge_key: str, kind: str) -> list[Any]:
    patch = _normalize_slice_order(patch, patch_order, merge_key, kind)
    server_only = _normalize_slice_order(server_only, server_order, merge_key, kind)
    return _merge_sorted(server_only, patch, server_order, merge_key, kind)


def _partition(items: list[Any], by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    if not merge_key:
        return [v for v in items if v in by], [v for v in items if v not in by]
    keys = []
    for v in by:
        if not isinstance(v, dict):
            raise PatchError(f"value for key {v} is not a map")
        keys.append(v.get(merge_key))
    inside: list[Any] = []
    outside: list[Any] = []
    for v in items:
        if not isinstance(v, dict) or merge_key not in v:
            raise PatchError(f"map: {v} does not contain declared merge key: {merge_key}")
        (inside if v[merge_key] in keys else outside).append(v)
    return inside, outside


def _dedup_scalars(items: list[Any]) -> list[Any]:
    """deduplicateScalars, with its (order-changing) swap-with-last algorithm."""
    s = list(items)
    length = len(s) - 1
    i = 0
    while i < length:
        j = i + 1
        while j <= length:
            if s[i] == s[j] and _kind_of(s[i]) == _kind_of(s[j]):
                s[j] = s[length]
                s = s[:length]
                length -= 1
                j -= 1
            j += 1
        i += 1
    return s


class GoList:
    """A Go slice over a live list: deletions shift within the backing array, appends
    use its spare capacity, and the caller's slice header (the first `len(caller)`
    elements of the first backing array) sees both, until an append reallocates."""

    def __init__(self, caller: list[Any]) -> None:
        self.caller = caller
        self.length = len(caller)
        cap = 1
        while cap < self.length:
            cap *= 2
        self.items: list[Any] = list(caller) + [None] * (cap - self.length if caller else 0)
        self.first = self.items
        self.n = self.length

    def delete_matching(self, key: str, value: Any) -> None:
        while (at := self.find(key, value)) is not None:
            self.items[at:self.n - 1] = self.items[at + 1:self.n]
            self.n -= 1

    def find(self, key: str, value: Any) -> int | None:
        for i in range(self.n):
            item = self.items[i]
            if not isinstance(item, dict):
                raise PatchError(f"value for key {i} is not a map")
            if item.get(key) == value:
                return i
        return None

    def append(self, value: Any) -> None:
        if self.n < len(self.items):
            self.items[self.n] = value
        else:
            grown = max(1, 2 * len(self.items))
            self.items = self.items[:self.n] + [value] + [None] * (grown - self.n - 1)
        self.n += 1

    def view(self) -> list[Any]:
        return self.items[:self.n]

    def detach(self) -> None:
        self.items = []
        self.n = 0

    def write_back(self) -> None:
        self.caller[:] = self.first[:self.length]


def _merge_slice(original: list[Any], patch: list[Any], schema: Schema, merge_key: str,
                 parallel: bool, delete_list: bool) -> list[Any]:
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    if kind != "dict":
        if parallel and delete_list:
            return [v for v in original if v not in patch]
        merged = _dedup_scalars(original + patch)
    else:
        if not merge_key:
            raise PatchError(f"cannot merge lists without merge key for {schema.type_name}")
        # Upstream works on Go slices: deleting an element shifts the rest left in the
        # live list's own backing array, and appending writes into its spare capacity, so
        # the caller's view of the live list (which mergePatchIntoOriginal then uses as the
        # "server order" of a $setElementOrder) changes too. GoList emulates that, with the
        # capacity of a slice grown by appends (the next power of two); upstream's test
        # "add map and delete map from merging list" depends on it.
        live = GoList(original)
        # mergeSliceWithSpecialElements
        plain, replace = [], False
        for v in patch:
            directive = v.get(MARKER) if isinstance(v, dict) else None
            if directive is None:
                plain.append(v)
            elif directive == DELETE:
                if merge_key not in v:
                    raise PatchError(f"map: {v} does not contain declared merge key: "
                                     f"{merge_key}")
                live.delete_matching(merge_key, v[merge_key])
            elif directive == REPLACE:
                replace = True
            elif directive == MERGE:
                raise PatchError("merging lists cannot yet be specified in the patch")
            else:
                raise PatchError(f"Unknown patch type: {directive} in map: {v}")
        # upstream goes on with the list without the special elements as `patch`
        if replace:
            live.detach()
            original, patch = plain, []
            merged = list(plain)
        else:
            original, patch = live.view(), plain
            # mergeSliceWithoutSpecialElements
            for v in patch:
                if merge_key not in v:
                    raise PatchError(f"map: {v} does not contain declared merge key: "
                                     f"{merge_key}")
                at = live.find(merge_key, v[merge_key])
                if at is not None:
                    live.items[at] = _merge_map(live.items[at], v, schema, parallel)
                else:
                    live.append(v)
            merged = live.view()
        live.write_back()
    patch_items, server_only = _partition(merged, patch, merge_key)
    return _normalize_element_order(patch_items, server_only, patch, original, merge_key, kind)


def _merge_slice_handler(original: Any, patch: Any, schema: Schema, spec: F, parallel: bool,
                         delete_list: bool) -> list[Any]:
    if not isinstance(original, list) or not isinstance(patch, list):
        raise PatchError(f"expected lists, got {original!r} and {patch!r}")
    if _strategy(spec) == MERGE or delete_list:
        return _merge_slice(original, patch, schema, spec.merge_key, parallel, delete_list)
    return patch


def _apply_retain_keys(original: Obj, patch: Obj, parallel: bool) -> None:
    if RETAIN_KEYS not in patch:
        return
    retain = patch.pop(RETAIN_KEYS)
    if not parallel:
        if RETAIN_KEYS in original and original[RETAIN_KEYS] != retain:
            raise PatchError("retainKeys directives differ")
        original.setdefault(RETAIN_KEYS, retain)
        return
    if not isinstance(retain, list):
        raise PatchError("invalid patch: the $retainKeys directive is not a list", 400)
    for k, v in patch.items():
        if v is None or k.startswith((DELETE_PRIMITIVE, SET_ORDER)):
            continue
        if k not in retain:
            raise PatchError("doesn't match the $retainKeys directive", 400)
    for k in [k for k in original if k not in retain]:
        del original[k]


def _extract_key(key: str, prefix: str) -> str:
    head, sep, rest = key.partition("/")
    if not sep or head != prefix:
        what = "$setElementOrder" if prefix == SET_ORDER else "$deleteFromPrimitiveList"
        raise PatchError(f"invalid patch format: bad {what} key {key!r}", 400)
    return rest


def _validate_set_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    if not order or not patch_list:
        return
    items = [v for v in patch_list if not (merge_key and isinstance(v, dict)
                                           and v.get(MARKER) == DELETE)]
    pi = oi = 0
    while pi < len(items) and oi < len(order):
        if isinstance(items[pi], dict) and MARKER in items[pi]:
            pi += 1
            continue
        if (items[pi].get(merge_key) == order[oi].get(merge_key)) if merge_key \
                else items[pi] == order[oi]:
            pi += 1
        oi += 1
    if pi < len(items) and oi >= len(order):
        raise PatchError(f"The order in patch list:\n{patch_list}\n doesn't match "
                         f"$setElementOrder list:\n{order}\n")


def _merge_set_order(original: Obj, patch: Obj, schema: Schema, parallel: bool) -> None:
    """mergePatchIntoOriginal: a $setElementOrder list and the list it orders."""
    for key in [k for k in patch if k.startswith(SET_ORDER)]:
        order = patch.pop(key)
        if not parallel:
            if key in original and original[key] != order:
                raise PatchError("invalid patch format: $setElementOrder lists differ", 400)
            original.setdefault(key, order)
        if not isinstance(order, list):
            raise PatchError(f"invalid $setElementOrder {order!r}", 400)
        name = _extract_key(key, SET_ORDER)
        found_original, found_patch = name in original, name in patch
        original_list = original.get(name) if found_original else None
        patch_list = patch.get(name) if found_patch else None
        if found_original and not isinstance(original_list, list):
            raise PatchError(f"{name} is not a list")
        if found_patch and not isinstance(patch_list, list):
            raise PatchError(f"{name} in the patch is not a list")
        subschema, spec = schema.field(name)
        _strategy(spec)
        _validate_set_order(patch_list or [], order, spec.merge_key)
        if found_original and not found_patch:
            merged = original_list
        elif found_patch and not found_original:
            merged, _ = _remove_directives(patch_list)
        elif found_original and found_patch:
            merged = _merge_slice_handler(original_list, patch_list, subschema, spec,
                                          parallel, False)
        else:
            continue
        assert isinstance(merged, list)
        patch_items, server_only = _partition(merged, order, spec.merge_key)
        kind = _element_kind(original_list or [], patch_list or [])
        original[name] = _normalize_element_order(patch_items, server_only, order,
                                                  original_list or [], spec.merge_key, kind)
        patch.pop(name, None)


def _merge_map(original: Obj | None, patch: Obj, schema: Schema, parallel: bool,
               ignore_unmatched_nulls: bool = True) -> Obj:
    """mergeMap of strategicpatch/patch.go, for the server side (MergeParallelList and
    IgnoreUnmatchedNulls both true, as StrategicMergeMapPatchUsingLookupPatchMeta)."""
    if MARKER in patch:
        directive = patch[MARKER]
        if directive == REPLACE:
            out = dict(patch)
            del out[MARKER]
            return out
        if directive == DELETE:
            return {}
        raise PatchError(f"Unknown patch type: {directive} in map: {patch}")
    original = {} if original is None else original
    _apply_retain_keys(original, patch, parallel)
    _merge_set_order(original, patch, schema, parallel)
    for k, patch_v in list(patch.items()):
        delete_list = False
        if k.startswith(DELETE_PRIMITIVE):
            if not parallel:
                original[k] = patch_v
                continue
            k = _extract_key(k, DELETE_PRIMITIVE)
            delete_list = True
        if patch_v is None:
            original.pop(k, None)
            if ignore_unmatched_nulls:
                continue
        if k not in original or _kind_of(original[k]) != _kind_of(patch_v):
            if not delete_list:
                if ignore_unmatched_nulls:
                    drop_nulls(patch_v)
                value, keep = _remove_directives(patch_v)
                if keep:
                    original[k] = value
                else:
                    original.pop(k, None)
            continue
        subschema, spec = schema.field(k)
        if isinstance(original[k], dict):
            if _strategy(spec) == REPLACE:
                original[k] = patch_v
            else:
                original[k] = _merge_map(original[k], patch_v, subschema, parallel,
                                         ignore_unmatched_nulls)
        elif isinstance(original[k], list):
            original[k] = _merge_slice_handler(original[k], patch_v, subschema, spec,
                                               parallel, delete_list)
        else:
            value, keep = _remove_directives(patch_v)
            if keep:
                original[k] = value
            else:
                original.pop(k, None)
    return original


def strategic_merge_patch(original: Obj, patch: Obj, kind_or_schema: str | Schema) -> Obj:
    """Apply a strategic merge patch as the API server does
    (strategicpatch.StrategicMergeMapPatch). `kind_or_schema` names the kind whose patch
    metadata (PATCH_TYPES) applies, or is a Schema of one's own."""
    schema = kind_or_schema if isinstance(kind_or_schema, Schema) else Schema(kind_or_schema)
    if not isinstance(patch, dict):
        raise PatchError("the patch is not a JSON object", 400)
    return _merge_map(copy.deepcopy(original), copy.deepcopy(patch), schema, parallel=True)


# -- managed fields and server-side apply ---------------------------------------------------

Path_ = tuple[str, ...]
ELEMENT = "."


def _element_key(item: Any, spec: F) -> str:
    if spec.ssa == "set":
        return "v:" + json.dumps(item, separators=(",", ":"))
    keys = {k: item.get(k) for k in spec.keys if isinstance(item, dict) and k in item}
    return "k:" + json.dumps(keys, separators=(",", ":"), sort_keys=True)


def field_leaves(obj: Any, schema: Schema, prefix: Path_ = ()) -> dict[Path_, Any]:
    """The fields of `obj` as server-side apply owns them: path (fieldsV1 keys) -> value.
    Maps are granular; associative lists give each element (marked ".") and its fields;
    set lists each value; atomic lists and atomic structs are one field."""
    out: dict[Path_, Any] = {}
    if not isinstance(obj, dict):
        return {prefix: obj}
    if not obj and prefix:
        return {prefix: {}}
    for k, v in obj.items():
        sub, spec = schema.field(k)
        path = (*prefix, f"f:{k}")
        if isinstance(v, dict) and spec.ssa != "atomic":
            out.update(field_leaves(v, sub, path))
        elif isinstance(v, list) and spec.ssa in ("map", "set"):
            for item in v:
                item_path = (*path, _element_key(item, spec))
                out[(*item_path, ELEMENT)] = True
                if spec.ssa == "map" and isinstance(item, dict):
                    out.update(field_leaves(item, sub, item_path))
        else:
            out[path] = copy.deepcopy(v)
    return out


def fields_v1(paths: Iterable[Path_]) -> Obj:
    root: Obj = {}
    for path in sorted(paths):
        node = root
        for part in path:
            node = node.setdefault(part, {})
    return root


def _remove_field(obj: Obj, path: Path_, schema: Schema) -> None:
    """Remove the field at `path` (a leaf, or a list element when it ends with ".")."""
    node: Any = obj
    spec = F()
    for i, part in enumerate(path):
        last = i == len(path) - 1 or (i == len(path) - 2 and path[-1] == ELEMENT)
        if part.startswith("f:") and isinstance(node, dict):
            name = part[2:]
            schema, spec = schema.field(name)
            if last:
                node.pop(name, None)
                return
            node = node.get(name)
        elif part.startswith(("k:", "v:")) and isinstance(node, list):
            at = next((j for j, item in enumerate(node) if _element_key(item, spec) == part),
                      None)
            if at is None:
                return
            if last:
                node.pop(at)
                return
            node = node[at]
        else:
            return


def _merge_applied(live: Any, applied: Any, schema: Schema, spec: F = F()) -> Any:
    """The applied configuration merged into the live object: maps by key, associative
    lists by their keys (live order, new elements appended), sets by value, the rest
    replaced."""
    if isinstance(live, dict) and isinstance(applied, dict) and spec.ssa != "atomic":
        out = dict(live)
        for k, v in applied.items():
            sub, sub_spec = schema.field(k)
            out[k] = _merge_applied(live.get(k), v, sub, sub_spec)
        return out
    if isinstance(live, list) and isinstance(applied, list) and spec.ssa == "map":
        out_list = list(live)
        for item in applied:
            at = next((i for i, o in enumerate(out_list)
                       if _element_key(o, spec) == _element_key(item, spec)), None)
            if at is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[at] = _merge_applied(out_list[at], item, schema, F())
        return out_list
    if isinstance(live, list) and isinstance(applied, list) and spec.ssa == "set":
        return live + [v for v in applied if v not in live]
    return copy.deepcopy(applied)


class Conflict(Exception):
    def __init__(self, conflicts: list[tuple[str, str, str, str]]) -> None:
        self.conflicts = conflicts  # (manager, subresource, apiVersion, field)
        lines = [f"conflict with \"{m}\"" + (f" with subresource \"{s}\"" if s else "")
                 + f" using {v}: {f}" for m, s, v, f in conflicts]
        n = len(conflicts)
        if n == 1:
            message = f"Apply failed with 1 conflict: {lines[0]}"
        else:
            message = f"Apply failed with {n} conflicts: " + "\n".join(lines)
        super().__init__(message)


def dotted(path: Path_) -> str:
    """`.spec.replicas`, `.spec.template.spec.containers[name="c"].image`, as the
    structured-merge-diff conflict messages name a field."""
    out = ""
    for part in path:
        if part.startswith("f:"):
            out += "." + part[2:]
        elif part.startswith("k:"):
            keys = json.loads(part[2:])
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
        elif part.startswith("v:"):
            out += f"[{part[2:]}]"
    return out


@dataclass
class ManagedFields:
    """Who owns which fields of one object (metadata.managedFields), simplified from
    sigs.k8s.io/structured-merge-diff and k8s.io/apiserver/pkg/endpoints/handlers/
    fieldmanager:

    - a create, update or non-apply patch (operation Update) gives its manager the fields
      it set or changed and takes them from every other manager ("whenever a field's value
      does change, ownership moves ... to the manager making the change", Kubernetes
      documentation, Server-Side Apply); fields it removed are owned by no one;
    - an apply (operation Apply) conflicts, with a 409, on every field it sets to a value
      other than the live one that another manager owns, unless `force=true`, which takes
      those fields over; the manager then owns exactly the fields of its configuration
      (shared with managers that set the same values), and fields it owned before and no
      longer applies are removed from the object unless another manager owns them;
    - writes to the `status` subresource own status fields only, writes to the main
      resource do not own status, and `scale` writes own `spec.replicas` with subresource
      "scale";
    - metadata: labels, annotations, ownerReferences and finalizers are owned, name,
      namespace, uid, resourceVersion, generation and managedFields themselves are not.

    Simplified: list-map keys and atomic structs come from the PATCH_TYPES table (every
    other list is atomic: an object with a list the table does not know is owned whole);
    a list element an applier stops applying goes only when no other manager owns any
    field of it; applied list elements keep the live order; no defaulting happens, so
    there are no default values to reset removed fields to.
    """

    entries: dict[tuple[str, str, str], tuple[str, str, set[Path_]]] = field(
        default_factory=dict)
    # (manager, operation, subresource) -> (apiVersion, time, fields)

    @staticmethod
    def tracked(obj: Obj, subresource: str, kind: str) -> dict[Path_, Any]:
        schema = Schema(kind)
        if subresource == "status":
            return field_leaves({"status": obj.get("status") or {}}, schema)
        if subresource == "scale":
            return {("f:spec", "f:replicas"): (obj.get("spec") or {}).get("replicas")}
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status",
                                                          "metadata")}
        meta = {k: v for k, v in (obj.get("metadata") or {}).items()
                if k in ("labels", "annotations", "ownerReferences", "finalizers")}
        if meta:
            body["metadata"] = meta
        return field_leaves(body, schema)

    def owners(self, path: Path_, skip: tuple[str, str, str] | None = None
               ) -> list[tuple[str, str, str]]:
        return [k for k, (_, _, paths) in self.entries.items() if k != skip and path in paths]

    def update(self, old: Obj | None, new: Obj, manager: str, subresource: str,
               kind: str) -> None:
        before = self.tracked(old, subresource, kind) if old else {}
        after = self.tracked(new, subresource, kind)
        changed = {p for p, v in after.items() if p not in before or before[p] != v}
        removed = set(before) - set(after)
        for key, (_, _, paths) in list(self.entries.items()):
            paths -= changed | removed
            if not paths:
                del self.entries[key]
        if changed:
            key = (manager, "Update", subresource)
            api_version = new.get("apiVersion", "")
            paths = self.entries.get(key, ("", "", set()))[2] | changed
            self.entries[key] = (api_version, now_rfc3339(), paths)

    def apply(self, live: Obj | None, applied: Obj, manager: str, force: bool,
              kind: str) -> Obj:
        """The object after `manager` applies `applied` (raises Conflict)."""
        schema = Schema(kind)
        me = (manager, "Apply", "")
        config = self.tracked(applied, "", kind)
        current = self.tracked(live, "", kind) if live else {}
        conflicts: list[tuple[str, str, str, str]] = []
        taken: set[Path_] = set()
        for path, value in config.items():
            if path in current and current[path] != value:
                for owner in self.owners(path, skip=me):
                    conflicts.append((owner[0], owner[2], self.entries[owner][0],
                                      dotted(path)))
                    taken.add(path)
        if conflicts and not force:
            raise Conflict(sorted(set(conflicts), key=lambda c: (c[3], c[0])))
        result = _merge_applied(live or {}, applied, schema)
        if live:
            result["metadata"] = {**live["metadata"], **{
                k: v for k, v in (result.get("metadata") or {}).items()
                if k in ("labels", "annotations", "ownerReferences", "finalizers")}}
        previous = self.entries.get(me, ("", "", set()))[2]
        # A list element no one else owns anything of goes whole, before any of its fields
        # (its key fields among them: without them it could not be found).
        gone = [p[:-1] for p in previous - set(config)
                if p[-1] == ELEMENT and not self.owns_under(p[:-1], skip=me)]
        for element in sorted(gone, key=len):
            _remove_field(result, (*element, ELEMENT), schema)
        for path in sorted(previous - set(config), key=len, reverse=True):
            if any(path[:len(e)] == e for e in gone) or self.owners(path, skip=me):
                continue
            _remove_field(result, path, schema)
        changed = {p for p, v in config.items() if current.get(p, object()) != v}
        for key, (_, _, paths) in list(self.entries.items()):
            if key != me:
                paths -= taken | changed
                if not paths:
                    del self.entries[key]
        self.entries[me] = (applied.get("apiVersion", ""), now_rfc3339(), set(config))
        return result

    def owns_under(self, prefix: Path_, skip: tuple[str, str, str]) -> bool:
        """Whether a manager other than `skip` owns a field at or under `prefix`."""
        return any(p[:len(prefix)] == prefix for k, (_, _, paths) in self.entries.items()
                   if k != skip for p in paths)

    def render(self) -> list[Obj]:
        out = []
        for (manager, operation, subresource), (api_version, when, paths) in \
                self.entries.items():
            entry: Obj = {"manager": manager, "operation": operation,
                          "apiVersion": api_version, "time": when, "fieldsType": "FieldsV1",
                          "fieldsV1": fields_v1(paths)}
            if subresource:
                entry["subresource"] = subresource
            out.append(entry)
        return out


# -- storage -----------------------------------------------------------------------------


@dataclass
class Event:
    type: str
    obj: Obj
    old: Obj | None = None
    rv: int = 0


Objs = list[Obj]  # (inside Store, `list` names its method)
Requirements = list[Requirement]
Events = list[Event]


class Store:
    """The objects, their resourceVersions, and who is told of changes."""

    HISTORY = 20_000

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str, str], Obj] = {}
        self._version = 0
        self._lock = threading.RLock()
        self._watchers: list[tuple[str, str | None, queue.Queue[Event]]] = []
        self._history: collections.deque[Event] = collections.deque(maxlen=self.HISTORY)
        self.listeners: list[Callable[[Event], None]] = []
        self.fields: dict[tuple[str, str, str], ManagedFields] = {}

    @property
    def version(self) -> int:
        return self._version

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def _bump(self, obj: Obj) -> Obj:
        self._version += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._version)
        return obj

    def _emit(self, event: Event) -> None:
        event.rv = self._version
        kind, ns = event.obj["kind"], event.obj["metadata"].get("namespace")
        self._history.append(Event(event.type, copy.deepcopy(event.obj),
                                   copy.deepcopy(event.old), event.rv))
        for w_kind, w_ns, q in list(self._watchers):
            if w_kind == kind and (w_ns is None or w_ns == ns):
                q.put(Event(event.type, copy.deepcopy(event.obj), copy.deepcopy(event.old),
                            event.rv))
        for listener in list(self.listeners):
            listener(Event(event.type, copy.deepcopy(event.obj), copy.deepcopy(event.old),
                           event.rv))

    def put(self, obj: Obj) -> Obj:
        """Create or replace (what `kubectl apply` of a whole object amounts to here)."""
        with self._lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            key = (obj["kind"], meta.get("namespace", ""), meta["name"])
            old = self._objects.get(key)
            if old is None:
                meta.setdefault("uid", secrets.token_hex(8))
                meta.setdefault("creationTimestamp", now_rfc3339())
                meta["generation"] = 1
                self.fields.pop(key, None)
            else:
                meta["uid"] = old["metadata"]["uid"]
                meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
                changed = old.get("spec") != obj.get("spec")
                meta["generation"] = old["metadata"].get("generation", 1) + int(changed)
                if "status" not in obj and "status" in old:
                    obj["status"] = old["status"]
            self._objects[key] = self._bump(obj)
            self._emit(Event("MODIFIED" if old else "ADDED", obj, old))
            return copy.deepcopy(obj)

    def update(self, kind: str, ns: str, name: str, change: Callable[[Obj], None]) -> Obj:
        """Change an object in place under the store's lock (status updates, scales)."""
        with self._lock:
            key = (kind, ns, name)
            old = self._objects[key]
            obj = copy.deepcopy(old)
            before_spec = copy.deepcopy(obj.get("spec"))
            change(obj)
            if obj.get("spec") != before_spec:
                obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
            self._objects[key] = self._bump(obj)
            self._emit(Event("MODIFIED", obj, old))
            return copy.deepcopy(obj)

    def get(self, kind: str, ns: str, name: str) -> Obj | None:
        with self._lock:
            obj = self._objects.get((kind, ns, name))
            return copy.deepcopy(obj) if obj else None

    def list(self, kind: str, ns: str | None = None, labels: dict[str, str] | None = None,
             name: str | None = None) -> list[Obj]:
        with self._lock:
            return [copy.deepcopy(o) for (k, o_ns, o_name), o in sorted(self._objects.items())
                    if k == kind and (ns is None or o_ns == ns)
                    and (name is None or o_name == name)
                    and labels_match(labels or {}, o["metadata"].get("labels"))]

    def select(self, kind: str, ns: str | None, labels: Requirements,
               fields: Requirements) -> Objs:
        with self._lock:
            return [copy.deepcopy(o) for (k, o_ns, _), o in sorted(self._objects.items())
                    if k == kind and (ns is None or o_ns == ns)
                    and matches(labels, o["metadata"].get("labels"))
                    and fields_match(fields, o)]

    def remove(self, kind: str, ns: str, name: str, propagation: str = "Background"
               ) -> Obj | None:
        """Delete at once; dependents (ownerReferences) go too unless `Orphan`."""
        with self._lock:
            obj = self._objects.pop((kind, ns, name), None)
            if obj is None:
                return None
            self.fields.pop((kind, ns, name), None)
            self._emit(Event("DELETED", self._bump(obj), obj))
            self._collect(obj, propagation)
            return obj

    def _dependents(self, owner: Obj) -> Objs:
        uid = owner["metadata"]["uid"]
        return [o for o in self._objects.values()
                if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences", []))]

    def _collect(self, owner: Obj, propagation: str) -> None:
        """The garbage collector, at once: dependents of a deleted owner are deleted
        (Background, Foreground) or lose their reference to it (Orphan)."""
        uid = owner["metadata"]["uid"]
        for dep in self._dependents(owner):
            meta = dep["metadata"]
            if propagation == "Orphan":
                self.update(dep["kind"], meta.get("namespace", ""), meta["name"],
                            lambda o: o["metadata"].__setitem__("ownerReferences", [
                                r for r in o["metadata"]["ownerReferences"]
                                if r.get("uid") != uid]))
            else:
                self.request_delete(dep["kind"], meta.get("namespace", ""), meta["name"])

    def request_delete(self, kind: str, ns: str, name: str, propagation: str = "Background"
                       ) -> Obj | None:
        """Pods terminate gracefully (the kubelet removes them); other objects go at once."""
        if kind != "Pod":
            return self.remove(kind, ns, name, propagation)
        with self._lock:
            if (kind, ns, name) not in self._objects:
                return None

            def mark(o: Obj) -> None:
                o["metadata"].setdefault("deletionTimestamp", now_rfc3339())

            return self.update(kind, ns, name, mark)

    def watch(self, kind: str, ns: str | None) -> tuple[Objs, queue.Queue[Event]]:
        """The current objects and a queue of what happens to them from now on."""
        q: queue.Queue[Event] = queue.Queue()
        with self._lock:
            current = self.list(kind, ns)
            self._watchers.append((kind, ns, q))
        return current, q

    def watch_from(self, kind: str, ns: str | None, rv: int
                   ) -> tuple[Events | None, queue.Queue[Event]]:
        """The events after resourceVersion `rv` (None when the history no longer reaches
        back that far) and a queue of what happens from now on."""
        q: queue.Queue[Event] = queue.Queue()
        with self._lock:
            self._watchers.append((kind, ns, q))
            full = len(self._history) == self._history.maxlen
            if full and rv < self._history[0].rv - 1:
                return None, q
            past = [e for e in self._history if e.rv > rv and e.obj["kind"] == kind
                    and (ns is None or e.obj["metadata"].get("namespace") == ns)]
        return past, q

    def unwatch(self, q: queue.Queue[Event]) -> None:
        with self._lock:
            self._watchers = [w for w in self._watchers if w[2] is not q]

    # -- RBAC --------------------------------------------------------------------------

    def allowed(self, subject: tuple[str, str] | None, verb: str, group: str, resource: str,
                ns: str, name: str | None, field_name: str | None) -> bool:
        """Kubernetes' RBAC for a ServiceAccount (namespace, name): Roles and ClusterRoles
        through RoleBindings (in `ns`) and ClusterRoleBindings."""
        if subject is None:
            return False
        sa_ns, sa_name = subject
        bindings = [*(self.list("RoleBinding", ns) if ns else []),
                    *self.list("ClusterRoleBinding")]
        for binding in bindings:
            if not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa_name
                       and s.get("namespace", ns) == sa_ns for s in binding.get("subjects", [])):
                continue
            ref = binding["roleRef"]
            if ref["kind"] == "Role":
                role = self.get("Role", binding["metadata"].get("namespace", ""), ref["name"])
            else:
                role = self.get("ClusterRole", "", ref["name"])
            for rule in (role or {}).get("rules", []):
                if not (group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", [])):
                    continue
                if not (resource in rule.get("resources", []) or "*" in rule["resources"]):
                    continue
                if not (verb in rule.get("verbs", []) or "*" in rule["verbs"]):
                    continue
                names = rule.get("resourceNames")
                if not names:
                    return True
                if verb in ("list", "watch"):
                    if field_name in names:
                        return True
                elif verb != "create" and name in names:
                    return True
        return False


# -- protobuf ----------------------------------------------------------------------------
# Typed clients of client-go (kubectl's `create namespace`, helm's release storage) send
# bodies as application/vnd.kubernetes.protobuf: the magic "k8s\0" and a runtime.Unknown
# (k8s.io/apimachinery/pkg/runtime/generated.proto) wrapping the object. The stand-in
# decodes the messages those clients send, with the field numbers of the generated.proto
# files of k8s.io/api core/v1 and k8s.io/apimachinery pkg/apis/meta/v1 (v0.32); any other
# kind in protobuf is a 415. Responses are always JSON, which the clients accept.

Msg = dict[int, tuple[str, Any]]
TIME: Msg = {1: ("seconds", "int64"), 2: ("nanos", "int32")}
OWNER_REF: Msg = {5: ("apiVersion", "string"), 1: ("kind", "string"), 3: ("name", "string"),
                  4: ("uid", "string"), 6: ("controller", "bool"),
                  7: ("blockOwnerDeletion", "bool")}
MANAGED_FIELDS: Msg = {1: ("manager", "string"), 2: ("operation", "string"),
                       3: ("apiVersion", "string"), 4: ("time", TIME),
                       6: ("fieldsType", "string"), 7: ("fieldsV1", "fieldsV1"),
                       8: ("subresource", "string")}
OBJECT_META: Msg = {
    1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string"),
    4: ("selfLink", "string"), 5: ("uid", "string"), 6: ("resourceVersion", "string"),
    7: ("generation", "int64"), 8: ("creationTimestamp", TIME),
    9: ("deletionTimestamp", TIME), 10: ("deletionGracePeriodSeconds", "int64"),
    11: ("labels", "map:string"), 12: ("annotations", "map:string"),
    13: ("ownerReferences", [OWNER_REF]), 14: ("finalizers", ["string"]),
    17: ("managedFields", [MANAGED_FIELDS])}
PROTO_KINDS: dict[str, Msg] = {
    "Secret": {1: ("metadata", OBJECT_META), 5: ("immutable", "bool"),
               2: ("data", "map:bytes"), 4: ("stringData", "map:string"),
               3: ("type", "string")},
    "ConfigMap": {1: ("metadata", OBJECT_META), 4: ("immutable", "bool"),
                  2: ("data", "map:string"), 3: ("binaryData", "map:bytes")},
    "Namespace": {1: ("metadata", OBJECT_META),
                  2: ("spec", {1: ("finalizers", ["string"])}),
                  3: ("status", {1: ("phase", "string")})},
    "DeleteOptions": {1: ("gracePeriodSeconds", "int64"),
                      2: ("preconditions", {1: ("uid", "string"),
                                            2: ("resourceVersion", "string")}),
                      3: ("orphanDependents", "bool"), 4: ("propagationPolicy", "string"),
                      5: ("dryRun", ["string"])},
}
UNKNOWN: Msg = {1: ("typeMeta", {1: ("apiVersion", "string"), 2: ("kind", "string")}),
                2: ("raw", "raw"), 3: ("contentEncoding", "string"),
                4: ("contentType", "string")}


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _fields(data: bytes) -> Iterable[tuple[int, int, Any]]:
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, at = _varint(data, at)
        elif wire == 2:
            length, at = _varint(data, at)
            value, at = data[at:at + length], at + length
        elif wire == 1:
            value, at = int.from_bytes(data[at:at + 8], "little"), at + 8
        elif wire == 5:
            value, at = int.from_bytes(data[at:at + 4], "little"), at + 4
        else:
            raise BadRequest(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _scalar(kind: Any, value: Any) -> Any:
    if kind == "string":
        return value.decode()
    if kind == "bytes":
        return base64.b64encode(value).decode()
    if kind == "bool":
        return bool(value)
    if kind in ("int64", "int32"):
        return value - (1 << 64) if value >= 1 << 63 else value
    if kind == "raw":
        return value
    if kind == "fieldsV1":
        raw = next((v for n, _, v in _fields(value) if n == 1), b"{}")
        return json.loads(raw)
    if isinstance(kind, dict):
        out = decode_message(value, kind)
        if kind is TIME:
            if not out.get("seconds"):
                return None  # a zero time: JSON leaves it out
            return datetime.fromtimestamp(out["seconds"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return out
    raise BadRequest(f"unsupported protobuf field type {kind}")


def decode_message(data: bytes, spec: Msg) -> Obj:
    out: Obj = {}
    for number, _, value in _fields(data):
        if number not in spec:
            continue  # a field this table leaves out: the real server would keep it
        name, kind = spec[number]
        if isinstance(kind, list):
            out.setdefault(name, []).append(_scalar(kind[0], value))
        elif isinstance(kind, str) and kind.startswith("map:"):
            entry = {n: v for n, _, v in _fields(value)}
            out.setdefault(name, {})[entry.get(1, b"").decode()] = _scalar(
                kind[4:], entry.get(2, b""))
        else:
            out[name] = _scalar(kind, value)
    # gogo-protobuf writes every non-pointer field; JSON's omitempty leaves empty ones out
    return {k: v for k, v in out.items() if v not in ("", None, [], {})}


def decode_protobuf(raw: bytes) -> Obj:
    """A k8s protobuf body (magic + runtime.Unknown) as the JSON object it stands for."""
    if not raw.startswith(b"k8s\x00"):
        raise BadRequest("protobuf body without the k8s magic prefix")
    unknown = decode_message(raw[4:], UNKNOWN)
    type_meta = unknown.get("typeMeta") or {}
    kind = type_meta.get("kind", "")
    if kind not in PROTO_KINDS:
        raise ApiError(415, "UnsupportedMediaType",
                       f"the stand-in cannot decode {kind or 'this kind'} from protobuf")
    obj = decode_message(unknown.get("raw", b""), PROTO_KINDS[kind])
    return {"apiVersion": type_meta.get("apiVersion", "v1"), "kind": kind, **obj}


# -- defaulting and update validation ------------------------------------------------------
#
# What the real API server does to a create or an update of these kinds before storing it,
# as far as the chart's day-2 changes meet it: the defaults the later rules compare
# (k8s.io/kubernetes v1.32 pkg/apis/apps/v1/defaults.go, pkg/apis/core/v1/defaults.go)
# and the update validation of StatefulSet, Deployment, PersistentVolumeClaim, Service and
# Job (pkg/apis/*/validation/validation.go and the registry strategies' ValidateUpdate).
# A rejected write is a 422 Invalid Status made as k8s.io/apimachinery/pkg/api/errors
# `NewInvalid` makes it: `<Kind>.<group> "<name>" is invalid: <field>: <error>` (several
# errors as `[a, b]`), with one cause per field error (reason FieldValueForbidden,
# FieldValueInvalid; field errors formatted as pkg/util/validation/field/errors.go
# `Error.Error`). Values in "Invalid value:" are printed as JSON, not Go's `%#v`.


@dataclass(frozen=True)
class FieldError:
    """One k8s.io/apimachinery/pkg/util/validation/field Error."""

    field: str
    type: str  # FieldValueForbidden | FieldValueInvalid
    detail: str
    value: Any = None

    def body(self) -> str:
        """field.Error.ErrorBody: "Forbidden: <detail>", "Invalid value: <v>: <detail>"."""
        if self.type == "FieldValueForbidden":
            return f"Forbidden: {self.detail}"
        return f"Invalid value: {json.dumps(self.value)}: {self.detail}"

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(path, "FieldValueForbidden", detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, "FieldValueInvalid", detail, value)


def immutable(path: str, new: Any, old: Any) -> list[FieldError]:
    """pkg/apis/core/validation `ValidateImmutableField` (apimachinery's
    ValidateImmutableField): "field is immutable"."""
    return [] if new == old else [invalid(path, new, "field is immutable")]


def apply_defaults(kind: str, obj: Obj) -> None:
    """The defaults the update rules below depend on, applied on every create and update
    (the API server defaults each decoded object):

    - StatefulSet: apps/v1 `SetDefaults_StatefulSet` (podManagementPolicy OrderedReady,
      updateStrategy RollingUpdate with rollingUpdate.partition 0 when the type is
      RollingUpdate and rollingUpdate is unset, replicas 1, revisionHistoryLimit 10,
      persistentVolumeClaimRetentionPolicy Retain/Retain) and, for each volumeClaimTemplate,
      core/v1 `SetDefaults_PersistentVolumeClaimSpec` (volumeMode Filesystem);
    - PersistentVolumeClaim: `SetDefaults_PersistentVolumeClaimSpec`;
    - Service: clusterIPs from clusterIP (pkg/registry/core/service/storage
      `normalizeClusterIPs`).
    Everything else is stored as sent."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if kind == "StatefulSet":
        spec.setdefault("podManagementPolicy", "OrderedReady")
        strategy = spec.setdefault("updateStrategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate" and strategy.get("rollingUpdate") is None:
            strategy["rollingUpdate"] = {"partition": 0}
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("persistentVolumeClaimRetentionPolicy",
                        {"whenDeleted": "Retain", "whenScaled": "Retain"})
        for claim in spec.get("volumeClaimTemplates") or []:
            (claim.setdefault("spec", {})).setdefault("volumeMode", "Filesystem")
    elif kind == "PersistentVolumeClaim":
        spec.setdefault("volumeMode", "Filesystem")
    elif kind == "Service" and spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]


def _selector_matches(selector: Obj | None, labels: Obj | None) -> bool:
    match = (selector or {}).get("matchLabels") or {}
    return all((labels or {}).get(k) == v for k, v in match.items())


STATEFULSET_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy",
                       "revisionHistoryLimit", "persistentVolumeClaimRetentionPolicy",
                       "minReadySeconds")


def validate_statefulset(new: Obj, old: Obj | None) -> list[FieldError]:
    """pkg/apis/apps/validation/validation.go (v1.32): `ValidateStatefulSetSpec` (an OnDelete
    strategy with a rollingUpdate is invalid; the template's labels must match the
    selector) and, on update, `ValidateStatefulSetUpdate`: the spec with the mutable fields
    put back to the old values must equal the old spec."""
    spec = new.get("spec") or {}
    errors: list[FieldError] = []
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type") == "OnDelete" and strategy.get("rollingUpdate") is not None:
        errors.append(invalid("spec.updateStrategy.rollingUpdate", strategy["rollingUpdate"],
                              "only allowed for updateStrategy 'RollingUpdate'"))
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    if not _selector_matches(spec.get("selector"), labels):
        errors.append(invalid("spec.template.metadata.labels", labels,
                              "`selector` does not match template `labels`"))
    if old is not None:
        old_spec = old.get("spec") or {}
        masked = {k: v for k, v in spec.items() if k not in STATEFULSET_MUTABLE}
        old_masked = {k: v for k, v in old_spec.items() if k not in STATEFULSET_MUTABLE}
        if masked != old_masked:
            errors.append(forbidden("spec", "updates to statefulset spec for fields other "
                                    "than " + ", ".join(f"'{f}'" for f in
                                                        STATEFULSET_MUTABLE[:-1])
                                    + f" and '{STATEFULSET_MUTABLE[-1]}' are forbidden"))
    return errors


def validate_deployment(new: Obj, old: Obj | None) -> list[FieldError]:
    """pkg/apis/apps/validation `ValidateDeploymentSpec` (template labels match the
    selector) and pkg/registry/apps/deployment/strategy.go `ValidateUpdate`: for apps/v1
    the selector is immutable."""
    spec = new.get("spec") or {}
    errors: list[FieldError] = []
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    if not _selector_matches(spec.get("selector"), labels):
        errors.append(invalid("spec.template.metadata.labels", labels,
                              "`selector` does not match template `labels`"))
    if old is not None:
        errors += immutable("spec.selector", spec.get("selector"),
                            (old.get("spec") or {}).get("selector"))
    return errors


def validate_pvc(new: Obj, old: Obj | None) -> list[FieldError]:
    """pkg/apis/core/validation `ValidatePersistentVolumeClaimUpdate` (v1.32): the spec is
    immutable except `resources.requests` of a bound claim (status.phase Bound) and
    `volumeAttributesClassName`; the requested storage may not shrink (with the
    RecoverVolumeExpansionFailure gate, on in 1.32, not below status.capacity). Upstream
    appends a diff of the two specs to the message; the stand-in does not.
    Whether a growth is allowed at all is admission's (see `admit_pvc_resize`)."""
    if old is None:
        return []
    spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    bound = (old.get("status") or {}).get("phase") == "Bound"
    errors: list[FieldError] = []

    def storage(s: Obj) -> Any:
        return ((s.get("resources") or {}).get("requests") or {}).get("storage")

    def masked(s: Obj) -> Obj:
        out = copy.deepcopy(s)
        out.pop("volumeAttributesClassName", None)
        if bound:
            ((out.setdefault("resources", {})).setdefault("requests", {})).pop("storage",
                                                                                None)
        return out

    if masked(spec) != masked(old_spec):
        errors.append(forbidden("spec", "spec is immutable after creation except "
                                        "resources.requests and volumeAttributesClassName "
                                        "for bound claims"))
    elif bound and storage(spec) is not None and storage(old_spec) is not None:
        floor = ((old.get("status") or {}).get("capacity") or {}).get("storage") or \
            storage(old_spec)
        if quantity_bytes(storage(spec)) < quantity_bytes(floor):
            errors.append(forbidden("spec.resources.requests.storage",
                                    "field can not be less than status.capacity"))
    return errors


def validate_service(new: Obj, old: Obj | None) -> list[FieldError]:
    """pkg/apis/core/validation `ValidateServiceUpdate` / `validateUpgradeDowngradeClusterIPs`
    (v1.32): a set clusterIP (also "None", headless) may not change, except to or from
    type ExternalName. An update that leaves clusterIP empty keeps the old one
    (pkg/registry/core/service/storage/storage.go `patchAllocatedValues`; done here by
    `keep_allocated`)."""
    if old is None:
        return []
    spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    if "ExternalName" in (spec.get("type"), old_spec.get("type")):
        return []
    errors: list[FieldError] = []
    for i, ip in enumerate(old_spec.get("clusterIPs") or []):
        now = spec.get("clusterIPs") or []
        if i < len(now) and now[i] != ip:
            errors.append(invalid(f"spec.clusterIPs[{i}]", now, "may not change once set"))
    return errors


# kube-apiserver --service-cluster-ip-range as kubeadm and kind set it; .1 is the
# `kubernetes` Service's.
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")


def allocate_cluster_ip(store: Store, new: Obj) -> None:
    """pkg/registry/core/service/storage/alloc.go `allocClusterIPs` (v1.32): a new Service
    without clusterIP, other than type ExternalName, gets a free address of the service
    range; "None" (headless) is kept. helm's `--wait` counts a Service without one as not
    ready (pkg/kube/ready.go `serviceReady`)."""
    spec = new.setdefault("spec", {})
    if spec.get("type") == "ExternalName" or spec.get("clusterIP"):
        return
    taken = {(s.get("spec") or {}).get("clusterIP") for s in store.list("Service")}
    hosts = SERVICE_CIDR.hosts()
    next(hosts)
    ip = next(str(a) for a in hosts if str(a) not in taken)
    spec["clusterIP"], spec["clusterIPs"] = ip, [ip]


def keep_allocated(kind: str, new: Obj, old: Obj) -> None:
    """`patchAllocatedValues`: an update of a Service without clusterIP keeps the old."""
    if kind != "Service":
        return
    spec, old_spec = new.setdefault("spec", {}), old.get("spec") or {}
    if not spec.get("clusterIP") and old_spec.get("clusterIP") and \
            spec.get("type") != "ExternalName":
        spec["clusterIP"] = old_spec["clusterIP"]
        spec["clusterIPs"] = list(old_spec.get("clusterIPs") or [old_spec["clusterIP"]])


def validate_job(new: Obj, old: Obj | None) -> list[FieldError]:
    """pkg/apis/batch/validation `ValidateJobSpecUpdate` (v1.32): selector, template,
    completionMode and podFailurePolicy are immutable (the template's mutable corners for
    suspended Jobs are left out), completions only with parallelism for Indexed Jobs
    (left out: immutable here)."""
    if old is None:
        return []
    spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    errors: list[FieldError] = []
    for key in ("selector", "template", "completions", "completionMode", "podFailurePolicy"):
        errors += immutable(f"spec.{key}", spec.get(key), old_spec.get(key))
    return errors


VALIDATORS: dict[str, Callable[[Obj, Obj | None], list[FieldError]]] = {
    "StatefulSet": validate_statefulset, "Deployment": validate_deployment,
    "PersistentVolumeClaim": validate_pvc, "Service": validate_service, "Job": validate_job}


def quantity_bytes(text: Any) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6,
             "G": 1e9, "T": 1e12}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text))
    if not m:
        raise BadRequest(f"quantities must match the regular expression: {text!r}")
    return float(m.group(1)) * units.get(m.group(2), 1)


def invalid_error(res: Resource, name: str, errors: list[FieldError]) -> ApiError:
    """k8s.io/apimachinery/pkg/api/errors `NewInvalid`."""
    kind = f"{res.kind}.{res.group}" if res.group else res.kind
    aggregate = str(errors[0]) if len(errors) == 1 else \
        "[" + ", ".join(str(e) for e in errors) + "]"
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {aggregate}', {
        "name": name, "group": res.group, "kind": res.kind,
        "causes": [{"reason": e.type, "message": e.body(), "field": e.field}
                   for e in errors]})


def default_class(store: Store) -> str | None:
    """The default StorageClass; of several, the newest, and of those the first by name
    (v1.32 `GetDefaultClass` in pkg/volume/util/storageclass.go)."""
    marked = sorted((c for c in store.list("StorageClass", "")
                     if (c["metadata"].get("annotations") or {}).get(
                         "storageclass.kubernetes.io/is-default-class") == "true"),
                    key=lambda c: c["metadata"]["name"])
    marked.sort(key=lambda c: c["metadata"].get("creationTimestamp", ""), reverse=True)
    return marked[0]["metadata"]["name"] if marked else None


def admit_default_class(store: Store, new: Obj) -> None:
    """plugin/pkg/admission/storage/storageclass/setdefault `Admit` (v1.32): a new claim
    with no storageClassName gets the default class's name; one that names a class, even
    "", keeps it; with no default class nothing changes."""
    spec = new.setdefault("spec", {})
    if "storageClassName" in spec:
        return
    if (name := default_class(store)) is not None:
        spec["storageClassName"] = name


def admit_pvc_resize(store: Store, res: Resource, name: str, new: Obj, old: Obj) -> None:
    """plugin/pkg/admission/storage/persistentvolume/resize `Validate` (v1.32): a claim's
    storage may grow only when its StorageClass has allowVolumeExpansion; otherwise a 403
    from admission, before validation."""
    if res.kind != "PersistentVolumeClaim":
        return

    def storage(o: Obj) -> Any:
        return (((o.get("spec") or {}).get("resources") or {}).get("requests") or {}).get(
            "storage")

    grow, before = storage(new), storage(old)
    if grow is None or before is None or quantity_bytes(grow) <= quantity_bytes(before):
        return
    if (old.get("status") or {}).get("phase") != "Bound":
        return  # validation refuses it (the spec of an unbound claim is immutable)
    # `allowResize`: the claim names one class, before and after (no default is looked
    # up: the DefaultStorageClass admission named it at create, if there was one).
    cls_name = (old.get("spec") or {}).get("storageClassName") or ""
    same = cls_name == ((new.get("spec") or {}).get("storageClassName") or "")
    cls = store.get("StorageClass", "", cls_name) if cls_name and same else None
    if not (cls or {}).get("allowVolumeExpansion"):
        raise ApiError(403, "Forbidden", f'persistentvolumeclaims "{name}" is forbidden: only '
                       "dynamically provisioned pvc can be resized and the storageclass that "
                       "provisions the pvc must support resize",
                       {"name": name, "kind": "persistentvolumeclaims"})


# -- field types of pod templates ---------------------------------------------------------
#
# The real server decodes every write into the typed structs of k8s.io/api, so a JSON
# number (bool, object, array) where the struct has a string is refused before admission
# and validation. The stand-in keeps no schemas; it checks the case `helm --set` makes
# (`--set x.env[0].value=100` renders an integer): `env[].name` and `env[].value` (core/v1
# EnvVar, both `string`) of the containers and initContainers of a pod or pod template
# (`check_field_types`). What each write path answers (v1.32):
#
# - create and update: handlers/create.go and update.go decode the body; rest.go
#   `transformDecodeError` makes a decode error a 400 BadRequest `<Kind> in version "<v>"
#   cannot be handled as a <Kind>: <error>`, the error of the JSON serializer
#   (k8s.io/apimachinery/pkg/runtime/serializer/json, sigs.k8s.io/json's encoding/json):
#   `json: cannot unmarshal number into Go struct field EnvVar.spec.template.spec.
#   containers.env.value of type string` (the first one in the document; the field is the
#   JSON path without indices; "bool", "object", "array" for those);
# - JSON patch and merge patch: handlers/patch.go `jsonPatcher.applyPatchToCurrentObject`
#   decodes the patched document and answers `errors.NewInvalid(schema.GroupKind{}, "",
#   field.Invalid(field.NewPath("patch"), string(patchedObjJS), err.Error()))`, a 422
#   Invalid ` "" is invalid: patch: Invalid value: "<patched JSON>": json: cannot unmarshal
#   ...` (the document as the stand-in renders it, not Go's bytes);
# - strategic merge patch: patch.go `applyPatchToObject` converts the merged map with
#   runtime.DefaultUnstructuredConverter (runtime/converter.go `fromUnstructured`: "cannot
#   convert int64 to string" for an integer, "unrecognized type: string" for a float, bool,
#   object or array), the same 422 with the patch map printed as Go's `%+v` instead;
# - server-side apply: k8s.io/apimachinery/pkg/util/managedfields/internal/structuredmerge.go
#   `Apply` cannot make the typed patch object (sigs.k8s.io/structured-merge-diff/v4
#   typed/validate.go `validateScalar`: `expected string, got %#v` of the value, all errors
#   as "errors:\n  <e>\n  <e>") and returns a plain error, which
#   endpoints/handlers/responsewriters/status.go `ErrorToAPIStatus` makes a 500 without a
#   reason: `failed to create typed patch object (<ns>/<name>; apps/v1, Kind=StatefulSet):
#   .spec.template.spec.containers[name="c"].env[name="X"].value: expected string, got
#   &value.valueUnstructured{Value:100}` (kubernetes/kubernetes#122480, #139253).

POD_SPEC_PATH: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",), **{k: ("spec", "template", "spec") for k in (
        "Deployment", "StatefulSet", "ReplicaSet", "DaemonSet", "Job")},
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec")}
CONTAINER_LISTS = ("initContainers", "containers")  # PodSpec's field order
ENV_STRINGS = ("name", "value")  # EnvVar's field order


def env_type_errors(kind: str, obj: Any, document_order: bool = False
                    ) -> list[tuple[str, str, Any]]:
    """The env names and values in `obj`'s containers that are not strings (null is fine:
    it decodes to ""), as (the field as encoding/json names it, the path as
    structured-merge-diff names it, the value), in the document's or Go's field order."""
    spec = obj
    for key in POD_SPEC_PATH.get(kind, ()):
        spec = spec.get(key) if isinstance(spec, dict) else None
    if kind not in POD_SPEC_PATH or not isinstance(spec, dict):
        return []

    def ordered(d: Obj, keys: tuple[str, ...]) -> list[str]:
        return [k for k in d if k in keys] if document_order else [k for k in keys if k in d]

    prefix = ".".join(POD_SPEC_PATH[kind])
    found = []
    for lst in ordered(spec, CONTAINER_LISTS):
        for c in spec[lst] if isinstance(spec[lst], list) else []:
            env = c.get("env") if isinstance(c, dict) else None
            for e in env if isinstance(env, list) else []:
                for key in ordered(e, ENV_STRINGS) if isinstance(e, dict) else []:
                    if e[key] is not None and not isinstance(e[key], str):
                        found.append((f"{prefix}.{lst}.env.{key}",
                                      f".{prefix}.{lst}[name={json.dumps(c.get('name'))}]"
                                      f".env[name={json.dumps(e.get('name'))}].{key}", e[key]))
    return found


def go_format(value: Any, sharp: bool = False) -> str:
    """Go's `%v` (`%#v` with `sharp`) of decoded JSON: map[string]interface{} (keys sorted),
    []interface{}, string, int64, float64, bool, nil."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if sharp else value
    if value is None:
        return "interface {}(nil)" if sharp else "<nil>"
    if isinstance(value, list):
        items = [go_format(v, sharp) for v in value]
        return "[]interface {}{" + ", ".join(items) + "}" if sharp else \
            "[" + " ".join(items) + "]"
    if sharp:
        return "map[string]interface {}{" + ", ".join(
            f"{json.dumps(k, ensure_ascii=False)}:{go_format(v, True)}"
            for k, v in sorted(value.items())) + "}"
    return "map[" + " ".join(f"{k}:{go_format(v)}" for k, v in sorted(value.items())) + "]"


def _go_float(x: float) -> str:
    """strconv.FormatFloat(x, 'g', -1, 64), as `%v` prints a float64: the shortest digits,
    an exponent when it is below -4 or 6 and above."""
    if x != x or x in (float("inf"), float("-inf")):
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(x)]
    if x == 0:
        return "0"
    shortest = decimal.Decimal(repr(abs(x))).normalize().as_tuple()
    digits = "".join(map(str, shortest.digits))
    point = len(digits) + int(shortest.exponent)
    sign, exp = "-" if x < 0 else "", point - 1
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    whole = digits[:point] + "0" * (point - len(digits))
    return sign + whole + ("." + digits[point:] if point < len(digits) else "")


def _json_type(value: Any) -> str:
    """encoding/json's name of a JSON value in an UnmarshalTypeError."""
    return "bool" if isinstance(value, bool) else "number" if isinstance(
        value, int | float) else "array" if isinstance(value, list) else "object"


def patch_invalid(value: str, detail: str) -> ApiError:
    """`errors.NewInvalid(schema.GroupKind{}, "", field.Invalid(field.NewPath("patch"),
    value, detail))`: no kind, no name (empty details fields are omitted)."""
    error = invalid("patch", value, detail)
    return ApiError(422, "Invalid", f' "" is invalid: {error}', {"causes": [
        {"reason": error.type, "message": error.body(), "field": error.field}]})


def check_field_types(res: Resource, obj: Any, how: str, patch: Any = None) -> None:
    """Raise what the real server answers for `obj` with env names or values that are not
    strings (see above): `how` is "decode" (create and update: `obj` is the body), "json"
    (JSON and merge patch), "strategic" (`obj` merged from `patch`) or "apply" (`obj` is
    the applied configuration)."""
    found = env_type_errors(res.kind, obj, document_order=how == "decode")
    if not found:
        return
    field_name, _, value = found[0]
    decode_error = (f"json: cannot unmarshal {_json_type(value)} into Go struct field "
                    f"EnvVar.{field_name} of type string")
    if how == "decode":
        version = str(obj.get("apiVersion") or res.group_version).rsplit("/", 1)[-1]
        raise ApiError(400, "BadRequest", f'{obj.get("kind") or res.kind} in version '
                       f'"{version}" cannot be handled as a {res.kind}: {decode_error}')
    if how == "json":
        raise patch_invalid(json.dumps(obj, separators=(",", ":"), ensure_ascii=False),
                            decode_error)
    if how == "strategic":
        raise patch_invalid(go_format(patch), "cannot convert int64 to string" if isinstance(
            value, int) and not isinstance(value, bool) else "unrecognized type: string")
    meta = obj.get("metadata") or {}
    group, _, version = str(obj.get("apiVersion") or res.group_version).rpartition("/")
    errors = [f"{path}: expected string, got &value.valueUnstructured{{Value:"
              f"{go_format(v, True)}}}" for _, path, v in found]
    raise ApiError(500, "", f"failed to create typed patch object ({meta.get('namespace', '')}"
                   f"/{meta.get('name', '')}; {group}/{version}, Kind={obj.get('kind', '')}): "
                   + (errors[0] if len(errors) == 1 else "\n  ".join(["errors:", *errors])))


# -- HTTP --------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None
                 ) -> None:
        super().__init__(message)
        self.code, self.reason, self.details = code, reason, details


@dataclass
class Request:
    """One request as it reached the stand-in (the log of what the tools sent)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    accept: str
    user_agent: str
    body: Any
    status: int = 0
    at: float = field(default_factory=time.time)


MASTERS = ("", "system:masters")
STATUS_SUBRESOURCE = {r.kind for r in RESOURCE_TYPES if "status" in r.subresources}
PATCH_TYPES_MEDIA = ("application/json-patch+json", "application/merge-patch+json",
                     "application/strategic-merge-patch+json", "application/apply-patch+yaml")


class ApiServer:
    """The HTTP side. `tokens` maps bearer tokens to ServiceAccounts (namespace, name)."""

    def __init__(self, store: Store | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 rbac: bool = False, tls_dir: Path | None = None,
                 require_namespaces: bool = False) -> None:
        self.store = store or Store()
        self.rbac = rbac
        self.require_namespaces = require_namespaces
        self.tokens: dict[str, tuple[str, str]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.log: list[Request] = []
        self.errors: list[str] = []
        self.watch_plans: list[int | str] = []
        """For the next watches, in order: an HTTP status to fail with, or "close" to end
        the watch right after the current objects (as API servers end watches now and
        then). With none left, a watch stays open until its timeout or shutdown."""
        self.closing = threading.Event()
        self.ca_pem: bytes | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            # Watches stream in chunks, as a real API server's do: a client reads each
            # event as it comes (an unchunked body would reach it only at the end).
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                # TLS handshakes happen here, on the connection's own thread, with a
                # deadline: done in accept() (the default) one client that connects and
                # never speaks would stop the server from accepting anyone else.
                if isinstance(self.request, ssl.SSLSocket):
                    self.request.settimeout(10)
                    self.request.do_handshake()
                    self.request.settimeout(None)
                super().setup()

            def do_GET(self) -> None:
                outer._serve(self, "GET")

            def do_POST(self) -> None:
                outer._serve(self, "POST")

            def do_PATCH(self) -> None:
                outer._serve(self, "PATCH")

            def do_DELETE(self) -> None:
                outer._serve(self, "DELETE")

            def do_PUT(self) -> None:
                outer._serve(self, "PUT")

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls_dir is not None:
            import trustme

            ca = trustme.CA()
            cert = ca.issue_cert(host)
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(ctx)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True,
                                                 do_handshake_on_connect=False)
            self.ca_pem = ca.cert_pem.bytes()
            self.scheme = "https"
        self.host = host
        self.port = self.server.server_port
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def token_for(self, namespace: str, account: str) -> str:
        token = f"sa-{secrets.token_hex(16)}"
        self.tokens[token] = (namespace, account)
        return token

    def admin_token(self) -> str:
        """A token of a `system:masters` user: RBAC allows it everything."""
        token = f"admin-{secrets.token_hex(16)}"
        self.tokens[token] = MASTERS
        return token

    def kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig for real clients (helm, kubectl): this server, its CA, an admin
        token, `namespace` as the context's namespace."""
        cluster: Obj = {"server": self.url}
        if self.ca_pem:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem).decode()
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "model",
                  "clusters": [{"name": "model", "cluster": cluster}],
                  "users": [{"name": "admin", "user": {"token": self.admin_token()}}],
                  "contexts": [{"name": "model", "context": {
                      "cluster": "model", "user": "admin", "namespace": namespace}}]}
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return path

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def client(self, token: str | None = None) -> Any:
        """A `kubernetes.client.ApiClient` talking to this server (plain HTTP only)."""
        from kubernetes import client

        cfg = client.Configuration(host=self.url)
        if token:
            cfg.api_key = {"authorization": f"Bearer {token}"}
        return client.ApiClient(cfg)

    def watch_requests(self) -> list[dict[str, str]]:
        return [q for m, _, q in self.requests if m == "GET" and q.get("watch") == "true"]

    # -- request handling -----------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urllib.parse.urlsplit(h.path)
        self.requests.append((method, url.path, dict(urllib.parse.parse_qsl(url.query))))
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        content_type = (h.headers.get("Content-Type") or "").split(";")[0].strip()
        record = Request(method, url.path, query, content_type, h.headers.get("Accept", ""),
                         h.headers.get("User-Agent", ""), raw or None)
        self.log.append(record)
        try:
            record.body = body = self._parse(raw, content_type)
            code, obj = self._route(h, method, url.path, query, body, content_type)
        except ApiError as exc:
            code, obj = exc.code, self._status_obj(exc.code, exc.reason, str(exc), exc.details)
        except BadRequest as exc:
            code, obj = 400, self._status_obj(400, "BadRequest", str(exc))
        except PatchError as exc:
            reason = {400: "BadRequest", 415: "UnsupportedMediaType"}.get(exc.code, "Invalid")
            code, obj = exc.code, self._status_obj(exc.code, reason, str(exc))
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return
        except Exception as exc:  # noqa: BLE001 - a bug of the stand-in: tell client and test
            self.errors.append(f"{method} {h.path}: {exc!r}\n{traceback.format_exc()}")
            code, obj = 500, self._status_obj(500, "InternalError", repr(exc))
        record.status = code
        if obj is not None:
            self._send(h, code, obj)

    @staticmethod
    def _parse(raw: bytes, content_type: str) -> Any:
        if not raw:
            return None
        if content_type == "application/vnd.kubernetes.protobuf":
            return decode_protobuf(raw)
        try:
            if content_type.endswith("yaml"):
                import yaml

                return yaml.safe_load(raw)
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    def _route(self, h: BaseHTTPRequestHandler, method: str, path: str, query: dict[str, str],
               body: Any, content_type: str) -> tuple[int, Obj | None]:
        parts = [p for p in path.split("/") if p]
        if method == "GET" and path in ("/healthz", "/readyz", "/livez"):
            self._send_text(h, 200, "ok")
            return 200, None
        if method == "GET" and path == "/version":
            major, minor, git = KUBERNETES_VERSION
            return 200, {"major": major, "minor": minor, "gitVersion": git,
                         "gitCommit": "0" * 40, "gitTreeState": "clean",
                         "buildDate": "2025-03-11T19:52:21Z", "goVersion": "go1.23.6",
                         "compiler": "gc", "platform": "linux/amd64"}
        if method == "GET" and parts == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": [
                             {"clientCIDR": "0.0.0.0/0",
                              "serverAddress": f"{self.host}:{self.port}"}]}
        if method == "GET" and parts == ["apis"]:
            groups = list(dict.fromkeys(group_of(gv) for gv in group_versions() if "/" in gv))
            return 200, {"kind": "APIGroupList", "apiVersion": "v1",
                         "groups": [{k: v for k, v in api_group(g).items()
                                     if k not in ("kind", "apiVersion")} for g in groups]}
        if method == "GET" and len(parts) == 2 and parts[0] == "apis":
            if not any(group_of(gv) == parts[1] for gv in group_versions()):
                raise ApiError(404, "NotFound", "the server could not find the requested "
                                                "resource")
            return 200, api_group(parts[1])
        if method == "GET" and (parts == ["api", "v1"] or (
                len(parts) == 3 and parts[0] == "apis")):
            gv = "v1" if parts[0] == "api" else f"{parts[1]}/{parts[2]}"
            if gv not in group_versions():
                raise ApiError(404, "NotFound", "the server could not find the requested "
                                                "resource")
            return 200, resource_list(gv)
        if method == "GET" and parts[:2] == ["openapi", "v3"]:
            if len(parts) == 2:
                rel = {gv: "api/v1" if gv == "v1" else f"apis/{gv}" for gv in group_versions()}
                return 200, {"paths": {
                    rel[gv]: {"serverRelativeURL": f"/openapi/v3/{rel[gv]}?hash={self._hash(gv)}"}
                    for gv in group_versions()}}
            gv = "/".join(parts[3:5]) if parts[2:3] == ["apis"] else "/".join(parts[3:4])
            if gv in group_versions():
                return 200, openapi_v3_doc(gv)
        if parts and parts[0] in ("api", "apis"):
            return self._resource(h, method, parts, query, body, content_type)
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    @staticmethod
    def _hash(gv: str) -> str:
        return hashlib.sha512(gv.encode()).hexdigest()[:128].upper()

    # -- resources ------------------------------------------------------------------------

    def _subject(self, h: BaseHTTPRequestHandler) -> tuple[str, str] | None:
        scheme, _, token = h.headers.get("Authorization", "").partition(" ")
        return self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None

    @staticmethod
    def _manager(h: BaseHTTPRequestHandler, query: dict[str, str]) -> str:
        """managerOrUserAgent (k8s.io/apiserver/pkg/endpoints/handlers/rest.go)."""
        manager = query.get("fieldManager", "")
        if manager:
            return manager
        agent = (h.headers.get("User-Agent") or "").split("/")[0]
        return "".join(ch for ch in agent if ch.isprintable())[:128]

    def _resource(self, h: BaseHTTPRequestHandler, method: str, parts: list[str],
                  query: dict[str, str], body: Any, content_type: str
                  ) -> tuple[int, Obj | None]:
        if parts[0] == "api":
            gv, rest = (parts[1] if len(parts) > 1 else ""), parts[2:]
        else:
            gv, rest = "/".join(parts[1:3]), parts[3:]
        watching = query.get("watch") in ("true", "1")
        if rest[:1] == ["watch"]:
            watching, rest = True, rest[1:]
        ns = ""
        if rest[:1] == ["namespaces"] and len(rest) >= 3 and \
                (gv, rest[2]) in BY_PATH and BY_PATH[(gv, rest[2])].namespaced:
            ns, rest = rest[1], rest[2:]
        if not rest or (gv, rest[0]) not in BY_PATH:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        res = BY_PATH[(gv, rest[0])]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        if sub and sub not in res.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if res.namespaced and not ns and method not in ("GET",):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"), res.kind)
        verb = {"GET": "watch" if watching else ("get" if name else "list"), "POST": "create",
                "PATCH": "patch", "PUT": "update",
                "DELETE": "delete" if name else "deletecollection"}[method]
        if self.rbac:
            subject = self._subject(h)
            field_name = next((v[0] for k, op, v in fields
                               if k == "metadata.name" and op == "="), None)
            resource = f"{res.plural}/{sub}" if sub else res.plural
            if subject != MASTERS and not self.store.allowed(
                    subject, verb, res.group, resource, ns, name, field_name):
                who = f"system:serviceaccount:{subject[0]}:{subject[1]}" if subject else \
                    "system:anonymous"
                scope = f' in namespace "{ns}"' if ns else " at the cluster scope"
                raise ApiError(403, "Forbidden",
                               f'{resource} "{name or ""}" is forbidden: User "{who}" cannot '
                               f'{verb} resource "{resource}" in API group "{res.group}"'
                               f"{scope}", {"name": name or "", "kind": res.plural,
                                            "group": res.group})
        if method in ("POST", "PUT") and not isinstance(body, dict):
            raise BadRequest("the request body is not an object")
        scope_ns: str | None = ns if res.namespaced and ns else (None if res.namespaced
                                                                  else "")
        if verb == "watch":
            self._watch(h, res, scope_ns, labels, fields, query)
            return 200, None
        if verb == "list":
            # The items and the list's resourceVersion are one snapshot: a watch from that
            # version sees every change after the items (a version read afterwards could
            # pass a deletion, and `kubectl delete`, which waits on such a watch, hung).
            with self.store.lock:
                items = self.store.select(res.kind, scope_ns, labels, fields)
                version = self.store.version
            return 200, {"kind": f"{res.kind}List", "apiVersion": res.group_version,
                         "metadata": {"resourceVersion": str(version)}, "items": items}
        assert name is not None or verb in ("create", "deletecollection")
        if verb == "get":
            obj = self._get(res, ns, name or "")
            if sub == "scale":
                return 200, self._scale_of(obj)
            if sub == "log":
                self._send_text(h, 200, "")
                return 200, None
            return 200, obj
        if verb == "delete":
            return self._delete(res, ns, name or "", query, body)
        if verb == "deletecollection":
            for obj in self.store.select(res.kind, scope_ns, labels, fields):
                self.store.request_delete(res.kind, ns, obj["metadata"]["name"])
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                         "status": "Success"}
        manager = self._manager(h, query)
        dry_run = query.get("dryRun") == "All"
        if verb == "create":
            assert isinstance(body, dict)
            check_field_types(res, body, "decode")
            return 201, self._create(res, ns, body, manager, dry_run)
        if verb == "update":
            assert isinstance(body, dict)
            if sub != "scale":
                check_field_types(res, body, "decode")
            return 200, self._write(res, ns, name or "", sub, manager, dry_run,
                                    lambda current: self._replaced(current, body, sub))
        # patch
        if content_type not in PATCH_TYPES_MEDIA:
            raise ApiError(415, "UnsupportedMediaType",
                           f"the body of the request was in an unknown format - accepted "
                           f"media types include: {', '.join(PATCH_TYPES_MEDIA)}")
        if content_type == "application/apply-patch+yaml":
            if not query.get("fieldManager"):
                raise BadRequest("PATCH requests with apply content type must set a field "
                                 "manager (the fieldManager parameter)")
            return self._apply(res, ns, name or "", sub, body, manager,
                               query.get("force") == "true", dry_run)
        return 200, self._write(res, ns, name or "", sub, manager, dry_run,
                                lambda current: self._patched(res, current, body,
                                                              content_type, sub))

    def _get(self, res: Resource, ns: str, name: str) -> Obj:
        obj = self.store.get(res.kind, ns, name)
        if obj is None:
            raise ApiError(404, "NotFound", f'{res.plural}{"." + res.group if res.group else ""}'
                           f' "{name}" not found',
                           {"name": name, "group": res.group, "kind": res.plural})
        return obj

    @staticmethod
    def _with_fields(managed: ManagedFields, obj: Obj) -> Obj:
        """`obj` with metadata.managedFields as `managed` says."""
        if managed.entries:
            obj["metadata"]["managedFields"] = managed.render()
        else:
            obj["metadata"].pop("managedFields", None)
        return obj

    def _check_namespace(self, res: Resource, ns: str) -> None:
        if not res.namespaced:
            return
        if self.require_namespaces and self.store.get("Namespace", "", ns) is None:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found',
                           {"name": ns, "kind": "namespaces"})

    def _create(self, res: Resource, ns: str, body: Obj, manager: str, dry_run: bool) -> Obj:
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        if res.namespaced:
            if meta.get("namespace", ns) != ns:
                raise BadRequest("the namespace of the provided object does not match the "
                                 "namespace sent on the request")
            meta["namespace"] = ns
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, "Invalid", f"{res.kind} in version "
                               f'"{res.version}" cannot be handled: name or generateName '
                               "is required")
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        body["kind"], body["apiVersion"] = res.kind, res.group_version
        self._check_namespace(res, ns)
        self._normalize(res, body)
        if res.kind in STATUS_SUBRESOURCE:
            body.pop("status", None)
        for k in ("resourceVersion", "uid", "creationTimestamp", "managedFields",
                  "deletionTimestamp"):
            meta.pop(k, None)
        key = (res.kind, ns, meta["name"])
        self._validate(res, meta["name"], body, None)
        with self.store.lock:
            if self.store.get(*key) is not None:
                raise ApiError(409, "AlreadyExists",
                               f'{res.plural}{"." + res.group if res.group else ""} '
                               f'"{meta["name"]}" already exists',
                               {"name": meta["name"], "group": res.group, "kind": res.plural})
            managed = ManagedFields()
            managed.update(None, body, manager, "", res.kind)
            if dry_run:
                return body
            created = self.store.put(self._with_fields(managed, body))
            self.store.fields[key] = managed
            return created

    @staticmethod
    def _normalize(res: Resource, obj: Obj) -> None:
        """What the server does to every write of these kinds, whatever the client sent."""
        drop_nulls(obj)
        apply_defaults(res.kind, obj)
        if res.kind == "Secret":
            string_data = obj.pop("stringData", None) or {}
            if string_data:
                obj["data"] = {**(obj.get("data") or {}), **{
                    k: base64.b64encode(str(v).encode()).decode()
                    for k, v in string_data.items()}}
            obj.setdefault("type", "Opaque")

    def _validate(self, res: Resource, name: str, new: Obj, old: Obj | None) -> None:
        """Admission, then validation, of a create (`old` None) or an update of the main
        resource: raises the 403 or 422 the real server answers (see VALIDATORS)."""
        if old is not None:
            keep_allocated(res.kind, new, old)
            admit_pvc_resize(self.store, res, name, new, old)
        elif res.kind == "Service":
            allocate_cluster_ip(self.store, new)
        elif res.kind == "PersistentVolumeClaim":
            admit_default_class(self.store, new)
        check = VALIDATORS.get(res.kind)
        errors = check(new, old) if check else []
        if errors:
            raise invalid_error(res, name, errors)

    @staticmethod
    def _replaced(current: Obj, body: Obj, sub: str) -> Obj:
        new = copy.deepcopy(body)
        if sub == "scale":
            out = copy.deepcopy(current)
            out["spec"]["replicas"] = (body.get("spec") or {}).get("replicas", 0)
            out["metadata"]["resourceVersion"] = (body.get("metadata") or {}).get(
                "resourceVersion", current["metadata"]["resourceVersion"])
            return out
        return new

    def _patched(self, res: Resource, current: Obj, patch: Any, content_type: str,
                 sub: str) -> Obj:
        target = self._scale_of(current) if sub == "scale" else current
        if content_type == "application/json-patch+json":
            if not isinstance(patch, list):
                raise PatchError("the JSON patch is not a list of operations", 400)
            out = json_patch(target, patch)
        elif content_type == "application/merge-patch+json":
            out = merge(target, patch)
        else:
            if sub == "scale":
                out = strategic_merge_patch(target, patch, Schema(None))
            else:
                out = strategic_merge_patch(target, patch, res.kind)
        if sub == "scale":
            result = copy.deepcopy(current)
            result["spec"]["replicas"] = (out.get("spec") or {}).get("replicas", 0)
            result["metadata"]["resourceVersion"] = (out.get("metadata") or {}).get(
                "resourceVersion", current["metadata"]["resourceVersion"])
            return result
        check_field_types(res, out, "strategic" if content_type.startswith(
            "application/strategic") else "json", patch)
        return out

    def _write(self, res: Resource, ns: str, name: str, sub: str, manager: str,
               dry_run: bool, change: Callable[[Obj], Obj]) -> Obj:
        """An update or a non-apply patch: `change` makes the new object from the current
        one; preconditions, subresource rules and managed fields are applied here."""
        key = (res.kind, ns, name)
        with self.store.lock:
            current = self._get(res, ns, name)
            new = change(copy.deepcopy(current))
            if not isinstance(new, dict):
                raise PatchError("the result is not an object")
            meta = new.setdefault("metadata", {})
            want = meta.get("resourceVersion")
            if want and want != current["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict",
                               f'Operation cannot be fulfilled on {res.plural}'
                               f'{"." + res.group if res.group else ""} "{name}": the object '
                               "has been modified; please apply your changes to the latest "
                               "version and try again",
                               {"name": name, "group": res.group, "kind": res.plural})
            if meta.get("name", name) != name:
                raise BadRequest("the name of the object does not match the name on the URL")
            new = self._keep(res, current, new, sub)
            self._normalize(res, new)
            if not sub:
                self._validate(res, name, new, current)
            managed = self.store.fields.setdefault(key, ManagedFields())
            trial = copy.deepcopy(managed)
            trial.update(current, new, manager, sub if sub in ("status", "scale") else "",
                         res.kind)
            if dry_run:
                return new
            self.store.fields[key] = trial
            new = self._with_fields(trial, new)
            stored = self.store.update(res.kind, ns, name, replace_with(new))
            return self._scale_of(stored) if sub == "scale" else stored

    @staticmethod
    def _keep(res: Resource, current: Obj, new: Obj, sub: str) -> Obj:
        """The fields a write cannot change: identity and system metadata; the status on
        the main resource and everything but the status on `status`."""
        if sub == "status":
            out = copy.deepcopy(current)
            out["status"] = new.get("status")
            if out["status"] is None:
                out.pop("status")
            return out
        new = copy.deepcopy(new)
        new["kind"], new["apiVersion"] = res.kind, res.group_version
        meta = new.setdefault("metadata", {})
        for k in ("uid", "creationTimestamp", "namespace", "name", "generation",
                  "deletionTimestamp", "resourceVersion"):
            if k in current["metadata"]:
                meta[k] = current["metadata"][k]
            else:
                meta.pop(k, None)
        if res.kind in STATUS_SUBRESOURCE:
            if "status" in current:
                new["status"] = current["status"]
            else:
                new.pop("status", None)
        return new

    def _apply(self, res: Resource, ns: str, name: str, sub: str, body: Any, manager: str,
               force: bool, dry_run: bool) -> tuple[int, Obj]:
        """Server-side apply (application/apply-patch+yaml): see ManagedFields."""
        if sub:
            raise ApiError(415, "UnsupportedMediaType",
                           "the stand-in applies to the main resource only")
        if not isinstance(body, dict):
            raise BadRequest("the applied configuration is not an object")
        check_field_types(res, body, "apply")
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise BadRequest("the name of the object does not match the name on the URL")
        meta["name"] = name
        if res.namespaced:
            meta["namespace"] = ns
        key = (res.kind, ns, name)
        with self.store.lock:
            current = self.store.get(*key)
            managed = copy.deepcopy(self.store.fields.get(key) or ManagedFields())
            try:
                result = managed.apply(current, body, manager, force, res.kind)
            except Conflict as exc:
                raise ApiError(409, "Conflict", str(exc), {
                    "causes": [{"type": "FieldManagerConflict", "field": f,
                                "message": f'conflict with "{m}"'
                                + (f' with subresource "{s}"' if s else "")
                                + f" using {v}"} for m, s, v, f in exc.conflicts]}) from None
            result["kind"], result["apiVersion"] = res.kind, res.group_version
            self._normalize(res, result)
            if current is None:
                self._check_namespace(res, ns)
                self._validate(res, name, result, None)
                if res.kind in STATUS_SUBRESOURCE:
                    result.pop("status", None)
                for k in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
                    result["metadata"].pop(k, None)
                if dry_run:
                    return 201, result
                created = self.store.put(self._with_fields(managed, result))
                self.store.fields[key] = managed
                return 201, created
            result = self._keep(res, current, result, "")
            self._validate(res, name, result, current)
            if dry_run:
                return 200, result
            self.store.fields[key] = managed
            result = self._with_fields(managed, result)
            stored = self.store.update(res.kind, ns, name, replace_with(result))
            return 200, stored

    def _delete(self, res: Resource, ns: str, name: str, query: dict[str, str], body: Any
                ) -> tuple[int, Obj]:
        options = body if isinstance(body, dict) else {}
        propagation = options.get("propagationPolicy") or query.get("propagationPolicy") or \
            ("Orphan" if options.get("orphanDependents") else "Background")
        current = self._get(res, ns, name)
        pre = options.get("preconditions") or {}
        for k in ("uid", "resourceVersion"):
            if pre.get(k) and pre[k] != current["metadata"].get(k):
                raise ApiError(409, "Conflict", f"Precondition failed: {k} in precondition: "
                                                f"{pre[k]}, {k} in object meta: "
                                                f"{current['metadata'].get(k)}")
        if (options.get("dryRun") or query.get("dryRun")) in (["All"], "All"):
            return 200, current
        gone = self.store.request_delete(res.kind, ns, name, propagation)
        if gone is not None and gone["metadata"].get("deletionTimestamp") and \
                self.store.get(res.kind, ns, name) is not None:
            return 200, gone
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                     "status": "Success", "details": {"name": name, "group": res.group,
                                                      "kind": res.plural,
                                                      "uid": current["metadata"]["uid"]}}

    @staticmethod
    def _scale_of(obj: Obj) -> Obj:
        """The autoscaling/v1 Scale of a StatefulSet, Deployment or ReplicaSet."""
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        match = ((spec.get("selector") or {}).get("matchLabels") or {})
        meta = obj["metadata"]
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid",
                                                  "resourceVersion", "creationTimestamp")
                             if k in meta},
                "spec": {"replicas": spec.get("replicas", 1)},
                "status": {"replicas": status.get("replicas", 0),
                           "selector": ",".join(f"{k}={v}" for k, v in sorted(match.items()))}}

    # -- watch ----------------------------------------------------------------------------

    def _watch(self, h: BaseHTTPRequestHandler, res: Resource, ns: str | None,
               labels: list[Requirement], fields: list[Requirement], query: dict[str, str]
               ) -> None:
        plan = self.watch_plans.pop(0) if self.watch_plans else None
        if isinstance(plan, int):
            self._send(h, plan, self._status_obj(plan, "Failed", f"watch failed with {plan}"))
            return
        timeout_s = float(query.get("timeoutSeconds") or 1800)
        rv_text = query.get("resourceVersion", "")
        initial = query.get("sendInitialEvents") == "true"
        replay: list[Event] | None

        def selected(obj: Obj | None) -> bool:
            return obj is not None and matches(labels, obj["metadata"].get("labels")) and \
                fields_match(fields, obj)

        if rv_text in ("", "0") or initial:
            with self.store.lock:  # the bookmark's version is that of the initial events
                current, q = self.store.watch(res.kind, ns)
                version = self.store.version
            replay = [Event("ADDED", o) for o in current if selected(o)]
        else:
            try:
                rv = int(rv_text)
            except ValueError:
                raise BadRequest(f"invalid resource version {rv_text!r}") from None
            replay, q = self.store.watch_from(res.kind, ns, rv)
        try:
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            if replay is None:
                self._line(h, "ERROR", self._status_obj(
                    410, "Expired", f"too old resource version: {rv_text} "
                                    f"({self.store.version})"))
                self._end(h)
                return
            for event in replay:
                line = self._translate(event, selected)
                if line is not None:
                    self._line(h, *line)
            if initial:
                self._line(h, "BOOKMARK", {
                    "kind": res.kind, "apiVersion": res.group_version,
                    "metadata": {"resourceVersion": str(version),
                                 "annotations": {"k8s.io/initial-events-end": "true"}}})
            deadline = time.monotonic() + timeout_s
            while plan != "close" and not self.closing.is_set() and time.monotonic() < deadline:
                try:
                    event = q.get(timeout=0.2)
                except queue.Empty:
                    continue
                line = self._translate(event, selected)
                if line is not None:
                    self._line(h, *line)
            self._end(h)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        finally:
            self.store.unwatch(q)

    @staticmethod
    def _translate(event: Event, selected: Callable[[Obj | None], bool]
                   ) -> tuple[str, Obj] | None:
        """An event as a watch with selectors sees it (the cacher's filtering)."""
        now, before = selected(event.obj), selected(event.old)
        if event.type == "ADDED" or event.old is None:
            return (event.type, event.obj) if now else None
        if event.type == "DELETED":
            return ("DELETED", event.obj) if before or now else None
        if now and not before:
            return "ADDED", event.obj
        if before and not now:
            return "DELETED", event.obj
        return ("MODIFIED", event.obj) if now else None

    @staticmethod
    def _line(h: BaseHTTPRequestHandler, kind: str, obj: Obj) -> None:
        data = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
        h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        h.wfile.flush()

    @staticmethod
    def _end(h: BaseHTTPRequestHandler) -> None:
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()

    # -- responses ------------------------------------------------------------------------

    @staticmethod
    def _status_obj(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
        out: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "reason": reason, "message": message, "code": code}
        if not reason:
            del out["reason"]  # StatusReasonUnknown is "", omitted (omitempty)
        if details:
            out["details"] = details
        return out

    def _status(self, h: BaseHTTPRequestHandler, code: int, reason: str, message: str) -> None:
        self._send(h, code, self._status_obj(code, reason, message))

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, code: int, obj: Obj) -> None:
        body = json.dumps(obj).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    @staticmethod
    def _send_text(h: BaseHTTPRequestHandler, code: int, text: str) -> None:
        body = text.encode()
        h.send_response(code)
        h.send_header("Content-Type", "text/plain; charset=utf-8")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

