"""The echo LLM server in its own process, so the load generator's work does not delay the
server's answers (and the overhead measured is the pipeline's)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from typing import Any

from chatwax.bench.ports import free_run
from chatwax.dev.probes import wait_http


class EchoProcess:
    """`chatwax.dev.echo_llm` with a fixed latency and answers padded to `tokens`."""

    def __init__(self, latency: float, tokens: int) -> None:
        port = free_run(1, 26000)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chatwax.dev.echo_llm", "--port", str(port), "--latency",
             str(latency), "--pad-to", str(tokens), "--answer-tokens-max", str(tokens)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"{self.base_url}/models", 20, self.proc, "echo LLM server")

    def requests(self) -> list[dict[str, Any]]:
        """Every request the server received, with its arrival time (`received_at`)."""
        url = self.base_url.removesuffix("/v1") + "/_test/requests"
        with urllib.request.urlopen(url, timeout=30) as resp:
            return list(json.loads(resp.read()))

    def __enter__(self) -> EchoProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)
