"""The nats-server of `chatwax up`: its users (dataflow, frontend, operator), their
permissions and passwords, and its command line."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from chatwax.core.wire import permissions
from chatwax.dev import natsserver
from chatwax.dev.natsserver import (
    PASSWORDS_FILE,
    load_passwords,
    nats_auth_config,
    nats_server_binary,
    nats_server_command,
)

PASSWORDS = {"dataflow": "d", "frontend": "f", "operator": "o"}


@pytest.mark.parametrize("compat", [True, False])
def test_the_clients_share_one_allow_list_and_prompts_follows_compat(tmp_path: Path,
                                                                     compat: bool) -> None:
    conf = nats_auth_config(4222, 8222, tmp_path, PASSWORDS, compat)
    for user in permissions.CLIENT_USERS:
        block = conf[conf.index(f"user: {user}"):]
        allow = block[block.index("allow: [") + 8:block.index("]")]
        assert tuple(json.loads(f"[{allow}]")) == permissions.client_publish_allow(compat, user)
    assert ('"prompts"' in conf) is compat
    (tmp_path / "nats.conf").write_text(conf)
    res = subprocess.run([nats_server_binary(), "--config", str(tmp_path / "nats.conf"), "-t"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr


def test_an_older_password_file_gains_the_operator_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / PASSWORDS_FILE
    path.write_text(json.dumps({"dataflow": "keep-d", "frontend": "keep-f"}))
    passwords = load_passwords(path)
    assert passwords["dataflow"] == "keep-d" and passwords["frontend"] == "keep-f"
    assert len(passwords["operator"]) >= 32
    assert load_passwords(path) == passwords
    fresh = load_passwords(tmp_path / "new.json")
    assert set(fresh) == {"dataflow", "frontend", "operator"}
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o600


def test_the_command_line_with_and_without_users(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(natsserver, "nats_server_binary", lambda: "nats-server")
    log = ["-l", str((tmp_path / "nats-server.log").resolve())]
    store = str((tmp_path / "nats").resolve())
    assert nats_server_command(tmp_path, 4222, 8222, None, compat=True) == [
        "nats-server", "-a", "127.0.0.1", "-p", "4222", "-m", "8222", "-js", "-sd", store,
        "--server_name", "chatwax-local", *log]
    assert not (tmp_path / "nats.conf").exists()
    conf = tmp_path / "nats.conf"
    assert nats_server_command(tmp_path, 4222, 8222, PASSWORDS, compat=False) == [
        "nats-server", "--config", str(conf.resolve()), *log]
    assert conf.read_text() == nats_auth_config(4222, 8222, Path(store), PASSWORDS, False)
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
