"""Shared fixtures: one real stack per test session, and markers by folder.

nats-server, the echo LLM server and a 2-process Bytewax cluster, started on first use.
Tests isolate themselves by user and conversation ids (and the LLM's request log), so
they can share the stack and the suite stays fast on two cores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chatwax.core.settings import Settings
from chatwax.dev.echo_llm import serve_in_thread
from chatwax.dev.stack import Stack
from tests.support.procs import NatsServer, dataflow_cluster, dataflow_env, log_text, nats_server
from tests.support.up import Up, up_factory

MODEL = "echo-1"
MARKERS = {"integration": "integration", "e2e": "e2e", "cluster": "cluster", "chart": "chart",
           "images": "images"}
TESTS = Path(__file__).resolve().parent
# The chart's tests first: `make test` builds the images in the background meanwhile
# (tests/support/images.py); then the image tests and the cluster model, which run them;
# then the rest, whose shared stack then never idles beside the cluster model.
FIRST = ("chart", "images", "cluster")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each folder's tests carry its marker (`-m "not cluster"` and so on), in FIRST's order."""
    def folder(item: pytest.Item) -> str:
        parts = Path(str(item.fspath)).resolve().relative_to(TESTS).parts
        return parts[0] if len(parts) > 1 else ""

    for item in items:
        if folder(item) in MARKERS:
            item.add_marker(getattr(pytest.mark, MARKERS[folder(item)]))
    items.sort(key=lambda item: FIRST.index(folder(item)) if folder(item) in FIRST
               else len(FIRST))


def _echo_llm() -> Iterator[Any]:
    with serve_in_thread(model=MODEL) as handle:
        yield handle


llm = pytest.fixture(scope="session", name="llm")(_echo_llm)
"""The LLM server of the shared stack: its usage must match that stack's metrics."""
own_llm = pytest.fixture(scope="module", name="own_llm")(_echo_llm)
"""An LLM server for tests that start a stack of their own."""


@pytest.fixture(scope="session")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with nats_server(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture(scope="session")
def cluster(nats: NatsServer, llm: Any, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Stack]:
    stack = dataflow_cluster(nats.url, dataflow_env(llm.base_url, MODEL),
                             tmp_path_factory.mktemp("cluster"))
    try:
        yield stack
        # Nothing any test sent may have raised inside the dataflow (checked before the
        # stop, as a stopped cluster logs its own goodbye).
        assert "Traceback" not in log_text(stack), log_text(stack)[-4000:]
    finally:
        stack.stop()


@pytest.fixture
def settings(nats: NatsServer) -> Settings:
    return Settings(nats_url=nats.url)


@pytest.fixture
def up(tmp_path: Path, own_llm: Any) -> Iterator[Callable[..., Up]]:
    """Start `chatwax up` with extra flags on free ports; stopped at the end of the test."""
    yield from up_factory(tmp_path, own_llm)
