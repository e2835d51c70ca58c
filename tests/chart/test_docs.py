"""The commands in "Install with Helm" and "Run on kind" (docs/kubernetes.md and README.md)
fit the chart, the kind values, skaffold.yaml and kind-config.yaml."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import ROOT, Chart

DOCS = [ROOT / "docs" / "kubernetes.md", ROOT / "README.md"]


def _commands(doc: Path, heading: str) -> list[list[str]]:
    """The shell commands of the first ```sh block under `## heading`, comments dropped."""
    text = doc.read_text()
    section = text[text.index(f"## {heading}\n"):]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert block is not None, f"{doc.name}: no sh block under {heading}"
    out = []
    for line in block.group(1).replace("\\\n", " ").splitlines():
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
    assert ["skaffold", "dev"] in [c[:2] for c in commands]
    release = yaml.safe_load((ROOT / "skaffold.yaml").read_text())["deploy"]["helm"][
        "releases"][0]
    namespace, secret, key = _secret(commands)
    assert namespace == release["namespace"]
    kind_values = yaml.safe_load((chart.path / "ci" / "kind-values.yaml").read_text())
    assert secret == kind_values["llm"]["existingSecret"]
    values = yaml.safe_load((chart.path / "values.yaml").read_text())
    assert key == values["llm"]["existingSecretKey"]
