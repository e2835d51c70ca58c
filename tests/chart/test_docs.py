"""The commands in "Install with Helm" and "Run on kind" (docs/kubernetes.md and README.md)
fit the chart, the kind values, skaffold.yaml and kind-config.yaml."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import IMAGES, ROOT, VALUES_KEY, Chart

DOCS = [ROOT / "docs" / "kubernetes.md", ROOT / "README.md"]


def _commands(doc: Path, heading: str, block: int = 0) -> list[list[str]]:
    """The shell commands of the n-th ```sh block under `## heading`, comments dropped."""
    text = doc.read_text()
    section = text[text.index(f"## {heading}\n"):]
    end = section.find("\n## ", 1)
    section = section if end < 0 else section[:end]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert len(blocks) > block, f"{doc.name}: no sh block {block} under {heading}"
    out = []
    for line in blocks[block].replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(words)
    return out


def _secret(commands: list[list[str]]) -> tuple[str, str, str]:
    """(namespace, name, key) of the `kubectl create secret generic` command."""
    cmd = next(c for c in commands if c[:1] == ["kubectl"] and "secret" in c)
    namespace = cmd[cmd.index("-n") + 1]
    name = cmd[cmd.index("generic") + 1]
    literal = next(w for w in cmd if w.startswith("--from-literal="))
    return namespace, name, literal.removeprefix("--from-literal=").split("=", 1)[0]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_install_with_helm_commands_fit_the_chart(chart: Chart, doc: Path) -> None:
    commands = _commands(doc, "Install with Helm")
    namespace, secret, key = _secret(commands)
    install = next(c for c in commands if c[:2] == ["helm", "install"])
    release, chart_path = install[2], install[3]
    assert (ROOT / chart_path).resolve() == chart.path
    assert install[install.index("-n") + 1] == namespace
    assert f"llm.existingSecret={secret}" in install
    values = yaml.safe_load((chart.path / "values.yaml").read_text())
    assert key == values["llm"]["existingSecretKey"]
    assert ["helm", "test", release, "-n", namespace] == next(
        c for c in commands if c[:2] == ["helm", "test"])
    forward = [c for c in commands if "port-forward" in c]
    docs = chart.render(f"llm.existingSecret={secret}")
    for cmd in forward:  # svc/<name> <local>:<service port>
        svc = docs.find("Service", cmd[cmd.index("port-forward") + 1].removeprefix("svc/"))
        remote = int(cmd[cmd.index("port-forward") + 2].split(":")[1])
        assert remote == svc["spec"]["ports"][0]["port"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_run_on_kind_commands_fit_skaffold_and_kind(chart: Chart, doc: Path) -> None:
    commands = _commands(doc, "Run on kind")
    kind_cfg = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    create = next(c for c in commands if c[:3] == ["kind", "create", "cluster"])
    assert (ROOT / create[create.index("--config") + 1]).resolve() == ROOT / "kind-config.yaml"
    delete = next(c for c in commands if c[:3] == ["kind", "delete", "cluster"])
    assert delete[delete.index("--name") + 1] == kind_cfg["name"]
    assert ["skaffold", "dev"] in commands
    # No key: the kind values run the local model, so no Secret is made or needed.
    assert not [c for c in commands if "secret" in c]
    skaffold = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    release = skaffold["deploy"]["helm"]["releases"][0]
    kind_values = yaml.safe_load((chart.path / "ci" / "kind-values.yaml").read_text())
    assert kind_values["llm"]["local"]["enabled"] is True
    docs = chart.render(values=tuple(ROOT / f for f in release["valuesFiles"]))
    assert "OPENAI_API_KEY" not in docs.secret_files("StatefulSet", "-dataflow")
    assert docs.find("Deployment", "-llm")
    # The OpenAI variant: the Secret the profile names, in the release's namespace.
    openai = _commands(doc, "Run on kind", block=1)
    namespace, secret, key = _secret(openai)
    assert namespace == release["namespace"]
    assert ["skaffold", "dev", "-p", "openai"] in openai
    profile = next(p for p in skaffold["profiles"] if p["name"] == "openai")
    # The values it adds (what it removes, the local model's build and image values, is
    # checked in test_build_files.py).
    added = [op for op in profile["patches"] if op["op"] == "add"]
    patched = {op["path"].rsplit("/", 1)[1]: op["value"] for op in added}
    assert patched == {"llm.local.enabled": False, "llm.existingSecret": secret}
    assert all(op["path"].startswith("/deploy/helm/releases/0/setValues/") for op in added)
    values = yaml.safe_load((chart.path / "values.yaml").read_text())
    assert key == values["llm"]["existingSecretKey"]
    with_openai = chart.render(*(f"{k}={str(v).lower()}" for k, v in patched.items()),
                               values=tuple(ROOT / f for f in release["valuesFiles"]))
    assert with_openai.secret_files("StatefulSet", "-dataflow")["OPENAI_API_KEY"] == {
        "name": secret, "key": key}
    assert not [d for d in with_openai.of_kind("Deployment")
                if d["metadata"]["name"].endswith("-llm")]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_image_commands_build_load_and_install_what_the_chart_runs(chart: Chart,
                                                                   doc: Path) -> None:
    """"Images": the docker builds are the builds skaffold and the release workflow make,
    each built image is loaded into the kind cluster, and the helm install's --sets put
    exactly those images into the pods."""
    text = doc.read_text()
    section = text[text.index("## Images\n"):]
    section = " ".join(section[:section.find("\n## ", 1)].split())
    assert "not published yet" in section and "release.yaml" in section
    assert "x86-64-v3" in section and "AVX2" in section and "AMX" in section
    # What the section says the tests do with the images, and what they cannot: both true.
    assert "make test`, build all three here" in section
    assert "published base (Python 3.12) and arm64 builds are not made here" in section
    makefile = (ROOT / "Makefile").read_text()
    assert "./scripts/build-images.sh" in makefile[makefile.index("\ntest:"):]
    assert (ROOT / "tests" / "images" / "test_images.py").exists()
    commands = _commands(doc, "Images")
    built = {}  # image name -> (Dockerfile, target)
    for cmd in (c for c in commands if c[:2] == ["docker", "build"]):
        assert cmd[-1] == "."  # the repository is the build context
        target = cmd[cmd.index("--target") + 1] if "--target" in cmd else None
        built[cmd[cmd.index("-t") + 1]] = (cmd[cmd.index("-f") + 1], target)
    assert sorted(built.values(), key=str) == sorted(IMAGES.values(), key=str)
    kind_cfg = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    load = next(c for c in commands if c[:3] == ["kind", "load", "docker-image"])
    assert load[load.index("--name") + 1] == kind_cfg["name"]
    assert sorted(w for w in load[3:] if not w.startswith("-") and w != kind_cfg["name"]) == \
        sorted(built)
    install = next(c for c in commands if c[:2] == ["helm", "install"])
    assert (ROOT / install[3]).resolve() == chart.path
    sets = [install[i + 1] for i, w in enumerate(install) if w == "--set"]
    values = dict(s.split("=", 1) for s in sets)
    by_build = {build: name for name, build in built.items()}
    for image, build in IMAGES.items():
        key = VALUES_KEY[image]
        repository, tag = by_build[build].rsplit(":", 1)
        assert (values[f"{key}.image.repository"], values[f"{key}.image.tag"]) == \
            (repository, tag), image
    docs = chart.render(*sets)
    assert docs.container("StatefulSet", "-dataflow")["image"] == by_build[IMAGES["dataflow"]]
    assert docs.container("Deployment", "-frontend")["image"] == by_build[IMAGES["frontend"]]
    assert docs.container("Deployment", "-llm")["image"] == by_build[IMAGES["local-llm"]]
