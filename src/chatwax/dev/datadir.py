"""The data folder of `chatwax up` (JetStream, recovery, passwords, cookie secret,
exports): the owner's alone, and the secrets in it readable by the owner only."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def private_dir(path: Path) -> None:
    """Make `path` the owner's alone: created 0700, an existing one of ours tightened to
    0700 (never a shared folder such as /tmp, which is sticky, nor one of another user)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid == os.getuid() and not info.st_mode & stat.S_ISVTX:
        path.chmod(0o700)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, a new file made 0600 (an existing one keeps its mode)."""
    path.touch(mode=0o600)
    path.write_text(text)
