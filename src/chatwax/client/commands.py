"""`chatwax export` and `chatwax forget`: what they print and the exit code of every
outcome (the table is `chatwax.core.console.Exit`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from nats.errors import Error as NatsError

from chatwax.client.chat import ChatClient
from chatwax.client.export import export, partial_path
from chatwax.client.forget import forget_user
from chatwax.core.console import Exit, fail
from chatwax.core.errors import ChatwaxError, ConfigError, NatsUnavailable
from chatwax.core.export import Format, Selection, parse_time
from chatwax.core.settings import Settings
from chatwax.core.wire import MAX_USER_ID, check_id


def _fail(code: Exit, message: str) -> int:
    print(f"chatwax: {message}", file=sys.stderr)
    return int(code)


def selection(since: str | None, until: str | None, user: str | None, min_turns: int,
              now: float) -> Selection:
    if min_turns < 1:
        raise ConfigError("--min-turns must be 1 or more")
    return Selection(since=None if since is None else parse_time(since, now),
                     until=None if until is None else parse_time(until, now),
                     user=user, min_turns=min_turns)


async def run_export(settings: Settings, out: Path, fmt: Format, since: str | None,
                     until: str | None, user: str | None, min_turns: int, scrub: bool,
                     timeout: float) -> int:
    try:
        chosen = selection(since, until, user, min_turns, time.time())
        if user is not None:
            check_id(user, "--user", MAX_USER_ID)
    except ChatwaxError as exc:
        return _fail(Exit.USAGE, exc.message)
    if not out.parent.is_dir():
        return _fail(Exit.OUTPUT_UNWRITABLE, f"cannot write {out}: {out.parent} is not a folder")
    try:
        client = await ChatClient.connect(settings, name="chatwax-export")
    except NatsUnavailable as exc:
        return _fail(Exit.NATS_UNREACHABLE, exc.message)
    started = time.monotonic()
    try:
        report = await export(client.nc, out, fmt, chosen, settings.system_prompt, scrub,
                              timeout)
    except NatsUnavailable as exc:
        # A server that stopped answering would not answer a drain either.
        await client.close(drain=False)
        return _fail(Exit.NATS_UNREACHABLE, f"{exc.message}; nothing written to {out}")
    except OSError as exc:
        return _fail(Exit.OUTPUT_UNWRITABLE,
                     f"cannot write {partial_path(out)}: {exc.strerror or exc}")
    except (ChatwaxError, NatsError) as exc:
        why = exc.message if isinstance(exc, ChatwaxError) else f"NATS: {exc}"
        return _fail(Exit.FAILED, f"{why}; nothing written to {out}")
    finally:
        await client.close()
    took = time.monotonic() - started
    print(f"chatwax: wrote {report.lines} lines ({report.conversations} conversations, "
          f"{report.bytes:,} bytes) to {out} in {took:.1f}s; {report.records} records read, "
          f"{report.skipped} conversations under --min-turns", file=sys.stderr)
    return int(Exit.OK)


async def run_forget(settings: Settings, user: str, timeout: float) -> int:
    try:
        client = await ChatClient.connect(settings, name="chatwax-forget")
    except NatsUnavailable as exc:
        return _fail(Exit.NATS_UNREACHABLE, exc.message)
    try:
        report = await forget_user(client, user, timeout)
    except NatsUnavailable as exc:
        return _fail(Exit.NATS_UNREACHABLE, exc.message)
    except ChatwaxError as exc:  # a bad user id, a refusal, no confirmation in time
        return fail(exc)
    except NatsError as exc:  # e.g. a permissions violation: only `operator` may forget
        return _fail(Exit.FAILED, f"NATS refused a step of forgetting {user} ({exc}); with "
                     "NATS auth on, forget runs as NATS_USER=operator")
    finally:
        await client.close()
    print(f"chatwax: forgot user {user}: {report.conversations} conversations "
          f"({report.turns} turns, {report.waiting} waiting) dropped by the dataflow, "
          f"{report.transcripts_deleted} transcript records and {report.prompts_deleted} "
          "stored prompts and commands deleted", file=sys.stderr)
    return int(Exit.OK)
