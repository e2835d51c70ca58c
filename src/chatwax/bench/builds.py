"""Which code the dataflow processes run: this checkout, or another commit's (`--before`)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Build:
    """Which code the dataflow processes run: this checkout, or another commit's `src`."""

    label: str = "now"
    src: Path | None = None


NOW = Build()
"""This checkout's code."""


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """The `src` folder of another commit, checked out beside this one for the run."""
    root = Path(__file__).resolve().parents[3]
    with tempfile.TemporaryDirectory(prefix="chatwax-before-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(tree), ref],
                       check=True, capture_output=True)
        try:
            yield tree / "src"
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force",
                            str(tree)], capture_output=True)
