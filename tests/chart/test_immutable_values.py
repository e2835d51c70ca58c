"""Values the API server will not let change after install are refused before anything is
applied (charts/chatwax/templates/_immutable.tpl, issue #21 item 3): the storage values, and
the names (nameOverride, fullnameOverride).

The chart reads the live NATS StatefulSet and recovery claim with `lookup`, and lists the
namespace's StatefulSets and Deployments. helm renders
with lookups only against a cluster: `helm template --dry-run=server` (helm >= 3.13,
helm 4) here talks to the API server stand-in (tests/support/apiserver.py) holding the
objects an installed release has, as the real server stores them (quantities in canonical
form, e.g. 1Gi). Plain `helm template` (and a client-side dry run, and Argo CD) has no
cluster: `lookup` is empty and the chart renders whatever the values say.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART, NAMESPACE, Chart
from tests.support.apiserver import ApiServer

STS = "chatwax-nats"
PVC = "chatwax-dataflow-recovery"


def owned(name: str) -> dict[str, Any]:
    """Metadata of an object the release made (helm 4's dry run checks it may adopt it)."""
    return {"name": name, "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"meta.helm.sh/release-name": "chatwax",
                            "meta.helm.sh/release-namespace": NAMESPACE}}


def nats_statefulset(size: str = "10Gi", storage_class: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": size}},
                            "volumeMode": "Filesystem"}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    labels = {"app.kubernetes.io/name": "chatwax"}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": owned(STS),
            "spec": {"replicas": 1, "serviceName": "chatwax-nats-headless",
                     "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "nats", "image": "nats"}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": spec}]}}


def recovery_claim(size: str = "1Gi", mode: str = "ReadWriteOnce",
                   storage_class: str | None = "standard", phase: str | None = "Bound"
                   ) -> dict[str, Any]:
    """As the server stores it: the DefaultStorageClass admission plugin names the default
    class in a claim created without one; a binder sets the phase."""
    spec: dict[str, Any] = {"accessModes": [mode], "resources": {"requests": {"storage": size}},
                            "volumeMode": "Filesystem"}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    claim: dict[str, Any] = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                             "metadata": owned(PVC), "spec": spec}
    if phase is not None:
        claim["status"] = {"phase": phase, "capacity": {"storage": size}}
    return claim


def storage_class(name: str, expandable: bool) -> dict[str, Any]:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name}, "provisioner": "example.com/disk",
            "allowVolumeExpansion": expandable}


class Cluster:
    """The stand-in with a kubeconfig; `render` runs helm with lookups against it."""

    def __init__(self, chart: Chart, work: Path) -> None:
        self.chart = chart
        self.server = ApiServer(tls_dir=work)
        self.kubeconfig = self.server.kubeconfig(work / "kubeconfig", NAMESPACE)
        for cls in (storage_class("standard", True), storage_class("fixed", False)):
            self.server.store.put(cls)

    def holds(self, *objs: dict[str, Any]) -> None:
        for obj in objs:
            self.server.store.put(copy.deepcopy(obj))

    def render(self, major: str, *sets: str) -> tuple[int, str, list[dict[str, Any]]]:
        args = [*self.chart.template_args(*sets), "--dry-run=server",
                "--kubeconfig", str(self.kubeconfig)]
        res = self.chart.helm(major, *args)
        docs = [d for d in yaml.safe_load_all(res.stdout) if d] if res.returncode == 0 else []
        return res.returncode, res.stderr, docs


@pytest.fixture
def cluster(chart: Chart, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(chart, tmp_path)
    try:
        yield c
    finally:
        c.server.close()


def claim_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "PersistentVolumeClaim")


def test_with_no_cluster_every_value_renders(chart: Chart, helm_major: str) -> None:
    """`helm template` (and Argo CD, which renders with it) has no live objects: nothing
    is refused."""
    docs = chart.render("nats.jetstream.storageSize=20Gi", "nats.jetstream.storageClassName=x",
                        "dataflow.recovery.size=512Mi", major=helm_major)
    assert claim_of(docs)["spec"]["resources"]["requests"]["storage"] == "512Mi"


def test_nothing_installed_renders_as_the_values_say(cluster: Cluster, helm_major: str
                                                     ) -> None:
    rc, err, docs = cluster.render(helm_major, "nats.jetstream.storageSize=20Gi")
    assert rc == 0, err
    assert "storageClassName" not in claim_of(docs)["spec"]


