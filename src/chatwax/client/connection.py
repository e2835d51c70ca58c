"""How every chatwax process connects to NATS: servers, credentials, reconnects, logging."""

from __future__ import annotations

import logging
from typing import Any

from chatwax.core.settings import Settings, secret

log = logging.getLogger(__name__)


def connect_options(settings: Settings, name: str, quiet: bool = False) -> dict[str, Any]:
    """Options shared by every chatwax connection: reconnect forever, credentials if any.

    `quiet` is for interactive clients, which report a failed connect themselves.
    """
    opts: dict[str, Any] = {
        "servers": [s.strip() for s in settings.nats_url.split(",") if s.strip()],
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
    return opts


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
