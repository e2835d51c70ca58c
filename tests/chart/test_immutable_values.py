"""Values the API server will not let change after install are refused before anything is
applied (charts/chatwax/templates/_immutable.tpl, issue #21 item 3).

The chart reads the live NATS StatefulSet and recovery claim with `lookup`. helm renders
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


def test_the_check_is_in_the_chart_not_the_test() -> None:
    """Both storage templates call the checks (a chart without them renders every case
    above from the values alone)."""
    templates = CHART / "templates"
    assert 'include "chatwax.checkNatsStorage"' in (templates / "nats-statefulset.yaml"
                                                    ).read_text()
    assert 'include "chatwax.checkRecoveryStorage"' in (templates / "dataflow-recovery-pvc.yaml"
                                                        ).read_text()
