"""Sign-in on the pages of a local stack (`chatwax up --auth`, `--auth-file`): the page's
address, the frontend's sign-in settings, and what sign-in turns off."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from chatwax.core.errors import ConfigError
from chatwax.dev.datadir import write_private

MODES: Final = ("none", "oidc")
"""`chatwax up --auth`: none (open mode) or oidc."""
AUTH_FILE_PREFIXES: Final = ("CHATWAX_AUTH", "CHATWAX_OIDC_")
COOKIE_SECRET_FILE: Final = "cookie-secret"
"""The kept sign-in cookie secret, in the data folder."""


def check_mode(auth: str) -> None:
    if auth not in MODES:
        raise ConfigError(f"--auth {auth!r}: use {' or '.join(MODES)}")


def read_auth_file(path: Path) -> dict[str, str]:
    """CHATWAX_AUTH*/CHATWAX_OIDC_* settings from NAME=value lines (# comments, optional
    `export ` and quotes), for `chatwax up --auth-file`."""
    found: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name.startswith(AUTH_FILE_PREFIXES):
            raise ConfigError(f"{path}:{number}: expected CHATWAX_AUTH*=... or "
                              "CHATWAX_OIDC_*=... lines")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[name] = value
    return found


def cookie_secret(path: Path) -> str:
    """A local sign-in cookie secret, made once and kept (0600) in the data folder."""
    if not path.exists():
        write_private(path, secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def ui_url(auth: str, port: int) -> str:
    """The pages' address. With sign-in, the page's origin must be the redirect URI's:
    localhost."""
    host = "localhost" if auth == "oidc" else "127.0.0.1"
    return f"http://{host}:{port}"


def compat_on(auth: str, env: Mapping[str, str]) -> bool:
    """The tutorial's `prompts` adapter: on in open mode, off with sign-in (it carries no
    identity) unless CHATWAX_COMPAT_SUBJECT is set in `env`."""
    if "CHATWAX_COMPAT_SUBJECT" in env:
        return bool(env["CHATWAX_COMPAT_SUBJECT"])
    return auth == "none"


def signin_env(auth: str, auth_file: Path | None, ui_port: int, data_dir: Path,
               env: Mapping[str, str]) -> dict[str, str]:
    """The frontend's sign-in settings over `env`: the auth file's over the environment,
    and with oidc a redirect URI for this port and a kept cookie secret unless given."""
    found = {**(read_auth_file(auth_file) if auth_file else {}), "CHATWAX_AUTH": auth}
    if auth == "oidc":
        given = {**env, **found}
        if not given.get("CHATWAX_OIDC_REDIRECT_URI"):
            found["CHATWAX_OIDC_REDIRECT_URI"] = f"{ui_url(auth, ui_port)}/oauth2callback"
        if not given.get("CHATWAX_OIDC_COOKIE_SECRET"):
            found["CHATWAX_OIDC_COOKIE_SECRET"] = cookie_secret(data_dir / COOKIE_SECRET_FILE)
    return found