@pytest.mark.parametrize("size", ["10Gi", "10240Mi", "10485760Ki"])
def test_the_installed_nats_size_in_any_form_is_accepted(cluster: Cluster, helm_major: str,
                                                         size: str) -> None:
    """The server stores 10240Mi as 10Gi: bytes are compared, not text."""
    cluster.holds(nats_statefulset("10Gi"), recovery_claim())
    rc, err, _ = cluster.render(helm_major, f"nats.jetstream.storageSize={size}")
    assert rc == 0, err


@pytest.mark.parametrize("size", ["20Gi", "5Gi", "10G"])
def test_a_new_nats_size_is_refused(cluster: Cluster, helm_major: str, size: str) -> None:
    cluster.holds(nats_statefulset("10Gi"))
    rc, err, _ = cluster.render(helm_major, f"nats.jetstream.storageSize={size}")
    assert rc != 0
    assert ("nats.jetstream.storageSize cannot change after install: the StatefulSet "
            f"chatwax-nats has volumes of 10Gi, the new value is {size}") in err, err
    assert "Keep --set nats.jetstream.storageSize=10Gi" in err
    assert 'docs/kubernetes.md "Storage values after install"' in err


def test_a_new_nats_storage_class_is_refused(cluster: Cluster, helm_major: str) -> None:
    cluster.holds(nats_statefulset("10Gi"))
    rc, err, _ = cluster.render(helm_major, "nats.jetstream.storageClassName=fast")
    assert rc != 0
    assert ('nats.jetstream.storageClassName cannot change after install: the StatefulSet '
            'chatwax-nats has volumes of class "", the new value is "fast"') in err, err
    cluster.holds(nats_statefulset("10Gi", "fast"))
    assert cluster.render(helm_major, "nats.jetstream.storageClassName=fast")[0] == 0
    rc, err, _ = cluster.render(helm_major)
    assert rc != 0 and 'of class "fast", the new value is ""' in err, err


@pytest.mark.parametrize(("size", "ok"), [("1Gi", True), ("1024Mi", True), ("2Gi", True),
                                          ("512Mi", False), ("1G", False)])
def test_the_recovery_claim_may_grow_on_an_expandable_class(
        cluster: Cluster, helm_major: str, size: str, ok: bool) -> None:
    cluster.holds(recovery_claim("1Gi", storage_class="standard"))
    rc, err, docs = cluster.render(helm_major, f"dataflow.recovery.size={size}")
    if ok:
        assert rc == 0, err
        # The empty value renders the class the claim got by default: no change to an
        # immutable field is sent.
        assert claim_of(docs)["spec"]["storageClassName"] == "standard"
        return
    assert rc != 0
    assert (f"dataflow.recovery.size cannot shrink: the claim {PVC} requests 1Gi, the new "
            f"value is {size}") in err, err


def test_growth_is_refused_where_the_server_would_refuse_it(cluster: Cluster,
                                                            helm_major: str) -> None:
    cluster.holds(recovery_claim("1Gi", storage_class="fixed"))
    rc, err, _ = cluster.render(helm_major, "dataflow.recovery.size=2Gi")
    assert rc != 0
    assert ("dataflow.recovery.size can grow only where the claim's StorageClass allows it: "
            f'the claim {PVC} (1Gi) has class "fixed"') in err, err
    cluster.holds(recovery_claim("1Gi", storage_class="standard", phase="Pending"))
    rc, err, _ = cluster.render(helm_major, "dataflow.recovery.size=2Gi")
    assert rc != 0
    assert f"dataflow.recovery.size can grow only on a bound claim: the claim {PVC}" in err
    # No class at all (a claim bound to a volume by hand): upstream's resize admission
    # allows no resize of a claim without a class.
    cluster.holds(recovery_claim("1Gi", storage_class=None))
    rc, err, _ = cluster.render(helm_major, "dataflow.recovery.size=2Gi")
    assert rc != 0 and 'has class ""' in err, err


