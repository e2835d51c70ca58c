"""What each NATS user may publish and subscribe to when NATS auth is on, in terms of the
subjects and streams above: the one list `chatwax up --nats-auth` (chatwax.dev.natsserver)
writes and the chart's nats-configmap.yaml is checked against (tests/chart/test_structure.py).
docs/security.md is the prose."""

from __future__ import annotations

from typing import Final

from chatwax.core.wire.subjects import (
    COMPAT_SUBJECT,
    PROMPTS_PREFIX,
    PROMPTS_STREAM,
    TRANSCRIPTS_STREAM,
)

CLIENT_PUBLISH_ALLOW: Final = (
    f"{PROMPTS_PREFIX}.*",
    COMPAT_SUBJECT,
    "$JS.API.INFO",
    f"$JS.API.STREAM.INFO.{PROMPTS_STREAM}",
    f"$JS.API.STREAM.INFO.{TRANSCRIPTS_STREAM}",
    f"$JS.API.CONSUMER.CREATE.{TRANSCRIPTS_STREAM}",
    f"$JS.API.CONSUMER.CREATE.{TRANSCRIPTS_STREAM}.>",
    f"$JS.API.CONSUMER.DELETE.{TRANSCRIPTS_STREAM}.>",
    f"$JS.API.DIRECT.GET.{TRANSCRIPTS_STREAM}",
    f"$JS.API.DIRECT.GET.{TRANSCRIPTS_STREAM}.>",
    "$JS.FC.>",
)
"""What a client (frontend, `chatwax ask`) may publish when NATS auth is on: prompts, and
the JetStream API calls that read transcripts. Never a transcript or a reply subject."""
CLIENT_SUBSCRIBE_ALLOW: Final = ("_INBOX.>",)
CLIENT_USERS: Final = ("frontend", "operator")
"""NATS users with the client permissions: the frontend, and `operator` for the CLI (`chatwax
ask`, `usage`, ...). Both may publish prompts for any user id (docs/security.md)."""
OPERATOR_PUBLISH_ALLOW: Final = (
    f"{PROMPTS_PREFIX}.*.command",
    f"$JS.API.STREAM.PURGE.{TRANSCRIPTS_STREAM}",
    f"$JS.API.STREAM.MSG.DELETE.{PROMPTS_STREAM}",
    f"$JS.API.CONSUMER.CREATE.{PROMPTS_STREAM}",
    f"$JS.API.CONSUMER.CREATE.{PROMPTS_STREAM}.>",
    f"$JS.API.CONSUMER.DELETE.{PROMPTS_STREAM}.>",
)
"""What only `operator` may do besides: `chatwax forget` sends commands, reads the prompts
stream for a user's prompts, deletes them, and purges a user's transcripts."""


def client_publish_allow(compat: bool = True, user: str = "frontend") -> tuple[str, ...]:
    """A client's allow-list; without `compat`, the tutorial's `prompts` subject is not in
    it (it carries no identity, so with sign-in on nobody may use it unless enabled)."""
    extra = OPERATOR_PUBLISH_ALLOW if user == "operator" else ()
    return tuple(s for s in (*CLIENT_PUBLISH_ALLOW, *extra) if compat or s != COMPAT_SUBJECT)
