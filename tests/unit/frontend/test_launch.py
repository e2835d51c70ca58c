"""`chatwax ui`: the settings it checks, the secrets.toml it writes (0600, exact), the
Streamlit command it becomes, and the secrets it keeps out of Streamlit's environment."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatwax.core.errors import ConfigError
from chatwax.core.settings import Settings
from chatwax.frontend import launch

COOKIE = "c" * 40
OIDC = {
    "CHATWAX_AUTH": "oidc",
    "CHATWAX_OIDC_METADATA_URL": "https://idp.example.com/.well-known/openid-configuration",
    "CHATWAX_OIDC_CLIENT_ID": "chatwax",
    "CHATWAX_OIDC_CLIENT_SECRET": "s3cret",
    "CHATWAX_OIDC_COOKIE_SECRET": COOKIE,
    "CHATWAX_OIDC_REDIRECT_URI": "https://chat.example.com/chat/oauth2callback",
}


@pytest.mark.parametrize(("env", "message"), [
    ({"CHATWAX_AUTH": "saml"}, "CHATWAX_AUTH='saml' is not valid"),
    ({"CHATWAX_OIDC_REDIRECT_URI": "https://chat.example.com/callback"},
     "CHATWAX_OIDC_REDIRECT_URI must end with /oauth2callback"),
    ({"CHATWAX_OIDC_METADATA_URL": "idp.example.com"},
     "CHATWAX_OIDC_METADATA_URL must be an http(s) URL"),
    ({"CHATWAX_OIDC_COOKIE_SECRET": "short"},
     "CHATWAX_OIDC_COOKIE_SECRET must be at least 32 characters"),
    ({"CHATWAX_AUTH_SESSION_MAX_AGE": "0"}, "CHATWAX_AUTH_SESSION_MAX_AGE must be greater"),
    ({"CHATWAX_AUTH_USER_CLAIM": ""}, "CHATWAX_AUTH_USER_CLAIM"),
])
def test_bad_sign_in_values_name_their_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert message in err.value.message and "short" not in err.value.message


def test_sign_in_secrets_never_print() -> None:
    s = Settings.from_env(OIDC)
    for text in (repr(s), str(s), repr(s.redacted()), s.model_dump_json()):
        assert "s3cret" not in text and COOKIE not in text
    assert s.redacted()["oidc_client_secret"] == "<set>"
    assert "s3cret" not in launch.describe(s)


def test_sign_in_names_every_missing_setting() -> None:
    launch.check_oidc(Settings.from_env({}))  # open mode needs none
    with pytest.raises(ConfigError) as err:
        launch.check_oidc(Settings.from_env({"CHATWAX_AUTH": "oidc",
                                             "CHATWAX_OIDC_CLIENT_ID": "x"}))
    assert err.value.message.startswith(
        "CHATWAX_AUTH=oidc needs CHATWAX_OIDC_METADATA_URL, CHATWAX_OIDC_CLIENT_SECRET, "
        "CHATWAX_OIDC_COOKIE_SECRET, CHATWAX_OIDC_REDIRECT_URI")


def test_secrets_toml_is_streamlits_auth_section() -> None:
    text = launch.secrets_toml(Settings.from_env({**OIDC, "CHATWAX_OIDC_SCOPES":
                                                  "openid email groups"}))
    assert tomllib.loads(text) == {"auth": {
        "redirect_uri": OIDC["CHATWAX_OIDC_REDIRECT_URI"], "cookie_secret": COOKIE,
        "client_id": "chatwax", "client_secret": "s3cret",
        "server_metadata_url": OIDC["CHATWAX_OIDC_METADATA_URL"],
        "client_kwargs": {"scope": "openid email groups"}}}


@given(st.text(min_size=1).filter(lambda s: s.strip() == s))
def test_any_secret_survives_the_toml(value: str) -> None:
    settings = Settings.from_env({**OIDC, "CHATWAX_OIDC_CLIENT_SECRET": value,
                                  "CHATWAX_OIDC_COOKIE_SECRET": COOKIE + value})
    section = tomllib.loads(launch.secrets_toml(settings))["auth"]
    assert section["client_secret"] == value and section["cookie_secret"] == COOKIE + value


def test_the_secrets_file_is_private(tmp_path: Path) -> None:
    folder = tmp_path / "ui"
    old = folder / launch.SECRETS_FILE
    folder.mkdir()
    old.write_text("stale")
    old.chmod(0o644)
    path = launch.write_secrets(Settings.from_env(OIDC), folder)
    assert path == old and "s3cret" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fresh = launch.write_secrets(Settings.from_env(OIDC))
    assert stat.S_IMODE(fresh.parent.stat().st_mode) == 0o700
    fresh.unlink()
    fresh.parent.rmdir()


def test_the_command_turns_identity_headers_off_with_sign_in(tmp_path: Path) -> None:
    open_mode = launch.streamlit_command(8501, "0.0.0.0", "/chat/", None, ["--x=1"])
    assert open_mode[1:5] == ["-m", "streamlit", "run", str(launch.APP)]
    assert "--server.baseUrlPath=chat" in open_mode and open_mode[-1] == "--x=1"
    assert not [a for a in open_mode if a.startswith("--secrets.files")]
    signed = launch.streamlit_command(8501, "0.0.0.0", "", tmp_path / "s.toml")
    assert {f"--secrets.files={tmp_path / 's.toml'}", "--server.trustedUserHeaders={}",
            "--server.enableAgentApi=false", "--server.enableXsrfProtection=true"} <= set(signed)
    assert not [a for a in signed if a.startswith("--server.baseUrlPath")]


def test_streamlit_inherits_no_secret() -> None:
    env = launch.child_env({**OIDC, "PATH": "/bin"})
    assert "CHATWAX_OIDC_CLIENT_SECRET" not in env and "CHATWAX_OIDC_COOKIE_SECRET" not in env
    assert env["CHATWAX_OIDC_CLIENT_ID"] == "chatwax" and env["PATH"] == "/bin"


def test_chatwax_ui_refuses_an_incomplete_sign_in_before_starting() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATWAX_")}
    res = subprocess.run([sys.executable, "-m", "chatwax", "ui", "--port", "1"],
                         env={**env, "CHATWAX_AUTH": "oidc", "CHATWAX_OIDC_CLIENT_ID": "x"},
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "configuration error: CHATWAX_AUTH=oidc needs CHATWAX_OIDC_METADATA_URL" in res.stderr


def test_sign_in_with_no_provider_at_all_fails_closed() -> None:
    """The chart's default (sign-in on, no provider yet) starts the pages, which then let
    nobody in (tests/e2e/test_signin.py), and still with identity headers off; any provider
    value given makes every other one required."""
    bare = Settings.from_env({"CHATWAX_AUTH": "oidc"})
    assert launch.unconfigured(bare)
    assert "no provider is configured" in launch.describe(bare)
    assert not launch.unconfigured(Settings.from_env({}))  # open mode is no sign-in at all
    for name in ("CHATWAX_OIDC_METADATA_URL", "CHATWAX_OIDC_CLIENT_ID",
                 "CHATWAX_OIDC_CLIENT_SECRET"):
        assert not launch.unconfigured(Settings.from_env({"CHATWAX_AUTH": "oidc",
                                                          name: OIDC[name]}))
    cmd = launch.streamlit_command(8501, "0.0.0.0", sign_in=True)
    assert {"--server.trustedUserHeaders={}", "--server.enableAgentApi=false",
            "--server.enableXsrfProtection=true"} <= set(cmd)
    assert not [a for a in cmd if a.startswith("--secrets.files")]
