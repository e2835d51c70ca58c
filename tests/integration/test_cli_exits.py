"""`chatwax ask`'s exit codes, through the console script, one per layer that can fail
(`chatwax.core.console.Exit`): a script tells a timeout from a refusal from a dead NATS by
the code, never by parsing the message."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nats as nats_py

from chatwax.core.console import Exit
from chatwax.core.settings import Settings
from chatwax.dataflow.link import ensure_streams
from tests.support.procs import NatsServer, nats_server

CHATWAX = [shutil.which("chatwax") or str(Path(sys.executable).parent / "chatwax")]


def _ask(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "CHATWAX_"))}
    return subprocess.run([*CHATWAX, "ask", *args], env={**env, "NATS_URL": url},
                          capture_output=True, text=True, timeout=120)


async def _streams_only(url: str) -> None:
    """The streams as the dataflow creates them at start, and no dataflow."""
    nc = await nats_py.connect(url)
    try:
        await ensure_streams(nc.jetstream(), Settings(nats_url=url))
    finally:
        await nc.close()


def test_each_failure_has_its_exit_code(nats: NatsServer, cluster: Any, tmp_path: Path) -> None:
    res = _ask(nats.url, "--user", "exits", "hello")
    assert res.returncode == Exit.OK and "echo: hello" in res.stdout, res.stderr
    res = _ask(nats.url, "--user", "exits", "[[500]] always failing")
    assert res.returncode == Exit.FAILED, res.stderr
    assert "error (llm_unavailable)" in res.stderr
    res = _ask(nats.url, "--user", "not an id", "hello")
    assert res.returncode == Exit.USAGE and "user_id" in res.stderr, res.stderr
    res = _ask("nats://127.0.0.1:1", "--user", "exits", "hello")
    assert res.returncode == Exit.NATS_UNREACHABLE and "cannot reach NATS" in res.stderr

    with nats_server(tmp_path / "empty") as empty:
        res = _ask(empty.url, "--user", "exits", "hello")
        assert res.returncode == Exit.NATS_UNREACHABLE, res.stderr
        assert "chatwax is not running" in res.stderr
        asyncio.run(_streams_only(empty.url))
        res = _ask(empty.url, "--user", "exits", "--timeout", "1", "hello")
        assert res.returncode == Exit.NO_ANSWER, res.stderr
        assert "no answer within 1s" in res.stderr
