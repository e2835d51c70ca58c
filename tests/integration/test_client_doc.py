"""docs/client.md's first example, as written there, against the running stack: the
library's documented way to ask works, and the doc cannot drift from it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.procs import NatsServer

DOC = Path(__file__).parents[2] / "docs" / "client.md"


def test_the_documented_example_asks_streams_and_reads_history(
        nats: NatsServer, cluster: Any, tmp_path: Path) -> None:
    [example, *_] = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    script = tmp_path / "example.py"
    script.write_text(example)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "CHATWAX_"))}
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, env={**env, "NATS_URL": nats.url})
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    prompt = "Name three things to see in Lisbon."
    assert lines[0] == f"echo: {prompt}", res.stdout  # the chunks, streamed on one line
    assert re.fullmatch(r"\S+: \d+ tokens, turn 1", lines[1]), lines
    assert lines[2] == f"1 {prompt} -> {f'echo: {prompt}'[:40]}"  # history, stored already
    assert "error" not in res.stdout
