"""Shared fixtures: one real stack per test session.

nats-server, the echo LLM server and a 2-process bytewax cluster, started on first use.

Tests isolate themselves by user and conversation ids (and the LLM's request log), so
they can share the stack and the suite stays fast on two cores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from chatwax.core.settings import Settings
from chatwax.dev.echo_llm import serve_in_thread
from tests.support.procs import Cluster, NatsServer, nats_server
from tests.support.up import Up, up_factory

T = TypeVar("T")

MODEL = "echo-1"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(scope="session")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with nats_server(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture(scope="session")
def llm() -> Iterator[Any]:
    """The LLM server of the shared stack: its usage must match that stack's metrics."""
    with serve_in_thread(model=MODEL) as handle:
        yield handle


@pytest.fixture(scope="module")
def own_llm() -> Iterator[Any]:
    """An LLM server for tests that start a stack of their own."""
    with serve_in_thread(model=MODEL) as handle:
        yield handle


def stack_env(nats: NatsServer, llm: Any, recovery: Path) -> dict[str, str]:
    return {
        "NATS_URL": nats.url,
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "CHATWAX_MODEL": MODEL,
        "CHATWAX_LLM_TIMEOUT": "2",
        "CHATWAX_LLM_RETRY_MAX_TIME": "3",
        "CHATWAX_POLL_MS": "2",
        "BYTEWAX_RECOVERY_DIRECTORY": str(recovery),
        "BYTEWAX_SNAPSHOT_INTERVAL": "2",
        "BYTEWAX_RECOVERY_BACKUP_INTERVAL": "0",
    }


@pytest.fixture(scope="session")
def cluster(
    nats: NatsServer, llm: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("cluster")
    c = Cluster(stack_env(nats, llm, work / "recovery"), processes=2)
    try:
        c.start(work)
        yield c
        # Nothing any test sent may have raised inside the dataflow (checked before the
        # stop, which makes bytewax's surviving processes exit with a panic).
        assert "Traceback" not in c.log_text(), c.log_text()[-4000:]
    finally:
        c.stop()


@pytest.fixture
def settings(nats: NatsServer) -> Settings:
    return Settings(nats_url=nats.url)


@pytest.fixture
def up(tmp_path: Path, own_llm: Any) -> Iterator[Callable[..., Up]]:
    """Start `chatwax up` with extra flags on free ports; stopped at the end of the test."""
    yield from up_factory(tmp_path, own_llm)
