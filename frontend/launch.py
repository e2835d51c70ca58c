"""`chatwax ui`: start the Streamlit pages the one way every deployment does.

`chatwax up`, the chart's frontend container and the tests all start the frontend through
this module, so sign-in is configured by one code path. With `CHATWAX_AUTH=none` it runs
`streamlit run <installed app.py>` with chatwax's server options. With `CHATWAX_AUTH=oidc`
it first checks the provider settings, writes Streamlit's `secrets.toml` (an `[auth]`
section: redirect URI, cookie secret, client id and secret, discovery URL, scopes) with
mode 0600 into a private folder, and runs Streamlit with `--secrets.files=<that file>`. The
client and cookie secrets are then taken out of the environment Streamlit inherits: the
pages never need them, and a secret in a file only its owner reads is one fewer copy.

Only Streamlit's own OIDC support signs users in (`st.login`, Authlib, PKCE S256 when the
provider offers it, an itsdangerous-signed identity cookie). Identity headers
(`server.trustedUserHeaders`) and the agent API are forced off with sign-in on, so the
signed cookie is the only way to be somebody (docs/security.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

from chatwax.core.errors import ConfigError
from chatwax.core.settings import Settings, secret, variable

APP: Final = Path(__file__).parent / "app.py"
"""The pages' entry script, wherever the package is installed."""
SECRETS_FILE: Final = "secrets.toml"
REQUIRED: Final = ("oidc_metadata_url", "oidc_client_id", "oidc_client_secret",
                   "oidc_cookie_secret", "oidc_redirect_uri")
PROVIDER: Final = ("oidc_metadata_url", "oidc_client_id", "oidc_client_secret")
"""Any of these given means a provider is meant; then every REQUIRED setting must be."""
SCRUBBED: Final = ("CHATWAX_OIDC_CLIENT_SECRET", "CHATWAX_OIDC_COOKIE_SECRET")
"""Variables Streamlit's process does not inherit: they live in the secrets file."""


def unconfigured(settings: Settings) -> bool:
    """Sign-in on and no provider given at all (the chart's default until one is set): the
    pages then only say what to set, so a plain install fails closed instead of open, and
    its pod runs instead of crash-looping."""
    return settings.auth == "oidc" and all(getattr(settings, name) is None for name in PROVIDER)


def check_oidc(settings: Settings) -> None:
    """Raise a ConfigError naming every provider setting sign-in still needs."""
    if settings.auth != "oidc":
        return
    missing = [variable(Settings.model_fields[name]) for name in REQUIRED
               if getattr(settings, name) is None]
    if missing:
        raise ConfigError(f"CHATWAX_AUTH=oidc needs {', '.join(missing)} "
                          "(README: \"Sign-in\")")
    if importlib.util.find_spec("authlib") is None:
        raise ConfigError("sign-in needs Authlib: pip install 'chatwax[ui]'")


def auth_section(settings: Settings) -> dict[str, Any]:
    """Streamlit's `[auth]` section for the provider in `settings` (sign-in on)."""
    check_oidc(settings)
    return {
        "redirect_uri": settings.oidc_redirect_uri,
        "cookie_secret": secret(settings.oidc_cookie_secret),
        "client_id": settings.oidc_client_id,
        "client_secret": secret(settings.oidc_client_secret),
        "server_metadata_url": settings.oidc_metadata_url,
        "client_kwargs": {"scope": settings.oidc_scopes},
    }


def secrets_toml(settings: Settings) -> str:
    """The text of Streamlit's secrets.toml; it reads back to exactly the section."""
    section = auth_section(settings)
    lines = ["# Written by `chatwax ui` from the CHATWAX_OIDC_* settings; do not edit.",
             "[auth]"]
    tables = []
    for key, value in section.items():
        if isinstance(value, dict):
            tables.append(f"\n[auth.{key}]")
            tables += [f"{k} = {_toml_string(v)}" for k, v in value.items()]
        else:
            lines.append(f"{key} = {_toml_string(str(value))}")
    text = "\n".join([*lines, *tables]) + "\n"
    if tomllib.loads(text) != {"auth": section}:  # a value TOML would read differently
        raise ConfigError("a CHATWAX_OIDC_* value cannot be written to secrets.toml")
    return text


def _toml_string(value: str) -> str:
    # A JSON string is a TOML basic string, except for DEL, which TOML wants escaped.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def write_secrets(settings: Settings, folder: Path | None = None) -> Path:
    """Write secrets.toml (0600) into `folder` (made 0700), else a new private temp folder."""
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="chatwax-ui-"))
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / SECRETS_FILE
    text = secrets_toml(settings)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)  # an older file may have had other bits
        out.write(text)
    return path


def streamlit_command(port: int, address: str, base_url_path: str = "",
                      secrets_file: Path | None = None,
                      extra: Sequence[str] = (), sign_in: bool = False) -> list[str]:
    """`python -m streamlit run <app.py>` with chatwax's options (and sign-in's: also with
    `sign_in` and no secrets file, the unconfigured page, nobody is somebody by a header)."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP),
           f"--server.port={port}", f"--server.address={address}", "--server.headless=true",
           "--browser.gatherUsageStats=false", "--client.toolbarMode=minimal"]
    if base_url_path.strip("/"):
        cmd.append(f"--server.baseUrlPath={base_url_path.strip('/')}")
    if secrets_file is not None:
        cmd.append(f"--secrets.files={secrets_file}")
    if secrets_file is not None or sign_in:
        cmd += ["--server.enableXsrfProtection=true", "--server.trustedUserHeaders={}",
                "--server.enableAgentApi=false"]
    return [*cmd, *extra]


def describe(settings: Settings) -> str:
    if unconfigured(settings):
        return ("sign-in on, but no provider is configured: the pages only say what to set "
                "(CHATWAX_OIDC_*; CHATWAX_AUTH=none for open mode)")
    if settings.auth == "oidc":
        return (f"sign-in with OpenID Connect ({settings.oidc_metadata_url}); "
                f"redirect URI {settings.oidc_redirect_uri}")
    return ("open mode: no sign-in, anyone who can reach the page can pick any user id "
            "(CHATWAX_AUTH=oidc for a shared deployment)")


def child_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k not in SCRUBBED}


def run(port: int, address: str, base_url_path: str = "", secrets_dir: Path | None = None,
        extra: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> NoReturn:
    """Check the settings, write the secrets file when sign-in is on, and become Streamlit."""
    environ = os.environ if environ is None else environ
    settings = Settings.from_env(environ)
    provider = settings.auth == "oidc" and not unconfigured(settings)
    secrets_file = write_secrets(settings, secrets_dir) if provider else None
    cmd = streamlit_command(port, address, base_url_path, secrets_file, extra,
                            sign_in=settings.auth == "oidc")
    print(f"chatwax ui: {describe(settings)}", file=sys.stderr, flush=True)
    # exec: Streamlit gets this process's id, so signals reach it (a pod's PID 1).
    os.execve(sys.executable, cmd, child_env(environ))
