"""The `chatwax` command: up, dataflow, kube, ask, usage, export, forget, ui, local-llm, bench.

Settings come from the environment (see the README's table); flags only say what to run.

The commands live with their code: the production ones in `chatwax.cli.production`, `up`
in `chatwax.dev`, `bench` in `chatwax.bench`, `local-llm` in `chatwax.local`. This module
only puts them together, taking the optional packages where they are installed (the images
drop them). It is the one module every image runs that imports them; an import-linter
contract checks that no other production module does.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable

from chatwax.cli import production
from chatwax.core.console import needs_extra
from chatwax.core.errors import ConfigError
from chatwax.core.natsurl import move_credentials
from chatwax.core.secretfiles import load_secret_files


def _installed(package: str) -> bool:
    """Whether this install carries `package` (the images drop dev, bench and local)."""
    return importlib.util.find_spec(package) is not None


def _not_installed(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
                   summary: str, extra: str) -> None:
    """`name` where its package was dropped: any arguments, and a word on what to install.
    (prefix_chars: no options here, so `--flag`s given for the real command are taken as
    they come instead of refused.)"""
    cmd = sub.add_parser(name, help=summary, add_help=False, prefix_chars="\0")
    cmd.add_argument("given", nargs="*", help=argparse.SUPPRESS)
    cmd.set_defaults(func=_say_needs(extra, f"`chatwax {name}`"))


def _say_needs(extra: str, what: str) -> Callable[[argparse.Namespace], int]:
    """A command function that only says which extra brings `what`."""
    return lambda _args: needs_extra(extra, what)


def build_parser() -> argparse.ArgumentParser:
    """Every command this install has; `up` and `bench` also where it lacks them."""
    parser = argparse.ArgumentParser(
        prog="chatwax",
        description="A stateful chatbot platform on NATS JetStream and Bytewax. "
        "Settings come from environment variables (NATS_URL, OPENAI_API_KEY, "
        "OPENAI_BASE_URL, CHATWAX_MODEL, ...; see the README).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    up_help = "start NATS, the dataflow cluster and the frontend locally"
    if _installed("chatwax.dev"):
        from chatwax.dev import cli as dev_cli

        up = sub.add_parser("up", help=up_help)
        dev_cli.add_arguments(up)
        up.set_defaults(func=dev_cli.up)
    else:  # the images carry no development tools
        _not_installed(sub, "up", up_help, "dev")

    production.add_commands(sub)

    # The dataflow and frontend images drop chatwax.local: no local-llm command there.
    if _installed("chatwax.local"):
        local = sub.add_parser("local-llm", help="serve the packaged local model (SmolLM2) "
                               "over the OpenAI API; `chatwax up` starts it when no key is set")
        from chatwax.local import cli as local_cli

        local_cli.add_arguments(local)
        local.set_defaults(func=local_cli.serve)

    bench_help = "benchmark a local stack (and the tutorial's design)"
    if _installed("chatwax.bench"):
        from chatwax.bench import cli as bench_cli

        bench = sub.add_parser("bench", help=bench_help)
        bench_cli.add_arguments(bench)
        bench.set_defaults(func=bench_cli.bench)
    else:
        _not_installed(sub, "bench", bench_help, "bench")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse, bring in the secret files and credentials, run the command: its exit code."""
    args = build_parser().parse_args(argv)
    load_secret_files()  # the chart's pods: secrets come as files (core/secretfiles.py)
    move_credentials(os.environ)  # no password in a NATS_URL that is logged or shown
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"chatwax: configuration error: {exc.message}", file=sys.stderr)
        return 2
