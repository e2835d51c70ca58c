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
# Every image skaffold builds: (Dockerfile, target stage; None is the last stage).
IMAGES = {"dataflow": ("Dockerfile.dataflow", None), "frontend": ("Dockerfile.frontend", None),
          "local-llm": ("Dockerfile.dataflow", "local-llm")}


def _stages(dockerfile: Path) -> list[tuple[str, str, str]]:
    """(stage name, base, text) of every stage, in order."""
    out = []
    for part in re.split(r"^FROM ", dockerfile.read_text(), flags=re.M)[1:]:
        header, _, body = part.partition("\n")
        words = header.split()
        out.append((words[-1] if len(words) == 3 and words[1] == "AS" else "", words[0], body))
    return out


def _stage(image: str) -> str:
    """The text of the stage an image is built from."""
    dockerfile, target = IMAGES[image]
    stages = _stages(ROOT / dockerfile)
    return next(body for name, _, body in stages if name == target) if target else stages[-1][2]


def _instructions(text: str, name: str) -> list[str]:
    """The arguments of every `name` instruction (one line each in our Dockerfiles)."""
    return re.findall(rf"^{name} (.+)$", text, flags=re.M)


def _exec_form(text: str, name: str) -> list[str]:
    found = _instructions(text, name)
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
def test_dockerfiles_are_pinned_multi_stage_and_copy_only_what_is_allowed(
        dockerfile: Path) -> None:
    text = dockerfile.read_text()
    seen: list[str] = []
    for name, base, _ in _stages(dockerfile):
        # Python 3.12: bytewax 0.21.1 has no wheels for 3.13; other bases are earlier stages.
        assert re.fullmatch(r"python:3\.12\.\d+-slim-\w+", base) or base in seen, base
        seen.append(name)
    assert "--no-cache-dir" in text
    # Everything COPY takes from the context survives .dockerignore.
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    for copy in _instructions(text, "COPY"):
        if copy.startswith("--from"):
            continue
        for item in copy.split()[:-1]:
            assert item.rstrip("/") in allowed and (ROOT / item).exists(), item


@pytest.mark.parametrize("image", IMAGES)
def test_every_image_runs_a_built_venv_as_non_root(image: str) -> None:
    stage = _stage(image)
    assert re.search(r"^COPY --from=build(-\S+)? /opt/venv /opt/venv$", stage, flags=re.M)
    assert _instructions(stage, "USER") == ["10001:10001"]
    assert _exec_form(stage, "ENTRYPOINT")


def test_the_chart_runs_what_the_images_run(chart: Chart) -> None:
    """The chart's commands are the images' entrypoints, on the ports the images expose,
    as the images' user."""
    docs = chart.render("llm.local.enabled=true")
    for image, kind, suffix in (("dataflow", "StatefulSet", "-dataflow"),
                                ("frontend", "Deployment", "-frontend"),
                                ("local-llm", "Deployment", "-llm")):
        stage = _stage(image)
        container = docs.container(kind, suffix)
        image_command = _exec_form(stage, "ENTRYPOINT") + _exec_form(stage, "CMD")
        exposed = {int(p) for line in _instructions(stage, "EXPOSE") for p in line.split()}
        assert {p["containerPort"] for p in container["ports"]} == exposed, image
        if image == "local-llm":
            # Same program; the chart passes its sizes as flags, the port the image exposes.
            assert container["command"][:2] == image_command[:2] == ["chatwax", "local-llm"]
            assert f"--port={exposed.pop()}" in container["command"]
        else:
            assert container["command"] == image_command, image
        uid = int(_instructions(stage, "USER")[0].split(":")[0])
        pod = docs.find(kind, suffix)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == uid
    # The dataflow works in a writable folder (bytewax writes dataflow.json there).
    dataflow = docs.container("StatefulSet", "-dataflow")
    assert dataflow["workingDir"] in {m["mountPath"] for m in dataflow["volumeMounts"]}


def test_skaffold_builds_every_image_and_sets_the_charts_image_values(chart: Chart) -> None:
    cfg = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    assert cfg["apiVersion"] in ("skaffold/v4beta13", "skaffold/v4beta14")
    assert cfg["build"]["local"]["push"] is False  # kind loads images; no registry
    by_build = {(a["docker"]["dockerfile"], a["docker"].get("target")): a["image"]
                for a in cfg["build"]["artifacts"]}
    assert sorted(by_build, key=str) == sorted(IMAGES.values(), key=str)
    release = cfg["deploy"]["helm"]["releases"][0]
    assert (ROOT / release["chartPath"]).resolve() == CHART
    values_files = tuple(ROOT / f for f in release["valuesFiles"])
    assert all(f.exists() for f in values_files)
    templates = release["setValueTemplates"]
    sets = []
    values_key = {"dataflow": "dataflow", "frontend": "frontend", "local-llm": "llm.local"}
    for image, build in IMAGES.items():
        # skaffold turns -, /, . and : in an artifact's name into _ in these variables.
        var = re.sub(r"[-/.:]", "_", by_build[build])
        key = values_key[image]
        assert templates[f"{key}.image.repository"] == f"{{{{.IMAGE_REPO_{var}}}}}"
        assert templates[f"{key}.image.tag"] == f"{{{{.IMAGE_TAG_{var}}}}}"
        assert release["setValues"][f"{key}.image.pullPolicy"] == "IfNotPresent"
        sets += [f"{key}.image.repository=local/{image}", f"{key}.image.tag=dev-1"]
    assert len(templates) == 2 * len(IMAGES)
    # What skaffold would set lands in the pods (and the helm test pod uses the dataflow's);
    # the kind values run the local model, so `skaffold dev` needs no API key.
    docs = chart.render(*sets, values=values_files)
    assert docs.container("StatefulSet", "-dataflow")["image"] == "local/dataflow:dev-1"
    assert docs.container("Deployment", "-frontend")["image"] == "local/frontend:dev-1"
    assert docs.container("Deployment", "-llm")["image"] == "local/local-llm:dev-1"
    assert docs.find("Pod", "-test-ask")["spec"]["containers"][0]["image"] == \
        "local/dataflow:dev-1"
    assert "OPENAI_API_KEY" not in docs.env("StatefulSet", "-dataflow")
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
