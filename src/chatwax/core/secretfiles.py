"""Secrets as files: the chart mounts each pod's secrets as files, not environment variables.

A secret in a container's environment shows in `kubectl exec ... env`, in every child the
process starts, and in crash reports that dump the environment. The chart instead mounts a
projected volume at `CHATWAX_SECRETS_DIR` holding one file per secret setting, named like its
variable (`NATS_PASSWORD`, `OPENAI_API_KEY`, `CHATWAX_OIDC_CLIENT_SECRET`, ...). Every
`chatwax` command reads them at start (cli.main) into its own environment, where
`Settings.from_env` finds them as before; a file wins over a variable of the same name.
Files of other names are ignored: only secret settings can come from the folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from chatwax.core.settings import SECRETS, Settings, variable

SECRETS_DIR_VAR: Final = "CHATWAX_SECRETS_DIR"
SECRET_VARIABLES: Final = frozenset(variable(Settings.model_fields[name]) for name in SECRETS)


def read_secret_files(environ: Mapping[str, str]) -> dict[str, str]:
    """Variable -> value of every secret file in $CHATWAX_SECRETS_DIR (none when unset)."""
    folder = environ.get(SECRETS_DIR_VAR)
    if not folder:
        return {}
    found: dict[str, str] = {}
    for name in sorted(SECRET_VARIABLES):
        path = Path(folder) / name
        if path.is_file():
            found[name] = path.read_text(encoding="utf-8")
    return found


def load_secret_files() -> None:
    """Put the secret files' values into this process's environment (cli.main, at start)."""
    os.environ.update(read_secret_files(os.environ))
