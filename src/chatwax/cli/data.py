"""`chatwax export` and `chatwax forget`: an operator's data commands."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from chatwax.core.console import EXIT_CODES, setup_logging
from chatwax.core.settings import Settings


def cmd_export(args: argparse.Namespace) -> int:
    from chatwax.client.commands import run_export

    settings = Settings.from_env()
    setup_logging(settings.log_level)
    # Transcripts are everyone's conversations: the partial file and the export it is
    # renamed to are the owner's alone (0600), whatever the umask.
    umask = os.umask(0o077)
    try:
        return asyncio.run(run_export(settings, Path(args.out), args.format, args.since,
                                      args.until, args.user, args.min_turns, args.scrub_pii,
                                      args.timeout))
    finally:
        os.umask(umask)


def cmd_forget(args: argparse.Namespace) -> int:
    from chatwax.client.commands import run_forget

    settings = Settings.from_env()
    setup_logging(settings.log_level)
    return asyncio.run(run_forget(settings, args.user, args.timeout))


def add_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`chatwax export`: transcripts to a file, in one of two formats."""
    exp = sub.add_parser(
        "export", help="write transcripts to a file for fine-tuning or analysis",
        description="Read the transcripts stream a conversation at a time (constant memory) "
        "and write OUT: openai-jsonl is one conversation per line in OpenAI's chat "
        "fine-tuning format (system prompt from CHATWAX_SYSTEM_PROMPT); jsonl is one stored "
        "record (turn or summary) per line with its usage. OUT appears only when complete.",
        epilog=EXIT_CODES)
    exp.add_argument("--format", choices=["openai-jsonl", "jsonl"], default="openai-jsonl")
    exp.add_argument("--since", help="turns stored from: 24h, 7d, ... back, or an ISO date/time")
    exp.add_argument("--until", help="turns stored before: a span back or an ISO date/time")
    exp.add_argument("--user", help="only this user's conversations")
    exp.add_argument("--min-turns", type=int, default=1,
                     help="leave out conversations with fewer turns in the window (default 1)")
    exp.add_argument("--scrub-pii", action="store_true",
                     help="replace e-mail addresses and phone numbers with [email] and [phone]")
    exp.add_argument("--timeout", type=float, default=10.0,
                     help="seconds NATS may leave a request unanswered before the export "
                     "gives up, writing nothing (default 10)")
    exp.add_argument("out", help="the file to write")
    exp.set_defaults(func=cmd_export)


def add_forget(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`chatwax forget`: one user's data, everywhere it is kept."""
    forget = sub.add_parser(
        "forget", help="delete everything of one user: transcripts, prompts, dataflow state",
        description="Tells the dataflow to drop the user's conversations (history, summary, "
        "waiting prompts) and quota window, waits for it to confirm, then purges the user's "
        "transcripts and deletes their stored prompts. Logs an audit line with ids and counts "
        "only. With NATS auth on, run it as NATS_USER=operator.", epilog=EXIT_CODES)
    forget.add_argument("--user", required=True, help="the user id to forget")
    forget.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the dataflow to confirm (default 60)")
    forget.set_defaults(func=cmd_forget)
