"""Chart fixtures: the tools (helm 3 and helm 4 fetched by scripts/tools.sh on a fresh
machine), and renders of charts/chatwax cached per helm version, values files and --set's,
so each distinct render runs once per session."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "chatwax"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
HELM_MAJORS = ("3", "4")
NAMESPACE = "chat"
# What `helm template` must assume a cluster offers, so that capability-guarded objects
# (the PodMonitor) render as they would on a cluster with the prometheus-operator CRDs.
API_VERSIONS = ("monitoring.coreos.com/v1/PodMonitor",)
# Every image skaffold builds: (Dockerfile, target stage; None is the last stage).
IMAGES = {"dataflow": ("Dockerfile.dataflow", None), "frontend": ("Dockerfile.frontend", None),
          "local-llm": ("Dockerfile.dataflow", "local-llm")}
# Where each image's repository and tag are set in the chart's values.
VALUES_KEY = {"dataflow": "dataflow", "frontend": "frontend", "local-llm": "llm.local"}
# Sign-in with a provider (frontend.auth), the least it takes: a provider, a client, an
# existing Secret with the client secret, and an ingress with TLS to derive the (https)
# redirect URI from.
INGRESS_TLS = ("frontend.ingress.enabled=true", "frontend.ingress.tls[0].secretName=chat-tls",
               "frontend.ingress.tls[0].hosts[0]=chatwax.local")
SIGN_IN = ("frontend.auth.metadataUrl=https://idp.example.com/.well-known/openid-configuration",
           "frontend.auth.clientId=chatwax", "frontend.auth.existingSecret=chatwax-oidc",
           *INGRESS_TLS)
# Open mode (no sign-in), which must be asked for.
OPEN_MODE = ("frontend.auth.openMode=true",)


class Rendered(list[dict[str, Any]]):
    """The objects of one render, with lookups by kind and name suffix."""

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self if d["kind"] == kind]

    def find(self, kind: str, name_suffix: str = "") -> dict[str, Any]:
        matches = [d for d in self.of_kind(kind) if d["metadata"]["name"].endswith(name_suffix)]
        assert len(matches) == 1, (kind, name_suffix, [m["metadata"]["name"] for m in matches])
        return matches[0]

    def workloads(self) -> list[dict[str, Any]]:
        return [d for d in self if d["kind"] in ("StatefulSet", "Deployment")]

    def container(self, kind: str, name_suffix: str, index: int = 0) -> dict[str, Any]:
        spec: dict[str, Any] = self.find(kind, name_suffix)["spec"]["template"]["spec"]
        return spec["containers"][index]

    def env(self, kind: str, name_suffix: str) -> dict[str, Any]:
        """name -> value (or valueFrom) of the first container's env list."""
        return env_of(self.container(kind, name_suffix))

    def secret_files(self, kind: str, name_suffix: str) -> dict[str, dict[str, str]]:
        """The secrets a pod gets as files (its `secrets` volume, at CHATWAX_SECRETS_DIR):
        file name (a variable) -> {"name": Secret, "key": key}."""
        return secret_files_of(self.find(kind, name_suffix))


def secret_files_of(workload: dict[str, Any]) -> dict[str, dict[str, str]]:
    spec = workload["spec"]
    pod = spec["template"]["spec"] if "template" in spec else spec
    volume = next((v for v in pod.get("volumes", []) if v["name"] == "secrets"), None)
    if volume is None:
        return {}
    container = pod["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")
    assert env_of(container)["CHATWAX_SECRETS_DIR"] == mount["mountPath"]
    assert mount["readOnly"] is True
    return {item["path"]: {"name": source["secret"]["name"], "key": item["key"]}
            for source in volume["projected"]["sources"]
            for item in source["secret"]["items"]}


def nats_routes(docs: Rendered) -> list[str]:
    """host:port of each route of the NATS pods: their command builds the route URLs, which
    carry the route password read from a file."""
    script: str = docs.container("StatefulSet", "-nats")["command"][2]
    return re.findall(r"nats://route:\$ROUTE_PASSWORD@([^,\]\s]+)", script)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


