"""The Grafana dashboards match the code: every query parses, names only metrics our
processes export, and returns data from a real Prometheus that scraped a real run."""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chatwax.core.settings import Settings
from chatwax.dev.prometheus import prometheus_binary, prometheus_config
from chatwax.dev.stack import Stack
from tests.support.asks import ask_all, run
from tests.support.procs import free_port, stop, wait_http
from tests.support.waiting import wait_until

DASHBOARDS = sorted(
    (Path(__file__).resolve().parents[2] / "charts" / "chatwax" / "dashboards").glob("*.json")
)
# What Grafana would put in for the template variables when the test queries.
SUBSTITUTIONS = {"$__rate_interval": "20s", "$__range": "10m", "$model": ".*"}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL with variables substituted)."""
    out = []
    for path in DASHBOARDS:
        for p in panels(load(path)):
            for t in p.get("targets", []):
                expr = t["expr"]
                for var, value in SUBSTITUTIONS.items():
                    expr = expr.replace(var, value)
                out.append((path.name, p["title"], expr))
    return out


def metric_names(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def test_there_are_two_dashboards() -> None:
    titles = sorted(load(p)["title"] for p in DASHBOARDS)
    assert titles == ["chatwax / Dataflow health", "chatwax / Token usage"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_sidecar_ready(path: Path) -> None:
    d = load(path)
    assert "__inputs" not in d  # the "export for sharing" form breaks sidecar provisioning
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for p in panels(d):
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["fieldConfig"]["defaults"].get("unit"), f"{p['title']} has no unit"
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            if "rate(" in t["expr"] or "increase(" in t["expr"]:
                assert "$__rate_interval" in t["expr"] or "$__range" in t["expr"], t["expr"]


def test_every_query_parses_and_uses_exported_metrics(
    cluster: Stack, settings: Settings
) -> None:
    # Bytewax creates its step metrics on first use, and snapshot ones at the first
    # snapshot (every 2 s here): serve a prompt and wait past one.
    run(ask_all(settings, f"names-{uuid.uuid4().hex[:6]}", f"c-{uuid.uuid4().hex[:8]}", "hi"))
    used: set[str] = set()
    for name, title, expr in queries():
        try:
            used |= metric_names(expr)
        except Exception as exc:  # noqa: BLE001 - report which panel fails to parse
            pytest.fail(f"{name} / {title}: {expr!r} does not parse: {exc}")

    def exported() -> set[str]:
        names: set[str] = set()
        for url in cluster.metrics_urls():
            with urllib.request.urlopen(url, timeout=5) as resp:
                for family in text_string_to_metric_families(resp.read().decode()):
                    names.update(s.name for s in family.samples)
        return names

    with contextlib.suppress(AssertionError):  # reported below, with the names
        wait_until(lambda: not used - exported(), 15, "every dashboard metric exported",
                   poll=0.5)
    missing = used - exported()
    assert not missing, f"dashboards use metrics no process exports: {sorted(missing)}"
    assert any(n.startswith("chatwax_") for n in used)
    assert any(n.startswith("bytewax_") for n in used)


@pytest.fixture(scope="module")
def prometheus(cluster: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    targets = [url.removeprefix("http://").removesuffix("/metrics")
               for url in cluster.metrics_urls()]
    (work / "prometheus.yml").write_text(prometheus_config(targets, 1.0))
    proc = subprocess.Popen([
        prometheus_binary(), f"--config.file={work / 'prometheus.yml'}",
        f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ])
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", 30, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def instant(prom: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_every_panel_returns_data_and_tokens_match_exactly(
    cluster: Stack, llm: Any, settings: Settings, prometheus: str
) -> None:
    # Traffic inside the rate windows: answers, a retried rate limit, a failure.
    for prompt in ("dashboards one", "dashboards two", "[[429x1]] dashboards retry",
                   "[[500]] dashboards fail"):
        run(ask_all(settings, f"dash-{uuid.uuid4().hex[:6]}", f"c-{uuid.uuid4().hex[:8]}",
                    prompt))
    usage = llm.usage()
    def scraped() -> bool:  # Prometheus has the final counts of every process
        rows = {r["metric"]["type"]: float(r["value"][1]) for r in
                instant(prometheus, "sum by (type) (chatwax_llm_tokens_total)")}
        return rows == {"input": usage["prompt_tokens"], "output": usage["completion_tokens"]}

    wait_until(scraped, 30, f"Prometheus scraping the LLM server's counts {usage}", poll=0.5)
    def empty() -> list[tuple[str, str, str]]:  # rate windows need two samples each
        return [(name, title, expr) for name, title, expr in queries()
                if not instant(prometheus, expr)]

    with contextlib.suppress(AssertionError):  # reported below, with the panels
        wait_until(lambda: not empty(), 30, "every panel with data", poll=0.5)
    assert not empty(), f"panels with no data: {empty()}"
