"""Sign-in on the pages of a local stack: the auth file, the frontend's sign-in settings,
the page's address, and the compat subject with sign-in."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from chatwax.core.errors import ConfigError
from chatwax.dev.signin import (
    COOKIE_SECRET_FILE,
    check_mode,
    compat_on,
    read_auth_file,
    signin_env,
    ui_url,
)


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


def test_oidc_gets_a_redirect_uri_and_a_kept_cookie_secret_unless_given(tmp_path: Path) -> None:
    file = tmp_path / "oidc.env"
    file.write_text("CHATWAX_OIDC_CLIENT_ID=from-file\n")
    env = signin_env("oidc", file, 8601, tmp_path, {"CHATWAX_OIDC_CLIENT_ID": "from-env"})
    assert env["CHATWAX_AUTH"] == "oidc" and env["CHATWAX_OIDC_CLIENT_ID"] == "from-file"
    assert env["CHATWAX_OIDC_REDIRECT_URI"] == "http://localhost:8601/oauth2callback"
    secret = (tmp_path / COOKIE_SECRET_FILE).read_text().strip()
    assert env["CHATWAX_OIDC_COOKIE_SECRET"] == secret and len(secret) >= 32
    assert stat.S_IMODE((tmp_path / COOKIE_SECRET_FILE).stat().st_mode) == 0o600
    assert signin_env("oidc", None, 8601, tmp_path, {})["CHATWAX_OIDC_COOKIE_SECRET"] == secret
    given = {"CHATWAX_OIDC_REDIRECT_URI": "https://x/oauth2callback",
             "CHATWAX_OIDC_COOKIE_SECRET": "s" * 32}
    assert signin_env("oidc", None, 8601, tmp_path / "elsewhere", given) == {
        "CHATWAX_AUTH": "oidc"}  # given ones are kept where they are, nothing is made
    assert signin_env("none", None, 8601, tmp_path / "elsewhere", {}) == {"CHATWAX_AUTH": "none"}


def test_the_page_is_on_localhost_with_sign_in() -> None:
    assert ui_url("oidc", 8601) == "http://localhost:8601"
    assert ui_url("none", 8501) == "http://127.0.0.1:8501"


def test_sign_in_turns_the_compat_subject_off_unless_it_is_set() -> None:
    assert compat_on("none", {}) and not compat_on("oidc", {})
    assert compat_on("oidc", {"CHATWAX_COMPAT_SUBJECT": "prompts"})
    assert not compat_on("none", {"CHATWAX_COMPAT_SUBJECT": ""})


def test_only_the_known_sign_in_modes() -> None:
    check_mode("none")
    check_mode("oidc")
    with pytest.raises(ConfigError, match="--auth 'saml': use none or oidc"):
        check_mode("saml")