class Chart:
    """helm 3 and helm 4 on charts/chatwax; renders are cached for the session."""

    path = CHART
    root = ROOT
    namespace = NAMESPACE

    def __init__(self, tools: dict[str, str]) -> None:
        self.tools = tools

    def helm(self, major: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.tools[f"helm{major}"], *args], capture_output=True,
                              text=True, timeout=120)

    def template_args(self, *sets: str, values: tuple[Path | str, ...] = (),
                      api_versions: tuple[str, ...] = API_VERSIONS) -> list[str]:
        args = ["template", "chatwax", str(CHART), "--namespace", NAMESPACE]
        for api in api_versions:
            args += ["--api-versions", api]
        for v in values:
            args += ["-f", str(v)]
        for s in sets:
            args += ["--set", s]
        return args

    def render_text(self, *sets: str, values: tuple[Path | str, ...] = (),
                    major: str = "3") -> str:
        return self._render(major, tuple(str(v) for v in values), sets)

    def render(self, *sets: str, values: tuple[Path | str, ...] = (),
               major: str = "3") -> Rendered:
        return Rendered(d for d in yaml.safe_load_all(self.render_text(*sets, values=values,
                                                                       major=major)) if d)

    @cache  # noqa: B019 - one Chart per session; the cache is the point
    def _render(self, major: str, values: tuple[str, ...], sets: tuple[str, ...]) -> str:
        res = self.helm(major, *self.template_args(*sets, values=values))
        assert res.returncode == 0, res.stderr
        return res.stdout


def chart_at(commit: str, dest: Path) -> Path:
    """charts/chatwax as it was at `commit` of this repository, extracted under `dest`."""
    res = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "charts/chatwax"],
                         capture_output=True)
    assert res.returncode == 0, (
        f"git archive {commit}: {res.stderr.decode(errors='replace').strip()} (the tests "
        "that upgrade from an earlier chart need the repository's history: a clone "
        "without --depth)")
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=res.stdout, check=True)
    return dest / "charts" / "chatwax"


@pytest.fixture(scope="session")
def tools() -> dict[str, str]:
    """name -> path of helm3, helm4, kubernetes-validate, hadolint, actionlint and shellcheck
    (helm fetched if missing)."""
    # The Python tools sit beside the interpreter running the tests, active venv or not.
    out = subprocess.run([str(ROOT / "scripts" / "tools.sh")], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PYTHON": sys.executable})
    assert out.returncode == 0, out.stderr
    found = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    assert set(found) == {"helm3", "helm4", "kubernetes-validate", "hadolint", "actionlint",
                          "shellcheck"}, out.stdout
    return found


@pytest.fixture(scope="session")
def chart(tools: dict[str, str]) -> Chart:
    return Chart(tools)


@pytest.fixture(params=CI_VALUES, ids=lambda p: p.name.removesuffix("-values.yaml"))
def ci_values(request: pytest.FixtureRequest) -> Path:
    """Each charts/chatwax/ci/*-values.yaml in turn."""
    path: Path = request.param
    return path


@pytest.fixture(params=HELM_MAJORS, ids=lambda m: f"helm{m}")
def helm_major(request: pytest.FixtureRequest) -> str:
    """helm 3 and helm 4 in turn."""
    major: str = request.param
    return major


WORKFLOW = ROOT / ".github" / "workflows" / "release.yaml"


def release_workflow() -> dict[str, Any]:
    """The release workflow as YAML (with `on` as the key GitHub means)."""
    doc: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    if True in doc:  # YAML 1.1 reads the key `on` as true
        doc["on"] = doc.pop(True)
    return doc


def expand_expressions(text: str, ctx: dict[str, str]) -> str:
    """`${{ expr }}` replaced from ctx; an expression ctx lacks fails the test."""
    return re.sub(r"\$\{\{\s*(.+?)\s*\}\}", lambda m: ctx[m.group(1)], text)
