"""Every dataflow process creates or updates the streams at start (`ensure_streams`),
against a real nats-server whose JetStream store holds the streams' bounds once, but not
twice: the second process, and two starting together, must not be refused for storage
(nats-server answers a second add of a stream reserving `max_bytes` with 10047)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import nats as nats_py
import pytest

from chatwax.core.errors import ConfigError
from chatwax.core.settings import Settings
from chatwax.dataflow.link import ensure_streams
from chatwax.dev.natsserver import nats_server_binary
from tests.support.procs import free_port, stop, wait_http

MiB = 2**20
# Bounds as kind-values.yaml sets them (128Mi + 640Mi + 32Mi) in a store of 1Gi.
SETTINGS = Settings(prompt_max_bytes=128 * MiB, transcript_max_bytes=640 * MiB,
                    dead_letter_max_bytes=32 * MiB, partitions=2)


def _server(tmp_path: Path, store_bytes: int) -> tuple[subprocess.Popen[bytes], str]:
    port, monitor = free_port(), free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(f"listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\n"
                    f"jetstream {{ store_dir: {tmp_path / 'js'}, "
                    f"max_file_store: {store_bytes} }}\n")
    proc = subprocess.Popen([nats_server_binary(), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{monitor}/healthz", 20, proc)
    return proc, f"nats://127.0.0.1:{port}"


async def _ensure(url: str, settings: Settings = SETTINGS) -> int:
    nc = await nats_py.connect(url)
    try:
        return await ensure_streams(nc.jetstream(), settings)
    finally:
        await nc.close()


def test_processes_after_the_first_update_the_streams(tmp_path: Path) -> None:
    proc, url = _server(tmp_path, 1024 * MiB)
    try:
        assert asyncio.run(_ensure(url)) == 2
        assert asyncio.run(_ensure(url)) == 2  # the second process, then a restart
        assert asyncio.run(_ensure(url)) == 2

        async def together() -> list[int]:
            return list(await asyncio.gather(*(_ensure(url) for _ in range(3))))

        assert asyncio.run(together()) == [2, 2, 2]
        # A store that cannot hold the bounds at all is still a configuration error.
        bigger = SETTINGS.model_copy(update={"transcript_max_bytes": 4096 * MiB})
        with pytest.raises(ConfigError, match="cannot reserve"):
            asyncio.run(_ensure(url, bigger))
    finally:
        stop(proc)


def test_streams_made_by_two_processes_at_once_on_a_fresh_server(tmp_path: Path) -> None:
    proc, url = _server(tmp_path, 1024 * MiB)
    try:
        async def together() -> list[int]:
            return list(await asyncio.gather(*(_ensure(url) for _ in range(2))))

        assert asyncio.run(together()) == [2, 2]
    finally:
        stop(proc)
