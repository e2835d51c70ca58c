"""The API server stand-in's strategic merge patch (tests/support/apiserver.py) against
cases whose results upstream states.

Two sources:
- k8s.io/apimachinery v0.32.3 pkg/util/strategicpatch/patch_test.go: its test type
  `MergeItem` (mirrored below as MERGE_ITEM, with the same struct tags) and its raw test
  cases, each named by its `Description`; a case's original plus its patch ("TwoWay") must
  give "Modified" (or "TwoWayResult"), its current plus "ThreeWay" must give "Result", in
  that exact order (upstream compares the marshalled JSON). The data below is upstream's.
- the Kubernetes task page "Update API Objects in Place Using kubectl patch"
  (kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/):
  containers merge by name, tolerations (no patchStrategy) are replaced, `$retainKeys`
  clears a Deployment strategy's other fields; and the patch real helm 3.17 sent for an
  upgrade after `kubectl scale` (tests/cluster/test_real_tools.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support.apiserver import F, PatchError, Schema, strategic_merge_patch

# patch_test.go `MergeItem` and `RetainKeysMergeItem`, field by field with their tags.
MERGE_ITEM = {
    "mergingList": F("MergeItem", "merge", "name"),
    "nonMergingList": F("MergeItem"),
    "mergingIntList": F(None, "merge"),
    "nonMergingIntList": F(None),
    "mergeItemPtr": F("MergeItem", "merge", "name"),
    "simpleMap": F(None),
    "replacingItem": F(None, "replace"),
    "retainKeysMap": F("RetainKeysMergeItem", "retainKeys"),
    "retainKeysMergingList": F("MergeItem", "merge,retainKeys", "name"),
}
RETAIN_KEYS_ITEM = {"mergingIntList": F(None, "merge"),
                    "mergingList": F("MergeItem", "merge", "name"),
                    "nonMergingList": F("MergeItem")}
SCHEMA = Schema("MergeItem", {"MergeItem": MERGE_ITEM, "RetainKeysMergeItem": RETAIN_KEYS_ITEM})

# (Description, original or current, TwoWay or ThreeWay patch, expected), from the raw
# cases of patch_test.go (customStrategicMergePatchRawTestCases and
# strategicMergePatchRawTestCases).
UPSTREAM = [
    ("$setElementOrder contains item that is not present in the list to be merged", """
mergingList:
  - name: 1
  - name: 3
""", """
$setElementOrder/mergingList:
  - name: 3
  - name: 2
  - name: 1
mergingList:
  - name: 3
    value: 3
  - name: 1
    value: 1
""", """
mergingList:
  - name: 3
    value: 3
  - name: 1
    value: 1
"""),
    ("$deleteFromPrimitiveList should delete item from a list with merge patch strategy", """
mergingIntList:
  - 1
  - 2
  - 3
""", """
$deleteFromPrimitiveList/mergingIntList:
  - 2
""", """
mergingIntList:
  - 1
  - 3
"""),
    ("$deleteFromPrimitiveList of nonexistent item in primitive list should not add the item "
     "to the list", """
mergingIntList:
  - 1
  - 2
""", """
$deleteFromPrimitiveList/mergingIntList:
  - 3
""", """
mergingIntList:
  - 1
  - 2
"""),
    # ThreeWay of "add map and delete map from merging list": the order of the result
    # depends on upstream deleting and appending within the live list's Go backing array.
    ("add map and delete map from merging list (three-way)", """
mergingList:
  - name: 1
  - name: 2
    other: b
  - name: 4
    other: c
""", """
$setElementOrder/mergingList:
  - name: 2
  - name: 3
mergingList:
  - name: 3
  - name: 1
    $patch: delete
""", """
mergingList:
  - name: 2
    other: b
  - name: 4
    other: c
  - name: 3
"""),
    ("set elements order in a list with server-only items (three-way)", """
mergingList:
  - name: 1
    other: a
  - name: 3
    value: 3
  - name: 4
    value: 4
  - name: 2
    value: 2
  - name: 9
""", """
$setElementOrder/mergingList:
  - name: 4
  - name: 2
  - name: 3
  - name: 1
""", """
mergingList:
  - name: 4
    value: 4
  - name: 2
    value: 2
  - name: 3
    value: 3
  - name: 1
    other: a
  - name: 9
"""),
    ("retainKeys map should clear defaulted field with conflict (discriminated union) "
     "(three-way)", """
retainKeysMap:
  name: type1
  value: foo
""", """
retainKeysMap:
  $retainKeys:
    - name
    - other
  name: type2
  other: bar
""", """
retainKeysMap:
  name: type2
  other: bar
"""),
    ("delete and reorder in one list, reorder in another (three-way)", """
mergingList:
- name: a
  value: a
- name: b
  value: b
mergeItemPtr:
- name: c
  value: c
- name: d
  value: d
""", """
$setElementOrder/mergingList:
- name: b
$setElementOrder/mergeItemPtr:
- name: d
- name: c
mergingList:
- $patch: delete
  name: a
