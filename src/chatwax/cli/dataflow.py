"""`chatwax dataflow`: one process of the dataflow cluster, as a pod runs it."""

from __future__ import annotations

import argparse
import os

from chatwax.core.console import setup_logging
from chatwax.core.settings import Settings


def cmd_dataflow(args: argparse.Namespace) -> int:
    """Run one bytewax process of the cluster, as a pod does (bytewax's env decides)."""
    from chatwax.dataflow.process import run

    settings = Settings.from_env()
    setup_logging(settings.log_level)
    return run(settings, os.environ)


def add_dataflow(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`chatwax dataflow`: no options; BYTEWAX_* variables place the process."""
    df = sub.add_parser("dataflow", help="run one dataflow process (what a pod runs); "
                        "BYTEWAX_* variables place it in the cluster")
    df.set_defaults(func=cmd_dataflow)
