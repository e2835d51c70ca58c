"""The data folder is the owner's alone, and the secrets in it readable by the owner only."""

from __future__ import annotations

import stat
from pathlib import Path

from chatwax.dev.datadir import private_dir, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_data_folder_is_made_or_tightened_to_0700(tmp_path: Path) -> None:
    private_dir(tmp_path / "new" / "data")
    assert mode(tmp_path / "new" / "data") == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    private_dir(loose)
    assert mode(loose) == 0o700


def test_a_shared_sticky_folder_is_left_as_it_is(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    private_dir(shared)
    assert mode(shared) == 0o1777


def test_a_secret_file_is_made_0600(tmp_path: Path) -> None:
    write_private(tmp_path / "secret", "s\n")
    assert (tmp_path / "secret").read_text() == "s\n" and mode(tmp_path / "secret") == 0o600