""", """
mergingList:
- name: b
  value: b
mergeItemPtr:
- name: d
  value: d
- name: c
  value: c
"""),
]
# From the YAML cases of patch_test.go (customStrategicMergePatchTestCaseData).
UPSTREAM += [
    ("delete all duplicate entries in a merging list", """
mergingList:
  - name: 1
  - name: 1
  - name: 2
    value: a
  - name: 3
  - name: 3
""", """
mergingList:
  - name: 1
    $patch: delete
  - name: 3
    $patch: delete
""", """
mergingList:
  - name: 2
    value: a
"""),
    ("delete all items from merging list", """
mergingList:
  - name: 1
  - name: 2
""", """
mergingList:
  - $patch: replace
""", """
mergingList: []
"""),
    ("add key and delete all keys from map", """
name: 1
value: 1
""", """
other: a
$patch: replace
""", """
other: a
"""),
    ("delete map from nested map", """
simpleMap:
  key1: 1
  key2: 1
""", """
simpleMap:
  $patch: delete
""", """
simpleMap: {}
"""),
]


def load(text: str) -> Any:
    return yaml.safe_load(text)


@pytest.mark.parametrize(("original", "patch", "expected"),
                         [c[1:] for c in UPSTREAM], ids=[c[0] for c in UPSTREAM])
def test_upstream_cases(original: str, patch: str, expected: str) -> None:
    got = strategic_merge_patch(load(original), load(patch), SCHEMA)
    assert got == load(expected)
    # and in upstream's order: lists compare in order already; maps compare by key
    assert list(got) == list(load(expected)) or sorted(got) == sorted(load(expected))


def test_upstream_errors() -> None:
    """patch_test.go: "should check if order in $setElementOrder and patch list match" and
    "missing merge key should error out" (customStrategicMergePatchRawTestCases)."""
    with pytest.raises(PatchError, match="doesn't match"):
        strategic_merge_patch(load("mergingList: [{name: 1}, {name: 3}, {name: 2}]"), load("""
$setElementOrder/mergingList: [{name: 1}, {name: 2}, {name: 3}]
mergingList: [{name: 2, value: 2}, {name: 1, value: 1}]
"""), SCHEMA)
    with pytest.raises(PatchError, match="does not contain declared merge key: name"):
        strategic_merge_patch(load("mergingList: [{name: a, value: a}]"),
                              load("mergingList: [{value: b}]"), SCHEMA)


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: patch-demo
spec:
  replicas: 2
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: patch-demo-ctr
        image: nginx
      tolerations:
      - effect: NoSchedule
        key: dedicated
        value: test-team
"""


def test_containers_merge_by_name_and_tolerations_are_replaced() -> None:
    """The kubectl patch task page: a patch with a second container keeps the first (the
    `patchStrategy:"merge" patchMergeKey:"name"` of PodSpec.Containers); a patch of
    tolerations replaces the list (PodSpec.Tolerations has no patchStrategy)."""
    deployment = load(DEPLOYMENT)
    got = strategic_merge_patch(deployment, load("""
spec:
  template:
    spec:
      containers:
      - name: patch-demo-ctr-2
        image: redis
"""), "Deployment")
    # Both stay, the patch's first: mergeSlice orders patch items ahead of server-only
    # ones that have no place among them (mergeSortedSlice), as the page's output shows.
    assert got["spec"]["template"]["spec"]["containers"] == [
        {"name": "patch-demo-ctr-2", "image": "redis"},
        {"name": "patch-demo-ctr", "image": "nginx"}]
    got = strategic_merge_patch(got, load("""
spec:
  template:
    spec:
      tolerations:
      - effect: NoSchedule
        key: disktype
        value: ssd
"""), "Deployment")
    assert got["spec"]["template"]["spec"]["tolerations"] == [
        {"effect": "NoSchedule", "key": "disktype", "value": "ssd"}]
    assert len(got["spec"]["template"]["spec"]["containers"]) == 2


def test_retain_keys_clears_the_other_fields_of_a_deployment_strategy() -> None:
    """The kubectl patch task page, "Use strategic merge patch to update a Deployment using
    the retainKeys strategy": without the directive the patch merges into rollingUpdate's
    neighbour; with `$retainKeys: [type]` only `type` stays."""
    deployment = load(DEPLOYMENT)
    deployment["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {
        "maxSurge": "25%", "maxUnavailable": "25%"}}
    plain = strategic_merge_patch(deployment, {"spec": {"strategy": {"type": "Recreate"}}},
                                  "Deployment")
    assert plain["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%",
                                                          "maxUnavailable": "25%"}
    retained = strategic_merge_patch(deployment, {"spec": {"strategy": {
        "$retainKeys": ["type"], "type": "Recreate"}}}, "Deployment")
    assert retained["spec"]["strategy"] == {"type": "Recreate"}


