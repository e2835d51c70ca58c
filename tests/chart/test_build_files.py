"""Dockerfiles, skaffold.yaml and kind-config.yaml agree with each other and the chart."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import CHART, ROOT, Chart

COMPONENTS = ("dataflow", "frontend")
DOCKERFILES = [ROOT / f"Dockerfile.{c}" for c in COMPONENTS]


def _instructions(dockerfile: Path, name: str) -> list[str]:
    """The arguments of every `name` instruction (one line each in our Dockerfiles)."""
    return re.findall(rf"^{name} (.+)$", dockerfile.read_text(), flags=re.M)


def _exec_form(dockerfile: Path, name: str) -> list[str]:
    found = _instructions(dockerfile, name)
    if not found:
        return []
    parsed: list[str] = json.loads(found[-1])  # not JSON means shell form
    return parsed


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(tools: dict[str, str], dockerfile: Path) -> None:
    res = subprocess.run([tools["hadolint"], str(dockerfile)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_hadolint_finds_what_it_should(tools: dict[str, str], tmp_path: Path) -> None:
    """hadolint runs for real: an unpinned base and a shell-form entrypoint are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install chatwax\nENTRYPOINT chatwax dataflow\n")
    res = subprocess.run([tools["hadolint"], str(bad)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode != 0
    assert {"DL3007", "DL3013", "DL3025"} <= set(re.findall(r"DL\d{4}", res.stdout))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_are_pinned_multi_stage_and_non_root(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    bases = [b.split()[0] for b in _instructions(dockerfile, "FROM")]
    # Python 3.12: bytewax 0.21.1 has no wheels for 3.13.
    assert len(bases) == 2 and all(re.fullmatch(r"python:3\.12\.\d+-slim-\w+", b) for b in bases)
    assert "COPY --from=build /opt/venv /opt/venv" in text
    assert "--no-cache-dir" in text
    assert _instructions(dockerfile, "USER") == ["10001:10001"]
    assert _exec_form(dockerfile, "ENTRYPOINT")
    # Everything COPY takes from the context survives .dockerignore.
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    for copy in _instructions(dockerfile, "COPY"):
        if copy.startswith("--from"):
            continue
        for item in copy.split()[:-1]:
            assert item.rstrip("/") in allowed and (ROOT / item).exists(), item


def test_the_chart_runs_what_the_images_run(chart: Chart) -> None:
    """The chart's commands are the images' entrypoints, on the ports the images expose,
    as the images' user."""
    docs = chart.render()
    for component, kind in (("dataflow", "StatefulSet"), ("frontend", "Deployment")):
        dockerfile = ROOT / f"Dockerfile.{component}"
        container = docs.container(kind, f"-{component}")
        image_command = _exec_form(dockerfile, "ENTRYPOINT") + _exec_form(dockerfile, "CMD")
        assert container["command"] == image_command, component
        exposed = {int(p) for line in _instructions(dockerfile, "EXPOSE") for p in line.split()}
        assert {p["containerPort"] for p in container["ports"]} == exposed, component
        uid = int(_instructions(dockerfile, "USER")[0].split(":")[0])
        pod = docs.find(kind, f"-{component}")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == uid
    # The dataflow works in a writable folder (bytewax writes dataflow.json there).
    dataflow = docs.container("StatefulSet", "-dataflow")
    assert dataflow["workingDir"] in {m["mountPath"] for m in dataflow["volumeMounts"]}


def test_skaffold_builds_both_images_and_sets_the_charts_image_values(chart: Chart) -> None:
    cfg = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    assert cfg["apiVersion"] in ("skaffold/v4beta13", "skaffold/v4beta14")
    assert cfg["build"]["local"]["push"] is False  # kind loads images; no registry
    by_dockerfile = {a["docker"]["dockerfile"]: a["image"] for a in cfg["build"]["artifacts"]}
    assert sorted(by_dockerfile) == sorted(p.name for p in DOCKERFILES)
    release = cfg["deploy"]["helm"]["releases"][0]
    assert (ROOT / release["chartPath"]).resolve() == CHART
    values_files = tuple(ROOT / f for f in release["valuesFiles"])
    assert all(f.exists() for f in values_files)
    templates = release["setValueTemplates"]
    sets = []
    for component in COMPONENTS:
        # skaffold turns -, /, . and : in an artifact's name into _ in these variables.
        var = re.sub(r"[-/.:]", "_", by_dockerfile[f"Dockerfile.{component}"])
        assert templates[f"{component}.image.repository"] == f"{{{{.IMAGE_REPO_{var}}}}}"
        assert templates[f"{component}.image.tag"] == f"{{{{.IMAGE_TAG_{var}}}}}"
        sets += [f"{component}.image.repository=local/{component}",
                 f"{component}.image.tag=dev-1"]
    assert len(templates) == 2 * len(COMPONENTS)
    # What skaffold would set lands in the pods (and the helm test pod uses the dataflow's).
    docs = chart.render(*sets, values=values_files)
    assert docs.container("StatefulSet", "-dataflow")["image"] == "local/dataflow:dev-1"
    assert docs.container("Deployment", "-frontend")["image"] == "local/frontend:dev-1"
    assert docs.find("Pod", "-test-ask")["spec"]["containers"][0]["image"] == \
        "local/dataflow:dev-1"
    # The port-forward names the frontend Service the chart renders for this release.
    forward = cfg["portForward"][0]
    svc = docs.find("Service", "-frontend")
    assert release["name"] == "chatwax" and forward["resourceName"] == svc["metadata"]["name"]
    assert forward["namespace"] == release["namespace"]
    assert forward["port"] == svc["spec"]["ports"][0]["port"]


def test_kind_config_is_ready_for_an_ingress_controller(chart: Chart) -> None:
    cfg = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert (cfg["kind"], cfg["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    node = cfg["nodes"][0]
    assert node["labels"]["ingress-ready"] == "true"
    mapped = {(m["containerPort"], m["hostPort"], m["listenAddress"])
              for m in node["extraPortMappings"]}
    assert mapped == {(80, 80, "127.0.0.1"), (443, 443, "127.0.0.1")}
    # The kind values expose the frontend through an Ingress of a configurable class.
    kind_values = chart.path / "ci" / "kind-values.yaml"
    ingress = chart.render(values=(kind_values,)).find("Ingress", "-frontend")
    assert ingress["spec"]["ingressClassName"]
