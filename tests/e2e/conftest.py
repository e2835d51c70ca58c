"""The pages served for browser tests, as every deployment starts them: `chatwax ui`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import NatsServer, free_port, stop, wait_http


@pytest.fixture
def frontend(nats: NatsServer, tmp_path: Path) -> Iterator[str]:
    """`chatwax ui` in open mode on the session's NATS; its base URL."""
    port = free_port()
    log = (tmp_path / "streamlit.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatwax", "ui", "--port", str(port)],
        env={**os.environ, "NATS_URL": nats.url, "CHATWAX_AUTH": "none"}, stdout=log,
        stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health", 60, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
        log.close()
