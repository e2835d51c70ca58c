"""`chatwax usage`: token usage and cost from the transcripts stream."""

from __future__ import annotations

import argparse
import asyncio

from chatwax.core.console import EXIT_CODES, fail
from chatwax.core.errors import ChatwaxError
from chatwax.core.settings import Settings


async def _usage(settings: Settings, since: str, by: str) -> int:
    from chatwax.client.chat import ChatClient
    from chatwax.client.transcripts import iter_transcripts
    from chatwax.core.usage import UsageReport, format_table, parse_since

    window = parse_since(since)
    client = await ChatClient.connect(settings, name="chatwax-usage")
    report = UsageReport()
    try:
        async for transcript in iter_transcripts(client.js, window):
            report.add(transcript)
    finally:
        await client.close()
    print(format_table(report.rows(by), by))  # type: ignore[arg-type]
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_usage(Settings.from_env(), args.since, args.by))
    except ChatwaxError as exc:
        return fail(exc)


def add_usage(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`chatwax usage`: token usage and cost, by user, model or conversation."""
    usage = sub.add_parser("usage", help="token usage and cost from the transcripts stream",
                           epilog=EXIT_CODES)
    usage.add_argument("--since", default="24h", help="window: 30m, 24h, 7d, ... or all")
    usage.add_argument("--by", choices=["user", "model", "conversation"], default="user")
    usage.set_defaults(func=cmd_usage)
