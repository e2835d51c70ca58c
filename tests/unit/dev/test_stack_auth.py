"""`chatwax up` with sign-in: the frontend's settings and the compat subject for a local
stack, and a sign-in that cannot start refused before anything starts."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from chatwax.core.errors import ConfigError
from chatwax.dev.options import StackOptions
from chatwax.dev.stack import Stack


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
