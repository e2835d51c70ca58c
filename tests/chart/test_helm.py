"""helm 3 and helm 4 lint and render the chart for every ci/*-values.yaml, and every rendered
object is valid for Kubernetes 1.30 and 1.34 (kubernetes-validate --strict; the PodMonitor
against its CRD schema)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart.conftest import Chart, Rendered

KUBERNETES_VERSIONS = ("1.30.0", "1.34.0")
PODMONITOR_SCHEMA = Path(__file__).parent / "data" / "podmonitor-schema.json"
EVERYTHING = Path(__file__).parent / "data" / "everything-values.yaml"
# Branches the ci files do not take, each validated too.
VARIANTS = {
    "one-process": ("dataflow.processes=1",),
    "five-processes": ("dataflow.processes=5", "nats.replicas=5"),
    "no-recovery": ("dataflow.recovery.enabled=false",),
    "no-auth": ("nats.auth.enabled=false", "nats.auth.existingSecret=ignored"),
    "own-service-account": ("dataflow.serviceAccount.create=false",
                            "dataflow.serviceAccount.name=chatwax-sa"),
    "no-frontend": ("frontend.enabled=false", "networkPolicy.enabled=true"),
    "no-dashboards": ("metrics.dashboards.enabled=false", "metrics.scrapeAnnotations=false"),
}


def test_lint_strict(chart: Chart, helm_major: str, ci_values: Path) -> None:
    res = chart.helm(helm_major, "lint", "--strict", str(chart.path), "-f", str(ci_values))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 chart(s) failed" in res.stdout


def test_helm3_and_helm4_render_the_same_objects(chart: Chart, ci_values: Path) -> None:
    docs3 = chart.render(values=(ci_values,), major="3")
    docs4 = chart.render(values=(ci_values,), major="4")
    assert _without_generated(docs3) == _without_generated(docs4)
    assert {d["kind"] for d in docs3} >= {"StatefulSet", "Service", "ConfigMap", "Role"}


def _without_generated(docs: Rendered) -> list[dict[str, Any]]:
    """The render with the generated NATS passwords (random per render) blanked."""
    out = []
    for d in docs:
        if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-nats-auth"):
            d = {**d, "data": dict.fromkeys(d["data"], "")}
        out.append(d)
    return out


def _validate(chart: Chart, renders: dict[str, Rendered], tmp_path: Path) -> None:
    files = []
    for name, docs in renders.items():
        core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(core))
        files.append(str(path))
    args = [a for v in KUBERNETES_VERSIONS for a in ("-k", v)]
    res = subprocess.run([chart.tools["kubernetes-validate"], *args, "--strict", "--quiet",
                          *files], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    schema = json.loads(PODMONITOR_SCHEMA.read_text())
    for docs in renders.values():
        for monitor in docs.of_kind("PodMonitor"):
            jsonschema.validate(monitor, schema)


def test_every_object_validates_strictly_for_kubernetes_1_30_and_1_34(
    chart: Chart, helm_major: str, ci_values: Path, tmp_path: Path
) -> None:
    docs = chart.render(values=(ci_values,), major=helm_major)
    _validate(chart, {ci_values.stem: docs}, tmp_path)


def test_every_variant_validates_strictly(chart: Chart, tmp_path: Path) -> None:
    renders = {name: chart.render(*sets) for name, sets in VARIANTS.items()}
    renders["everything"] = chart.render(values=(EVERYTHING,))
    assert renders["everything"].find("ConfigMap", "-extra")["data"] == {"release": "chatwax"}
    _validate(chart, renders, tmp_path)


def test_the_validators_reject_what_a_cluster_would(chart: Chart, tmp_path: Path) -> None:
    """The two validators are not vacuous: an unknown field and a wrong type fail."""
    docs = chart.render()
    sts = docs.find("StatefulSet", "-dataflow")
    bad = Rendered([{**sts, "spec": {**sts["spec"], "replica": 2}}])
    with pytest.raises(AssertionError, match="replica"):
        _validate(chart, {"bad": bad}, tmp_path)
    monitor = chart.render("metrics.podMonitor.enabled=true").find("PodMonitor")
    monitor["spec"]["podMetricsEndpoints"][0]["port"] = 3030
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, json.loads(PODMONITOR_SCHEMA.read_text()))


def test_every_template_renders_one_object_of_one_kind(chart: Chart) -> None:
    """One object per template file (dashboards: one ConfigMap per JSON file), and every
    template file renders in some configuration."""
    text = chart.render_text(values=(EVERYTHING,))
    by_source: dict[str, list[str]] = {}
    for chunk in re.split(r"^---$", text, flags=re.M):
        doc = yaml.safe_load(chunk)
        source = next((line.removeprefix("# Source: chatwax/templates/")
                       for line in chunk.splitlines() if line.startswith("# Source: ")), None)
        if doc and source:
            by_source.setdefault(source, []).append(doc["kind"])
    templates = {p.relative_to(chart.path / "templates").as_posix()
                 for p in (chart.path / "templates").rglob("*.yaml")}
    assert set(by_source) == templates
    dashboards = len(list((chart.path / "dashboards").glob("*.json")))
    for source, kinds in by_source.items():
        if source == "dashboards.yaml":
            assert kinds == ["ConfigMap"] * dashboards
        else:
            assert len(kinds) == 1, (source, kinds)


def test_podmonitor_needs_the_crd_and_carries_extra_labels(chart: Chart) -> None:
    sets = ("metrics.podMonitor.enabled=true", "metrics.podMonitor.labels.release=kps")
    monitor = chart.render(*sets).find("PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert (endpoint["port"], endpoint["path"]) == ("api", "/metrics")
    without_crd = chart.helm("3", *chart.template_args(*sets, api_versions=()))
    assert without_crd.returncode == 0, without_crd.stderr
    assert "kind: PodMonitor" not in without_crd.stdout


def test_the_schema_rejects_a_misspelled_value(chart: Chart, helm_major: str) -> None:
    for typo in ("dataflow.procesess=3", "nats.auth.enable=true", "llm.api_key=x"):
        res = chart.helm(helm_major, *chart.template_args(typo))
        assert res.returncode != 0, typo
        assert typo.split("=")[0].rsplit(".", 1)[-1] in res.stderr
    res = chart.helm(helm_major, *chart.template_args("dataflow.processes=0"))
    assert res.returncode != 0 and "processes" in res.stderr
    res = chart.helm(helm_major, *chart.template_args("global.imageRegistry=x"))
    assert res.returncode == 0, res.stderr  # `global` belongs to parent charts


def test_lint_fails_a_broken_values_file(chart: Chart, helm_major: str, tmp_path: Path) -> None:
    """helm lint --strict enforces the schema, so the lint tests above mean something."""
    bad = tmp_path / "bad-values.yaml"
    bad.write_text("frontend:\n  replica: 2\n")
    res = chart.helm(helm_major, "lint", "--strict", str(chart.path), "-f", str(bad))
    assert res.returncode != 0
    assert "replica" in res.stdout + res.stderr


def test_install_notes_render_and_say_where_things_are(chart: Chart, ci_values: Path) -> None:
    """NOTES.txt, as `helm install` prints it (helm 4 renders it without a cluster; helm 3's
    install wants one even for a client dry run)."""
    res = chart.helm("4", "install", "chatwax", str(chart.path), "--namespace", chart.namespace,
                     "--dry-run=client", "-f", str(ci_values))
    assert res.returncode == 0, res.stderr
    notes = res.stdout[res.stdout.index("NOTES:"):]
    docs = chart.render(values=(ci_values,))
    nats_url = docs.find("ConfigMap", "-dataflow-env")["data"]["NATS_URL"]
    replicas = docs.find("StatefulSet", "-dataflow")["spec"]["replicas"]
    assert f"NATS:     {nats_url}" in notes
    assert f"Dataflow: {replicas} Bytewax process(es)" in notes
    assert f"helm test chatwax -n {chart.namespace}" in notes
    configured = ("OPENAI_API_KEY" in docs.secret_files("StatefulSet", "-dataflow")
                  or "OPENAI_BASE_URL" in docs.find("ConfigMap", "-dataflow-env")["data"])
    assert ("no LLM is configured" in notes) is not configured
    local = [d for d in docs.of_kind("Deployment") if d["metadata"]["name"].endswith("-llm")]
    assert ("LLM:      local model smollm2-135m-instruct" in notes) is bool(local)
