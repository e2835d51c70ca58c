"""How every `chatwax` command talks to its terminal: one log format on stderr, and one
message for a command whose extra is not installed.

Here, below every package, because the commands live where their code does: the
production ones in `chatwax.cli.production`, `up` in `chatwax.dev`, `bench` in
`chatwax.bench`.
"""

from __future__ import annotations

import logging
import sys


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
    return 2
