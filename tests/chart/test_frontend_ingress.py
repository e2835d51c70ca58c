"""The frontend behind an ingress: sticky sessions when more than one pod serves (Streamlit
keeps each browser's session on one pod), and Streamlit's base URL path and probes follow
the ingress path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import Chart, Rendered
from tests.chart.notes import install_notes

BASE_PATH = Path(__file__).parent / "data" / "base-path-values.yaml"
STICKY = {
    "nginx.ingress.kubernetes.io/affinity": "cookie",
    "nginx.ingress.kubernetes.io/affinity-mode": "persistent",
    "nginx.ingress.kubernetes.io/session-cookie-name": "chatwax-frontend",
    "nginx.ingress.kubernetes.io/session-cookie-change-on-failure": "true",
}
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def _annotations(docs: Rendered) -> dict[str, str]:
    annotations: dict[str, str] = docs.find("Ingress", "-frontend")["metadata"].get(
        "annotations", {})
    return annotations


def _ingress(*sets: str, class_name: str = "nginx") -> tuple[str, ...]:
    return ("frontend.ingress.enabled=true", f"frontend.ingress.className={class_name}", *sets)


# (--set's, whether ingress-nginx's cookie affinity is rendered)
STICKY_RULE = {
    "one-pod": (_ingress(), False),
    "two-replicas": (_ingress("frontend.replicas=2"), True),
    "autoscaling": (_ingress("frontend.autoscaling.enabled=true"), True),
    "traefik-class": (_ingress("frontend.replicas=2", class_name="traefik"), False),
    "no-class": (_ingress("frontend.replicas=2", class_name=""), False),
    "forced-on": (_ingress("frontend.ingress.stickySessions=true", class_name="traefik"), True),
    "forced-off": (_ingress("frontend.replicas=3", "frontend.ingress.stickySessions=false"),
                   False),
}


@pytest.mark.parametrize("case", STICKY_RULE, ids=list(STICKY_RULE))
def test_sticky_sessions_follow_the_rule(chart: Chart, helm_major: str, case: str) -> None:
    """auto: cookie affinity when (replicas > 1 or the HPA on) and the class is nginx;
    true and false force it."""
    sets, sticky = STICKY_RULE[case]
    annotations = _annotations(chart.render(*sets, major=helm_major))
    assert annotations == (STICKY if sticky else {})


def test_user_annotations_win_and_stay(chart: Chart, helm_major: str, tmp_path: Path) -> None:
    mine = {"nginx.ingress.kubernetes.io/affinity-mode": "balanced",
            "cert-manager.io/cluster-issuer": "letsencrypt"}
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"frontend": {"replicas": 2, "ingress": {
        "enabled": True, "className": "nginx", "annotations": mine}}}))
    annotations = _annotations(chart.render(values=(values,), major=helm_major))
    assert annotations == {**STICKY, **mine}
    off = chart.render("frontend.ingress.stickySessions=false", values=(values,),
                       major=helm_major)
    assert _annotations(off) == mine


def test_production_values_are_sticky_and_the_schema_knows_the_modes(chart: Chart) -> None:
    docs = chart.render(values=(chart.path / "ci" / "production-values.yaml",))
    assert STICKY.items() <= _annotations(docs).items()
    res = chart.helm("3", *chart.template_args("frontend.ingress.stickySessions=sometimes"))
    assert res.returncode != 0 and "stickySessions" in res.stderr


def test_install_notes_say_whether_sessions_are_sticky(chart: Chart) -> None:
    sticky = install_notes(chart, *STICKY_RULE["two-replicas"][0])
    assert "Sticky sessions: ingress-nginx cookie affinity" in sticky
    traefik = install_notes(chart, *STICKY_RULE["traefik-class"][0])
    assert "Sticky sessions:" not in traefik
    assert "make sure your ingress controller\nis sticky" in traefik
    assert "sticky" not in install_notes(chart, *STICKY_RULE["one-pod"][0]).lower()


# -- the base URL path ---------------------------------------------------------------------


def _frontend(docs: Rendered) -> dict[str, Any]:
    return docs.container("Deployment", "-frontend")


def _base_flags(container: dict[str, Any]) -> list[str]:
    return [a for a in container["command"] if a.startswith("--base-url-path")]


def test_a_non_root_ingress_path_becomes_streamlits_base_path(chart: Chart,
                                                              helm_major: str) -> None:
    docs = chart.render(values=(BASE_PATH,), major=helm_major)
    container = _frontend(docs)
    assert _base_flags(container) == ["--base-url-path=chat"]
    for probe in PROBES:
        assert container[probe]["httpGet"] == {"path": "/chat/_stcore/health", "port": "http"}
    ingress_path = docs.find("Ingress", "-frontend")["spec"]["rules"][0]["http"]["paths"][0]
    assert ingress_path["path"] == "/chat"


@pytest.mark.parametrize(("sets", "values", "flag", "health"), [
    ((), (), [], "/_stcore/health"),
    (("frontend.ingress.enabled=true",), (), [], "/_stcore/health"),  # the default path is /
    (("frontend.baseUrlPath=/",), (BASE_PATH,), [], "/_stcore/health"),  # "/": the root
    (("frontend.baseUrlPath=/apps/chat/",), (BASE_PATH,), ["--base-url-path=apps/chat"],
     "/apps/chat/_stcore/health"),
    (("frontend.baseUrlPath=chat",), (), ["--base-url-path=chat"],
     "/chat/_stcore/health"),  # no ingress: the value alone
    (("frontend.ingress.enabled=false",), (BASE_PATH,), [], "/_stcore/health"),
], ids=["default", "ingress-at-root", "override-root", "override-nested", "no-ingress-value",
        "ingress-off"])
def test_the_base_path_value_overrides_the_ingress_path(
    chart: Chart, sets: tuple[str, ...], values: tuple[Path, ...], flag: list[str], health: str
) -> None:
    container = _frontend(chart.render(*sets, values=values))
    assert _base_flags(container) == flag
    assert {container[p]["httpGet"]["path"] for p in PROBES} == {health}


def test_install_notes_point_at_the_path(chart: Chart) -> None:
    notes = install_notes(chart, values=(BASE_PATH,))
    assert "  http://apps.example.com/chat/\n" in notes
    forwarded = install_notes(chart, "frontend.baseUrlPath=chat")
    assert "then http://localhost:8501/chat/" in forwarded
    assert "then http://localhost:8501\n" in install_notes(chart)