def test_a_new_recovery_class_or_access_mode_is_refused(cluster: Cluster,
                                                        helm_major: str) -> None:
    cluster.holds(recovery_claim("1Gi", storage_class="standard"))
    rc, err, _ = cluster.render(helm_major, "dataflow.recovery.storageClassName=fixed")
    assert rc != 0
    assert ('dataflow.recovery.storageClassName cannot change after install: the claim '
            f'{PVC} has class "standard", the new value is "fixed"') in err, err
    assert cluster.render(helm_major, "dataflow.recovery.storageClassName=standard")[0] == 0
    rc, err, _ = cluster.render(helm_major, "dataflow.recovery.accessMode=ReadWriteMany",
                                "dataflow.recovery.storageClassName=standard")
    assert rc != 0
    assert (f"dataflow.recovery.accessMode cannot change after install: the claim {PVC} is "
            "ReadWriteOnce, the new value is ReadWriteMany") in err, err


def installed(chart: Chart, *sets: str, release: str = "chatwax") -> list[dict[str, Any]]:
    """The StatefulSets and Deployments an install with `sets` made (the local LLM on, so
    all four components), as helm leaves them: rendered by the chart, with helm's
    ownership metadata."""
    args = chart.template_args("llm.local.enabled=true", *sets)
    args[1] = release
    res = chart.helm("3", *args)
    assert res.returncode == 0, res.stderr
    workloads = [d for d in yaml.safe_load_all(res.stdout)
                 if d and d["kind"] in ("StatefulSet", "Deployment")]
    for w in workloads:
        meta = w["metadata"]
        meta["namespace"] = NAMESPACE
        meta.setdefault("annotations", {}).update({"meta.helm.sh/release-name": release,
                                                   "meta.helm.sh/release-namespace": NAMESPACE})
    assert len(workloads) == 4, [w["metadata"]["name"] for w in workloads]
    return workloads


RENAMED = ("Helm would create new StatefulSets and Deployments under the new names, with new, "
           "empty volume claims (the JetStream data and the dataflow's recovery state stay in "
           "the old claims), and delete the old ones.")
SELECTOR = ("Kubernetes refuses any change to a StatefulSet's or Deployment's spec.selector, so "
            "the upgrade would half-apply (ConfigMaps and Services changed, the workloads "
            "refused, the release failed).")
NEW_RELEASE = ('a new name means a new release with new, empty volumes (docs/kubernetes.md '
               '"Storage values after install").')


def refusal(values: str, kind: str, name: str, label: str, new_name: str, new_label: str,
            why: str, keep: str) -> str:
    return (f"{values} cannot change after install: the installed {kind} is {name} with the "
            f"selector label app.kubernetes.io/name={label}, the new values make it {new_name} "
            f"with app.kubernetes.io/name={new_label}. {why} Nothing was applied. Keep {keep}; "
            f"{NEW_RELEASE}")


def refused(err: str, message: str) -> None:
    """The render stopped at the name check with exactly `message`."""
    line = next((ln for ln in err.splitlines() if "cannot change after install" in ln), "")
    assert "dataflow-statefulset.yaml" in line, err
    assert line.endswith(f"): {message}"), f"{line}\n!=\n{message}"


@pytest.mark.parametrize(("value", "new_name", "label"), [
    # Without fullnameOverride, nameOverride is part of every name: a rename.
    ("nameOverride=assistant", "chatwax-assistant-dataflow", "assistant"),
    # The installed names are those fullnameOverride=chatwax gives (the release's default).
    ("fullnameOverride=support", "support-dataflow", "chatwax"),
])
def test_a_new_name_or_fullname_override_is_refused(
        chart: Chart, cluster: Cluster, helm_major: str, value: str, new_name: str,
        label: str) -> None:
    cluster.holds(*installed(chart))
    rc, err, _ = cluster.render(helm_major, "llm.local.enabled=true", value)
    assert rc != 0
    key = value.split("=", 1)[0]
    refused(err, refusal(key, "StatefulSet", "chatwax-dataflow", "chatwax", new_name, label,
                         RENAMED, f"--set {key}=chatwax"))


def test_a_new_name_override_under_a_fullname_override_is_refused(
        chart: Chart, cluster: Cluster, helm_major: str) -> None:
    """With fullnameOverride the names stay and only the selector label changes: what the
    API server refuses for StatefulSets and Deployments alike."""
    cluster.holds(*installed(chart, "fullnameOverride=support"))
    rc, err, _ = cluster.render(helm_major, "llm.local.enabled=true",
                                "fullnameOverride=support", "nameOverride=assistant")
    assert rc != 0
    refused(err, refusal("nameOverride", "StatefulSet", "support-dataflow", "chatwax",
                         "support-dataflow", "assistant", SELECTOR,
                         "--set nameOverride=chatwax"))