def test_a_json_merge_patch_of_containers_would_replace_them() -> None:
    """The same page's contrast, for the kinds the stand-in knows: a field with no entry in
    the table (here a list in an unknown kind) is replaced, as JSON merge patch does."""
    got = strategic_merge_patch({"spec": {"items": [{"name": "a"}]}},
                                {"spec": {"items": [{"name": "b"}]}}, "NoSuchKind")
    assert got == {"spec": {"items": [{"name": "b"}]}}


def test_helm3_upgrade_patch_after_kubectl_scale() -> None:
    """What helm v3.17.2 sent for `helm upgrade` of an unchanged StatefulSet scaled to 3 by
    kubectl (original and new manifest say 2): exactly {"spec":{"replicas":2}}."""
    live: dict[str, Any] = {"kind": "StatefulSet", "spec": {"replicas": 3, "template": {"spec": {
        "containers": [{"name": "dataflow", "image": "i",
                        "env": [{"name": "A", "value": "1"}]}]}}}}
    got = strategic_merge_patch(live, {"spec": {"replicas": 2}}, "StatefulSet")
    assert got["spec"]["replicas"] == 2
    assert got["spec"]["template"] == live["spec"]["template"]


def test_env_and_ports_merge_with_their_keys_and_keep_the_order_asked_for() -> None:
    """A three-way patch as helm 3 and kubectl make them for a changed env list: one
    variable changed, one added, `$setElementOrder/env` giving the new order, a variable
    only the live object has kept after them; ports merge by containerPort (core/v1
    types.go tags). Traced through upstream's mergeSlice and mergePatchIntoOriginal."""
    live = {"spec": {"template": {"spec": {"containers": [{
        "name": "c", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"},
                             {"name": "SERVER_ONLY", "value": "x"}],
        "ports": [{"containerPort": 80, "name": "http"}]}]}}}}
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "c"}],
        "containers": [{"name": "c",
                        "$setElementOrder/env": [{"name": "C"}, {"name": "A"}, {"name": "B"}],
                        "env": [{"name": "C", "value": "3"}, {"name": "A", "value": "10"}],
                        "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}}}
    got = strategic_merge_patch(live, patch, "Deployment")
    container = got["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "C", "value": "3"}, {"name": "A", "value": "10"},
                                {"name": "B", "value": "2"}, {"name": "SERVER_ONLY", "value": "x"}]
    assert container["ports"] == [{"containerPort": 80, "name": "http", "protocol": "TCP"}]
    # `$patch: delete` removes by key. (Where the remaining server-only items then land
    # depends on the capacity of upstream's Go slice, so only the contents are checked.)
    got = strategic_merge_patch(got, {"spec": {"template": {"spec": {"containers": [{
        "name": "c", "env": [{"name": "B", "$patch": "delete"}]}]}}}}, "Deployment")
    env = got["spec"]["template"]["spec"]["containers"][0]["env"]
    assert sorted(e["name"] for e in env) == ["A", "C", "SERVER_ONLY"]


def test_finalizers_merge_as_a_set_and_delete_from_primitive_list() -> None:
    """ObjectMeta.Finalizers is `patchStrategy:"merge"` without a key: values are added
    once, `$deleteFromPrimitiveList/finalizers` removes them (as upstream's
    "$deleteFromPrimitiveList should delete item from a list with merge patch strategy")."""
    obj = {"metadata": {"finalizers": ["a", "b"]}}
    got = strategic_merge_patch(obj, {"metadata": {"finalizers": ["b", "c"]}}, "Pod")
    assert got["metadata"]["finalizers"] == ["a", "b", "c"]
    got = strategic_merge_patch(got, {"metadata": {"$deleteFromPrimitiveList/finalizers":
                                                   ["a"]}}, "Pod")
    assert got["metadata"]["finalizers"] == ["b", "c"]


def test_volumes_retain_keys_switch_a_volume_source() -> None:
    """PodSpec.Volumes is `patchStrategy:"merge,retainKeys" patchMergeKey:"name"`: the
    element's `$retainKeys` drops the old source when the patch switches it."""
    live = {"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}
    got = strategic_merge_patch(live, {"spec": {"volumes": [{
        "name": "v", "$retainKeys": ["configMap", "name"],
        "configMap": {"name": "cm"}}]}}, "Pod")
    assert got["spec"]["volumes"] == [{"name": "v", "configMap": {"name": "cm"}}]


def test_null_deletes_and_unknown_directives_fail() -> None:
    got = strategic_merge_patch({"metadata": {"labels": {"a": "1", "b": "2"}}},
                                {"metadata": {"labels": {"a": None}}}, "Pod")
    assert got == {"metadata": {"labels": {"b": "2"}}}
    with pytest.raises(PatchError, match="Unknown patch type"):
        strategic_merge_patch({"spec": {}}, {"spec": {"$patch": "frobnicate"}}, "Pod")
    with pytest.raises(PatchError, match="merging lists cannot yet be specified"):
        strategic_merge_patch({"spec": {"containers": [{"name": "a"}]}},
                              {"spec": {"containers": [{"$patch": "merge"}]}}, "Pod")
