"""Image fixtures: the engine (scripts/container-engine.sh), the three images built by
scripts/build-images.sh (BuildKit's cache makes an unchanged rebuild take seconds, so every
session builds), and the chart rendered for one machine: an external NATS, the test's LLM
server, one dataflow process, open mode, every port a free one.

No engine, or a failed build, fails the tests with the reason: nothing here skips."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatwax.dev.echo_llm import serve_in_thread
from tests.chart.conftest import Chart, Rendered, chart, tools  # noqa: F401 - fixtures
from tests.images.pods import NAMESPACE
from tests.support import images as images_support
from tests.support.apiserver import ApiServer
from tests.support.procs import NatsServer, free_port, nats_server

ROOT = Path(__file__).resolve().parents[2]
OUT = images_support.OUT
MODEL = "echo-1"
BUILD_REPORT: list[str] = []
# What the stand-in API server holds of a render: what the dataflow reads, and the RBAC
# that decides whether its token may.
API_KINDS = {"StatefulSet", "ServiceAccount", "Role", "RoleBinding", "ConfigMap"}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The build table (size, seconds, cache) at the end of the run's output."""
    if BUILD_REPORT:
        terminalreporter.write_sep("-", "chatwax images (scripts/build-images.sh)")
        terminalreporter.write_line("\n".join(BUILD_REPORT))


@pytest.fixture(scope="session")
def docker() -> str:
    """The docker client of a running engine (started by the script if none answers)."""
    return images_support.built().docker


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """name -> image reference, built now (cached when nothing changed)."""
    built = images_support.built()
    BUILD_REPORT.append(built.report)
    return built.refs


@pytest.fixture(scope="session")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """The images' own NATS (overriding the shared one here): their dataflow must not take
    the shared stack's prompts, nor leave its streams and consumers behind for it."""
    with nats_server(tmp_path_factory.mktemp("images-nats")) as server:
        yield server


@pytest.fixture(scope="session")
def llm() -> Iterator[Any]:
    """The images' own LLM server: the shared stack's usage must match that stack's own
    metrics (tests/integration/test_dashboards.py), so nothing else may call its LLM."""
    with serve_in_thread(model=MODEL) as handle:
        yield handle


@pytest.fixture(scope="session")
def ports() -> dict[str, int]:
    return {name: free_port() for name in ("process", "api", "health", "frontend", "llm")}


@pytest.fixture(scope="session")
def rendered(chart: Chart, nats: Any, llm: Any, ports: dict[str, int]) -> Rendered:  # noqa: F811
    """The chart as the images run it here: NATS and the LLM are the tests' own servers
    (reached on the host's network), the LLM key a Secret mounted as a file."""
    return chart.render(
        "nats.enabled=false", f"nats.url={nats.url}", "nats.auth.enabled=false",
        f"llm.baseUrl={llm.base_url}", f"llm.model={MODEL}",
        "llm.apiKey=sk-test-not-a-real-key",
        "dataflow.processes=1", f"dataflow.ports.process={ports['process']}",
        f"dataflow.ports.api={ports['api']}", f"dataflow.ports.health={ports['health']}",
        f"frontend.port={ports['frontend']}", "frontend.auth.openMode=true",
    )


@pytest.fixture(scope="session")
def rendered_local(chart: Chart, nats: Any, ports: dict[str, int]) -> Rendered:  # noqa: F811
    """The chart with the local model (llm.local): no key anywhere."""
    return chart.render("nats.enabled=false", f"nats.url={nats.url}",
                        "nats.auth.enabled=false", "llm.local.enabled=true",
                        f"llm.local.port={ports['llm']}", "llm.local.contextTokens=2048")


@pytest.fixture(scope="session")
def apiserver(rendered: Rendered, work: Path) -> Iterator[ApiServer]:
    """The API server the dataflow pod asks for its StatefulSet's replicas: the stand-in,
    over TLS, with the chart's objects and RBAC (the pod's token can only do what the
    chart's Role grants)."""
    server = ApiServer(rbac=True, tls_dir=work / "apiserver")
    try:
        for obj in rendered:
            if obj["kind"] in API_KINDS:
                server.store.put({**obj, "metadata": {**obj["metadata"],
                                                      "namespace": NAMESPACE}})
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("pods")
    yield path