def test_both_overrides_changed_name_both(chart: Chart, cluster: Cluster, helm_major: str
                                          ) -> None:
    cluster.holds(*installed(chart, "nameOverride=assistant", "fullnameOverride=support"))
    rc, err, _ = cluster.render(helm_major, "llm.local.enabled=true")
    assert rc != 0
    refused(err, refusal("nameOverride and fullnameOverride", "StatefulSet", "support-dataflow",
                         "assistant", "chatwax-dataflow", "chatwax", RENAMED,
                         "--set nameOverride=assistant and --set fullnameOverride=support"))


@pytest.mark.parametrize("sets", [(), ("nameOverride=assistant",), ("fullnameOverride=support",),
                                  ("nameOverride=assistant", "fullnameOverride=support")],
                         ids=["defaults", "nameOverride", "fullnameOverride", "both"])
def test_the_installed_names_are_accepted(chart: Chart, cluster: Cluster, helm_major: str,
                                          sets: tuple[str, ...]) -> None:
    cluster.holds(*installed(chart, *sets))
    rc, err, docs = cluster.render(helm_major, "llm.local.enabled=true", *sets)
    assert rc == 0, err
    assert len([d for d in docs if d["kind"] in ("StatefulSet", "Deployment")]) == 4


def test_another_release_in_the_namespace_is_not_compared(chart: Chart, cluster: Cluster,
                                                          helm_major: str) -> None:
    """Its objects carry another app.kubernetes.io/instance: neither its names nor its
    label are this release's."""
    cluster.holds(*installed(chart, "nameOverride=assistant", release="other"))
    rc, err, _ = cluster.render(helm_major, "llm.local.enabled=true")
    assert rc == 0, err
    rc, err, _ = cluster.render(helm_major, "llm.local.enabled=true", "fullnameOverride=support")
    assert rc == 0, err


def test_a_component_the_values_turn_off_is_not_compared(chart: Chart, cluster: Cluster,
                                                         helm_major: str) -> None:
    """A frontend the values turn off is deleted, not renamed: only rendered components are
    compared. (Here the installed frontend's name is not the one the values give.)"""
    frontend = next(w for w in installed(chart, "fullnameOverride=support")
                    if w["metadata"]["name"] == "support-frontend")
    cluster.holds(*[w for w in installed(chart) if w["metadata"]["name"] != "chatwax-frontend"],
                  frontend)
    rc, err, docs = cluster.render(helm_major, "llm.local.enabled=true", "frontend.enabled=false")
    assert rc == 0, err
    assert not [d for d in docs if d["kind"] == "Deployment" and "frontend" in
                d["metadata"]["name"]]
    rc, err, _ = cluster.render(helm_major, "llm.local.enabled=true")
    assert rc != 0
    # No single fullnameOverride gives both support-frontend and chatwax-dataflow.
    refused(err, refusal("fullnameOverride", "Deployment", "support-frontend", "chatwax",
                         "chatwax-frontend", "chatwax", RENAMED,
                         "fullnameOverride as it was at install (the value that gave "
                         "support-frontend)"))


def test_with_no_cluster_new_names_render(chart: Chart, cluster: Cluster, helm_major: str
                                          ) -> None:
    """`helm template` (Argo CD) has no live objects, and a first install has none:
    any name renders."""
    docs = chart.render("nameOverride=assistant", "fullnameOverride=support", major=helm_major)
    assert {d["metadata"]["name"] for d in docs.workloads()} == {
        "support-nats", "support-dataflow", "support-frontend"}
    assert {d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
            for d in docs.workloads()} == {"assistant"}
    rc, err, _ = cluster.render(helm_major, "nameOverride=assistant")
    assert rc == 0, err


def test_the_check_is_in_the_chart_not_the_test() -> None:
    """The storage templates and the dataflow StatefulSet (always rendered) call the checks
    (a chart without them renders every case above from the values alone)."""
    templates = CHART / "templates"
    assert 'include "chatwax.checkNatsStorage"' in (templates / "nats-statefulset.yaml"
                                                    ).read_text()
    assert 'include "chatwax.checkRecoveryStorage"' in (templates / "dataflow-recovery-pvc.yaml"
                                                        ).read_text()
    calls = {f.name: f.read_text().count('include "chatwax.checkNames"')
             for f in templates.rglob("*") if f.is_file()}
    assert {name: n for name, n in calls.items() if n} == {"dataflow-statefulset.yaml": 1}
