"""NATS URLs without credentials: what is logged or shown never carries a password.

`nats://user:password@host:4222` works as NATS_URL, but the URL is logged (the dataflow's
connection warnings), printed (`chatwax up`) and shown on the page (a connection error).
Every `chatwax` command therefore moves credentials out of the URL at start (cli.main):
the URL keeps scheme, host and port, and the user and password (or a token) go to
NATS_USER/NATS_PASSWORD (NATS_TOKEN), secret settings that never print. Variables already
set win over the URL's credentials.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit


@dataclass(frozen=True, slots=True)
class Split:
    """A NATS_URL (comma-separated servers) and the credentials taken out of it."""

    url: str
    user: str | None = None
    password: str | None = None
    token: str | None = None


def split_credentials(urls: str) -> Split:
    """Every server of `urls` without credentials, and the first credentials found."""
    found = Split("")
    servers = []
    for server in (s.strip() for s in urls.split(",")):
        parts = urlsplit(server)
        if parts.username is None and parts.password is None:
            servers.append(server)
            continue
        host = parts.netloc.rsplit("@", 1)[1]
        servers.append(urlunsplit(parts._replace(netloc=host)))
        if found.user is None and found.token is None:
            if parts.password is None:  # nats://token@host
                found = Split("", token=unquote(parts.username or ""))
            else:
                found = Split("", unquote(parts.username or ""), unquote(parts.password))
    return Split(",".join(servers), found.user, found.password, found.token)


def without_credentials(urls: str) -> str:
    """`urls` as it may be logged or shown."""
    return split_credentials(urls).url


def move_credentials(environ: MutableMapping[str, str]) -> None:
    """NATS_URL's credentials into NATS_USER/NATS_PASSWORD or NATS_TOKEN (unless set), and
    NATS_URL without them."""
    url = environ.get("NATS_URL")
    if not url:
        return
    split = split_credentials(url)
    environ["NATS_URL"] = split.url
    if split.user is not None and not environ.get("NATS_USER"):
        environ["NATS_USER"] = split.user
        environ["NATS_PASSWORD"] = split.password or ""
    if split.token is not None and not environ.get("NATS_TOKEN"):
        environ["NATS_TOKEN"] = split.token
