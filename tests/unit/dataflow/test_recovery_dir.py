"""The recovery directory's check: a directory this process cannot write fails with a
message that names the owner, the mode and fsGroup, not Bytewax's "unable to open database
file" (tests/cluster/test_containers.py shows it in a pod without fsGroup)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chatwax.core.errors import ConfigError
from chatwax.dataflow.runspec import check_writable

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switches users: needs root")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder other users can reach (pytest's open_dir lives under a 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="chatwax-recovery-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def as_user(uid: int, gid: int, groups: list[int], fn: Callable[[], None]) -> str:
    """What `fn` raises as uid/gid/groups ('' when nothing), in a forked child."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        message = ""
        try:
            os.setgroups(groups)
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            fn()
        except ConfigError as exc:
            message = exc.message
        except BaseException as exc:  # noqa: BLE001 - anything else is the test's failure
            message = f"unexpected {exc!r}"
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return out


def test_a_root_owned_directory_fails_with_owner_mode_and_fs_group(open_dir: Path) -> None:
    recovery = open_dir / "recovery"
    recovery.mkdir(mode=0o755)
    message = as_user(10001, 10001, [], lambda: check_writable(recovery))
    assert f"the recovery directory {recovery} is not writable" in message
    assert "uid 10001, gid 10001, groups []" in message
    assert "belongs to 0:0 with mode 0755" in message and "fsGroup" in message


def test_the_group_fs_group_gives_makes_it_writable(open_dir: Path) -> None:
    recovery = open_dir / "recovery"
    recovery.mkdir()
    os.chown(recovery, 0, 10001)
    recovery.chmod(0o2775)  # what the kubelet's SetVolumeOwnership leaves
    assert as_user(10001, 10001, [10001], lambda: check_writable(recovery)) == ""
    assert as_user(10002, 10002, [], lambda: check_writable(recovery)) != ""


def test_a_missing_directory_is_made_or_its_parent_named(open_dir: Path) -> None:
    assert as_user(0, 0, [], lambda: check_writable(open_dir / "a" / "b")) == ""
    assert (open_dir / "a" / "b").is_dir()
    message = as_user(10001, 10001, [], lambda: check_writable(open_dir / "c"))
    assert f"the recovery directory {open_dir} is not writable" in message
