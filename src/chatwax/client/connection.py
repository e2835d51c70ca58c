"""How every chatwax process connects to NATS: servers, credentials, reconnects, logging."""

from __future__ import annotations

import logging
import ssl
from typing import Any
from urllib.parse import urlsplit

from chatwax.core.errors import ConfigError
from chatwax.core.settings import Settings, secret

log = logging.getLogger(__name__)


def connect_options(settings: Settings, name: str, quiet: bool = False) -> dict[str, Any]:
    """Options shared by every chatwax connection: reconnect forever, credentials if any.

    `quiet` is for interactive clients, which report a failed connect themselves.
    """
    servers = [s.strip() for s in settings.nats_url.split(",") if s.strip()]
    opts: dict[str, Any] = {
        "servers": servers,
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 5,
        "allow_reconnect": True,
        "error_cb": _on_error_quiet if quiet else _on_error,
        "disconnected_cb": _on_disconnected_quiet if quiet else _on_disconnected,
        "reconnected_cb": _on_reconnected,
    }
    if settings.nats_user:
        opts["user"] = settings.nats_user
        opts["password"] = secret(settings.nats_password) or ""
    if settings.nats_token:
        opts["token"] = secret(settings.nats_token)
    context = tls_context(settings, servers)
    if context is not None:
        opts["tls"] = context
    return opts


def tls_context(settings: Settings, servers: list[str]) -> ssl.SSLContext | None:
    """TLS when a server URL is tls:// or a CA or client certificate is given.

    The server's certificate is checked against NATS_CA (else the system's CAs) and its
    name against the URL's host: a NATS that requires TLS is never talked to in clear,
    and a CA file that cannot be read stops the start with its path, not at the first
    reconnect.
    """
    wants = (settings.nats_ca or settings.nats_cert
             or any(urlsplit(s).scheme == "tls" for s in servers))
    if not wants:
        return None
    try:
        context = ssl.create_default_context(cafile=settings.nats_ca)
        if settings.nats_cert:
            context.load_cert_chain(settings.nats_cert, settings.nats_key)
    except (OSError, ssl.SSLError) as exc:
        files = ", ".join(f for f in (settings.nats_ca, settings.nats_cert, settings.nats_key)
                          if f)
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise ConfigError(f"NATS TLS: cannot load {files}: {reason}") from None
    return context


async def _on_error(exc: Exception) -> None:
    # One line, no traceback: while NATS is down this fires on every reconnect attempt.
    log.warning("NATS: %s", exc or type(exc).__name__)


async def _on_error_quiet(exc: Exception) -> None:
    log.debug("NATS: %s", exc or type(exc).__name__)


async def _on_disconnected() -> None:
    log.warning("NATS: disconnected, reconnecting")


async def _on_disconnected_quiet() -> None:
    log.debug("NATS: disconnected")


async def _on_reconnected() -> None:
    log.info("NATS: reconnected")
