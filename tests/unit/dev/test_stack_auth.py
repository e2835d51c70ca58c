"""`chatwax up`'s identities: the NATS users (dataflow, frontend, operator) and their
permissions, the compat subject with sign-in, and the frontend's sign-in settings."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from chatwax.core import protocol
from chatwax.core.errors import ConfigError
from chatwax.dev.stack import (
    Stack,
    StackOptions,
    load_passwords,
    nats_auth_config,
    nats_server_binary,
    read_auth_file,
)

PASSWORDS = {"dataflow": "d", "frontend": "f", "operator": "o"}


@pytest.mark.parametrize("compat", [True, False])
def test_the_clients_share_one_allow_list_and_prompts_follows_compat(tmp_path: Path,
                                                                     compat: bool) -> None:
    conf = nats_auth_config(4222, 8222, tmp_path, PASSWORDS, compat)
    for user in protocol.CLIENT_USERS:
        block = conf[conf.index(f"user: {user}"):]
        allow = block[block.index("allow: [") + 8:block.index("]")]
        assert tuple(json.loads(f"[{allow}]")) == protocol.client_publish_allow(compat, user)
    assert ('"prompts"' in conf) is compat
    (tmp_path / "nats.conf").write_text(conf)
    res = subprocess.run([nats_server_binary(), "--config", str(tmp_path / "nats.conf"), "-t"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr


def test_an_older_password_file_gains_the_operator_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "nats-auth.json"
    path.write_text(json.dumps({"dataflow": "keep-d", "frontend": "keep-f"}))
    passwords = load_passwords(path)
    assert passwords["dataflow"] == "keep-d" and passwords["frontend"] == "keep-f"
    assert len(passwords["operator"]) >= 32
    assert load_passwords(path) == passwords
    fresh = load_passwords(tmp_path / "new.json")
    assert set(fresh) == {"dataflow", "frontend", "operator"}
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o600


def test_the_auth_file_holds_only_sign_in_settings(tmp_path: Path) -> None:
    good = tmp_path / "oidc.env"
    good.write_text("# provider\n\nexport CHATWAX_OIDC_CLIENT_ID=chatwax\n"
                    "CHATWAX_OIDC_CLIENT_SECRET='a=b#c'\nCHATWAX_AUTH_ADMINS=\"x@y.z\"\n")
    assert read_auth_file(good) == {"CHATWAX_OIDC_CLIENT_ID": "chatwax",
                                    "CHATWAX_OIDC_CLIENT_SECRET": "a=b#c",
                                    "CHATWAX_AUTH_ADMINS": "x@y.z"}
    bad = tmp_path / "bad.env"
    bad.write_text("OPENAI_API_KEY=sk-1\n")
    with pytest.raises(ConfigError, match=r"bad\.env:1: expected"):
        read_auth_file(bad)


def test_sign_in_defaults_for_a_local_stack(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Redirect URI on localhost and this port; a cookie secret made once and kept; the
    auth file wins over the environment."""
    for var in ("CHATWAX_OIDC_REDIRECT_URI", "CHATWAX_OIDC_COOKIE_SECRET",
                "CHATWAX_COMPAT_SUBJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CHATWAX_OIDC_CLIENT_ID", "from-env")
    file = tmp_path / "oidc.env"
    file.write_text("CHATWAX_OIDC_CLIENT_ID=from-file\n")
    tmp_path.joinpath("data").mkdir()
    stack = Stack(StackOptions(data_dir=tmp_path / "data", ui_port=8601, auth="oidc",
                               auth_file=file, llm="openai"))
    env = stack.auth_env()
    assert env["CHATWAX_AUTH"] == "oidc" and env["CHATWAX_OIDC_CLIENT_ID"] == "from-file"
    assert env["CHATWAX_OIDC_REDIRECT_URI"] == "http://localhost:8601/oauth2callback"
    assert len(env["CHATWAX_OIDC_COOKIE_SECRET"]) >= 32
    assert stack.auth_env()["CHATWAX_OIDC_COOKIE_SECRET"] == env["CHATWAX_OIDC_COOKIE_SECRET"]
    assert stat.S_IMODE((tmp_path / "data" / "cookie-secret").stat().st_mode) == 0o600
    assert stack.ui_url == "http://localhost:8601"
    assert not stack.compat  # sign-in on: the tutorial's subject is off...
    monkeypatch.setenv("CHATWAX_COMPAT_SUBJECT", "prompts")
    assert Stack(stack.opts).compat  # ...unless explicitly enabled
    open_stack = Stack(StackOptions(data_dir=tmp_path / "data", llm="openai"))
    monkeypatch.delenv("CHATWAX_COMPAT_SUBJECT")
    assert open_stack.compat and open_stack.auth_env() == {"CHATWAX_AUTH": "none"}


def test_chatwax_up_refuses_a_sign_in_it_cannot_start(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CHATWAX_OIDC_METADATA_URL", "CHATWAX_OIDC_CLIENT_ID",
                "CHATWAX_OIDC_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    stack = Stack(StackOptions(data_dir=tmp_path, auth="oidc", llm="openai",
                               external_nats="nats://127.0.0.1:1", processes=1,
                               nats_port=1, ui_port=1))
    monkeypatch.setattr(stack, "check_ports", lambda: None)
    with pytest.raises(ConfigError, match="CHATWAX_OIDC_METADATA_URL, CHATWAX_OIDC_CLIENT_ID"):
        stack.start()
    assert not stack.children  # nothing was started
