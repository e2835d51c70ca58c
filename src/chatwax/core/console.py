"""How every `chatwax` command talks to its terminal: one log format on stderr, one exit
code table, and one message for a command whose extra is not installed.

Here, below every package, because the commands live where their code does: the
production ones in `chatwax.cli.production`, `up` in `chatwax.dev`, `bench` in
`chatwax.bench`.
"""

from __future__ import annotations

import logging
import sys
from enum import IntEnum

from chatwax.core.errors import (
    ChatwaxError,
    ConfigError,
    NatsUnavailable,
    NoAnswer,
    NotRunning,
    ProtocolError,
)


class Exit(IntEnum):
    """The exit codes of every `chatwax` command (README, "Exit codes")."""

    OK = 0
    FAILED = 1
    """Refused or failed: the message (and its code) says why."""
    USAGE = 2
    """Bad arguments or configuration; nothing was sent."""
    NATS_UNREACHABLE = 3
    """NATS cannot be reached, or chatwax's streams do not exist there."""
    OUTPUT_UNWRITABLE = 4
    NO_ANSWER = 5
    """The dataflow did not answer or confirm in time; the request stays stored and is
    carried out when it runs."""


EXIT_CODES = ("exit codes: 0 done, 1 refused or failed, 2 bad arguments or configuration, "
              "3 NATS unreachable or chatwax not running, 4 output not writable, "
              "5 no answer from the dataflow in time (the request stays queued)")


def exit_for(exc: ChatwaxError) -> Exit:
    """The exit code of a command that ended with `exc`: by its layer, never its text."""
    if isinstance(exc, ConfigError | ProtocolError):
        return Exit.USAGE
    if isinstance(exc, NatsUnavailable | NotRunning):
        return Exit.NATS_UNREACHABLE
    if isinstance(exc, NoAnswer):
        return Exit.NO_ANSWER
    return Exit.FAILED


def fail(exc: ChatwaxError, context: str = "") -> int:
    """Print `exc` (with its wire code when it has one) and return its exit code."""
    code = getattr(exc, "code", None)
    label = f"error ({code.value}): " if code is not None else ""
    print(f"chatwax: {label}{exc.message}{context}", file=sys.stderr)
    return int(exit_for(exc))


def setup_logging(level: str) -> None:
    """Log at `level` to stderr; one line per HTTP request to the LLM is noise at INFO
    (failures are logged by chatwax)."""
    logging.basicConfig(
        level=level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpx2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def needs_extra(extra: str, what: str) -> int:
    """Say which extra brings `what`; the exit code of a command that cannot run here."""
    print(f"chatwax: {what} is not in this install: pip install 'chatwax[{extra}]'",
          file=sys.stderr)
    return int(Exit.USAGE)
