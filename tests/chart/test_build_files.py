"""Dockerfiles, skaffold.yaml and kind-config.yaml agree with each other and the chart."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import CHART, ROOT, find, render

DOCKERFILES = [ROOT / "Dockerfile.dataflow", ROOT / "Dockerfile.frontend"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile: Path) -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    res = subprocess.run([str(hadolint), str(dockerfile)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_are_pinned_multi_stage_and_non_root(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    bases = re.findall(r"^FROM (\S+)", text, flags=re.M)
    assert len(bases) == 2 and all(re.match(r"python:3\.12\.\d+-slim", b) for b in bases)
    assert "COPY --from=build /opt/venv /opt/venv" in text
    assert re.search(r"^USER 10001", text, flags=re.M)
    entry = re.search(r"^ENTRYPOINT (\[.*\])", text, flags=re.M)
    assert entry is not None and entry.group(1).startswith('["')  # exec form
    # Everything COPY takes from the context survives .dockerignore.
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, flags=re.M):
        for item in src.split():
            assert item.rstrip("/") in allowed and (ROOT / item).exists(), item


def test_skaffold_builds_both_images_and_sets_the_charts_image_values() -> None:
    cfg = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    assert cfg["apiVersion"] in ("skaffold/v4beta13", "skaffold/v4beta14")
    artifacts = {a["image"]: a["docker"]["dockerfile"] for a in cfg["build"]["artifacts"]}
    assert sorted(artifacts.values()) == sorted(p.name for p in DOCKERFILES)
    assert cfg["build"]["local"]["push"] is False  # kind loads images; no registry
    release = cfg["deploy"]["helm"]["releases"][0]
    assert (ROOT / release["chartPath"]).resolve() == CHART
    for f in release["valuesFiles"]:
        assert (ROOT / f).exists()
    templates = release["setValueTemplates"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for key, template in templates.items():
        node = values
        for part in key.split("."):
            node = node[part]  # KeyError means the chart has no such value
        image = re.search(r"IMAGE_(?:REPO|TAG)_(\w+)", template)
        assert image is not None
        assert image.group(1) in {re.sub(r"[-/.:]", "_", a) for a in artifacts}
    assert {k.split(".")[0] for k in templates} == {"dataflow", "frontend"}
    # The port-forward names the frontend Service the chart renders for this release.
    forward = cfg["portForward"][0]
    svc = find(render(values=tuple(str(ROOT / f) for f in release["valuesFiles"])), "Service",
               "-frontend")
    assert release["name"] == "chatwax" and forward["resourceName"] == svc["metadata"]["name"]
    assert forward["port"] == svc["spec"]["ports"][0]["port"]


def test_kind_config_is_ready_for_an_ingress_controller() -> None:
    cfg = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    node = cfg["nodes"][0]
    assert node["labels"]["ingress-ready"] == "true"
    mapped = {(m["containerPort"], m["hostPort"], m["listenAddress"])
              for m in node["extraPortMappings"]}
    assert mapped == {(80, 80, "127.0.0.1"), (443, 443, "127.0.0.1")}
