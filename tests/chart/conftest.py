"""Chart fixtures: helm 3 and helm 4 binaries, and renders cached per values file."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "chatwax"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
HELM_VERSIONS = ("3", "4")
API_VERSIONS = ["--api-versions", "monitoring.coreos.com/v1/PodMonitor"]


@cache
def helm(major: str) -> str:
    """Path of helm `major`, fetched by scripts/helm.sh on first use."""
    out = subprocess.run([str(ROOT / "scripts" / "helm.sh"), major], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def run_helm(major: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(major), *args], capture_output=True, text=True, timeout=120)


@cache
def _render(major: str, values: tuple[str, ...], sets: tuple[str, ...]) -> str:
    args = ["template", "chatwax", str(CHART), "--namespace", "chat", *API_VERSIONS]
    for v in values:
        args += ["-f", v]
    for s in sets:
        args += ["--set", s]
    res = run_helm(major, *args)
    assert res.returncode == 0, res.stderr
    return res.stdout


def render_text(*sets: str, values: tuple[str, ...] = (), major: str = "3") -> str:
    return _render(major, values, sets)


def render(*sets: str, values: tuple[str, ...] = (), major: str = "3") -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render_text(*sets, values=values, major=major)) if d]


def find(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(matches) == 1, f"{kind} *{name_suffix}: {[m['metadata']['name'] for m in matches]}"
    return matches[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.fixture
def rendered() -> Callable[..., list[dict[str, Any]]]:
    return render
