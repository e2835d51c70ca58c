"""The dataflow's recovery volume works on one node and on many: every pod mounts the one
claim, so a ReadWriteOnce claim keeps every dataflow pod on one node (a required pod
affinity), and a ReadWriteMany claim needs a storage class that shares files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import Chart, Rendered
from tests.chart.notes import install_notes

HOSTNAME = "kubernetes.io/hostname"
RWX = ("dataflow.recovery.accessMode=ReadWriteMany",
       "dataflow.recovery.storageClassName=cephfs")


def _pod_spec(docs: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = docs.find("StatefulSet", "-dataflow")["spec"]["template"]["spec"]
    return spec


def _same_node_term(docs: Rendered) -> dict[str, Any]:
    """The term that puts a dataflow pod on the node of the other dataflow pods."""
    sts = docs.find("StatefulSet", "-dataflow")
    return {"labelSelector": {"matchLabels": sts["spec"]["selector"]["matchLabels"]},
            "topologyKey": HOSTNAME}


def _render_values(chart: Chart, tmp_path: Path, values: dict[str, Any], *sets: str,
                   major: str = "3") -> Rendered:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return chart.render(*sets, values=(path,), major=major)


def test_read_write_once_keeps_every_dataflow_pod_on_one_node(chart: Chart,
                                                              helm_major: str) -> None:
    """The default (ReadWriteOnce): a required pod affinity by hostname to the dataflow
    pods' own selector labels, which the pods carry (so the first one matches itself)."""
    docs = chart.render(major=helm_major)
    assert docs.find("PersistentVolumeClaim", "-recovery")["spec"]["accessModes"] == [
        "ReadWriteOnce"]
    affinity = _pod_spec(docs)["affinity"]
    assert affinity == {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [_same_node_term(docs)]}}
    labels = docs.find("StatefulSet", "-dataflow")["spec"]["template"]["metadata"]["labels"]
    selector = _same_node_term(docs)["labelSelector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert selector["app.kubernetes.io/component"] == "dataflow"
    # Only the dataflow: NATS, the frontend and the local model are free to spread.
    for w in docs.workloads():
        if w["metadata"]["name"] != docs.find("StatefulSet", "-dataflow")["metadata"]["name"]:
            assert "podAffinity" not in w["spec"]["template"]["spec"].get("affinity", {})


def test_read_write_many_has_no_affinity_and_needs_a_storage_class(chart: Chart,
                                                                   helm_major: str) -> None:
    docs = chart.render(*RWX, major=helm_major)
    assert "affinity" not in _pod_spec(docs)
    pvc = docs.find("PersistentVolumeClaim", "-recovery")["spec"]
    assert (pvc["accessModes"], pvc["storageClassName"]) == (["ReadWriteMany"], "cephfs")
    # The cluster's default class is no answer: it is rarely one that shares files.
    for missing in ((), ("dataflow.recovery.storageClassName=",)):
        res = chart.helm(helm_major, *chart.template_args(
            "dataflow.recovery.accessMode=ReadWriteMany", *missing))
        assert res.returncode != 0
        assert "storageClassName" in res.stderr, res.stderr
    # Without recovery there is no volume, so no class is needed and no affinity made.
    off = chart.render("dataflow.recovery.enabled=false",
                       "dataflow.recovery.accessMode=ReadWriteMany", major=helm_major)
    assert not off.of_kind("PersistentVolumeClaim")
    assert "affinity" not in _pod_spec(off)
    assert "affinity" not in _pod_spec(chart.render("dataflow.recovery.enabled=false"))


def test_a_users_affinity_is_kept_and_the_same_node_term_added(chart: Chart,
                                                               tmp_path: Path) -> None:
    """dataflow.affinity merges: every key the user gives stays as given, and the chart's
    term is appended to the user's required pod-affinity terms (both must hold), once."""
    node = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["dataflow"]}]}]}}
    own_term = {"labelSelector": {"matchLabels": {"app": "vllm"}}, "topologyKey": HOSTNAME}
    preferred = [{"weight": 10, "podAffinityTerm": own_term}]
    anti = {"preferredDuringSchedulingIgnoredDuringExecution": preferred}
    user = {"nodeAffinity": node, "podAntiAffinity": anti, "podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [own_term],
        "preferredDuringSchedulingIgnoredDuringExecution": preferred}}
    docs = _render_values(chart, tmp_path, {"dataflow": {"affinity": user}})
    affinity = _pod_spec(docs)["affinity"]
    assert affinity["nodeAffinity"] == node and affinity["podAntiAffinity"] == anti
    assert affinity["podAffinity"] == {
        "requiredDuringSchedulingIgnoredDuringExecution": [own_term, _same_node_term(docs)],
        "preferredDuringSchedulingIgnoredDuringExecution": preferred}
    # A user who already wrote the chart's term does not get it twice.
    (tmp_path / "again").mkdir()
    same = _render_values(chart, tmp_path / "again", {"dataflow": {"affinity": {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [_same_node_term(docs)]}}}})
    assert _pod_spec(same)["affinity"] == {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [_same_node_term(docs)]}}
    # With ReadWriteMany the user's affinity is rendered exactly as given.
    (tmp_path / "rwx").mkdir()
    rwx = _render_values(chart, tmp_path / "rwx", {"dataflow": {"affinity": user}}, *RWX)
    assert _pod_spec(rwx)["affinity"] == user


def test_read_write_once_pod_is_refused_for_more_than_one_process(chart: Chart) -> None:
    """ReadWriteOncePod lets one pod mount the claim: right for one process only."""
    res = chart.helm("3", *chart.template_args("dataflow.recovery.accessMode=ReadWriteOncePod"))
    assert res.returncode != 0 and "ReadWriteOncePod" in res.stderr
    one = chart.render("dataflow.recovery.accessMode=ReadWriteOncePod", "dataflow.processes=1")
    assert one.find("PersistentVolumeClaim", "-recovery")["spec"]["accessModes"] == [
        "ReadWriteOncePod"]


def test_production_values_share_recovery_across_nodes_on_a_named_class(chart: Chart) -> None:
    prod = chart.path / "ci" / "production-values.yaml"
    docs = chart.render(values=(prod,))
    pvc = docs.find("PersistentVolumeClaim", "-recovery")["spec"]
    assert pvc["accessModes"] == ["ReadWriteMany"] and pvc["storageClassName"]
    assert "affinity" not in _pod_spec(docs)
    assert "PLACEHOLDER" in prod.read_text()  # the class name is said to be an example


@pytest.mark.parametrize(("sets", "one_node"), [((), True), (RWX, False)],
                         ids=["read-write-once", "read-write-many"])
def test_install_notes_say_when_the_dataflow_is_on_one_node(chart: Chart, sets: tuple[str, ...],
                                                            one_node: bool) -> None:
    notes = install_notes(chart, *sets)
    assert ("All dataflow pods run on ONE node" in notes) is one_node
