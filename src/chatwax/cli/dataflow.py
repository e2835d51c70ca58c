"""`chatwax dataflow`: one process of the dataflow cluster, as a pod runs it."""

from __future__ import annotations

import argparse
import logging
import os

from chatwax.core.console import setup_logging
from chatwax.core.settings import Settings


def cmd_dataflow(args: argparse.Namespace) -> int:
    """Run one bytewax process of the cluster, as a pod does (bytewax's env decides)."""
    from chatwax.dataflow.process import replace_if_stale, run, wait_to_be_stopped
    from chatwax.dataflow.restarts import exit_on_stop_signals

    # First the signals (the kubelet's SIGTERM may follow a pod's own delete within
    # milliseconds, and a PID 1 drops a signal it does not handle); then a pod made from
    # an older template goes before a bad setting can stop it.
    exit_on_stop_signals()
    setup_logging("INFO")
    if replace_if_stale(os.environ):
        return wait_to_be_stopped()
    settings = Settings.from_env()
    logging.getLogger().setLevel(settings.log_level.upper())
    return run(settings, os.environ)


def add_dataflow(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`chatwax dataflow`: no options; BYTEWAX_* variables place the process."""
    df = sub.add_parser("dataflow", help="run one dataflow process (what a pod runs); "
                        "BYTEWAX_* variables place it in the cluster")
    df.set_defaults(func=cmd_dataflow)
