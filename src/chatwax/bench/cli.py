"""`chatwax bench`: its options, and the run they ask for (`chatwax.bench.suite`).

Light on purpose: every `chatwax` command loads this module to build its parser, so the
harness itself (a stack, Bytewax, matplotlib) is imported only when `bench` runs.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from chatwax.bench.scenarios import EXPORT, RESTART
from chatwax.core.console import needs_extra


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `chatwax bench`: load shape, which measurements, where results go."""
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per scenario")
    parser.add_argument("--latency", type=float, default=0.5, help="LLM latency in seconds")
    parser.add_argument("--tokens", type=int, default=50, help="tokens per answer")
    parser.add_argument("--only", help="run the scenarios whose name contains this, in any "
                        f"case (`{RESTART}` or `{EXPORT}`: that measurement alone)")
    parser.add_argument("--restart-conversations", type=int, default=1_000_000,
                        help="conversations in recovery for the restart measurement (0: skip)")
    parser.add_argument("--before", metavar="REF",
                        help="also run each scenario with the dataflow of this git commit "
                        "(checked out beside this one), side by side in the table")
    parser.add_argument("--quick", action="store_true",
                        help="a development loop: 5 s per scenario (10 s sustained), a "
                        "100,000-conversation restart, no export")
    parser.add_argument("--export-conversations", type=int, default=20_000,
                        help="conversations (5 turns each) in the stream `--only export` "
                        "exports, and a tenth of that (0: skip)")
    parser.add_argument("--profile", action="store_true",
                        help="record every dataflow process with py-spy during each scenario "
                        "(collapsed stacks in OUT/profiles; `python -m chatwax.bench.profile` "
                        "summarizes them)")
    parser.add_argument("--out", default="artifacts/bench", help="where bench.json/png go")


def bench(args: argparse.Namespace) -> int:
    """Run what the options ask for; `--quick` is a development loop: short runs, no export."""
    try:
        from chatwax.bench.suite import Options, run
    except ImportError:
        return needs_extra("bench", "`chatwax bench`")

    logging.basicConfig(level=logging.WARNING)
    duration, restart, export, sustained = (
        (5.0, 100_000, 0, 10.0) if args.quick
        else (args.duration, args.restart_conversations, args.export_conversations, None))
    return run(Options(duration, args.latency, args.tokens, args.only, Path(args.out),
                       restart, export, args.profile, args.before, sustained))
