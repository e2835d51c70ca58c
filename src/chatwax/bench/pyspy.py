"""Recording the dataflow processes with py-spy during a scenario (`--profile`);
`python -m chatwax.bench.profile` summarizes what it wrote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from chatwax.bench.scenarios import Scenario
from chatwax.dev.stack import Stack


def start_profiles(stack: Stack, sc: Scenario, duration: float, folder: Path
                   ) -> list[subprocess.Popen[bytes]]:
    """py-spy on every dataflow process for the scenario's run: collapsed stacks (one line
    per distinct stack, with its sample count), threads apart, idle samples left out."""
    folder.mkdir(parents=True, exist_ok=True)
    slug = sc.name.replace(" ", "-").replace("/", "")
    procs = []
    for child in (c for c in stack.children if c.dataflow):
        out = folder / f"{slug}.{child.name}.txt"
        procs.append(subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
             str(child.proc.pid), "--duration", str(int(duration)), "--rate", "200",
             "--format", "raw", "--threads",
             "--nonblocking", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs
