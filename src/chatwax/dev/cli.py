"""`chatwax up`: the whole platform on one machine (NATS, the dataflow cluster, the pages
and, with no API key, the local model), as its own package registers it with `chatwax`."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from chatwax.core.console import needs_extra, setup_logging
from chatwax.core.errors import ConfigError
from chatwax.core.natsurl import move_credentials
from chatwax.core.settings import Settings
from chatwax.core.units import parse_duration, parse_size
from chatwax.dev.options import DEFAULTS, StackOptions
from chatwax.dev.signin import MODES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `chatwax up`: sizes, ports, NATS, sign-in, the LLM, retention. Their
    defaults are `StackOptions`' (`DEFAULTS`); each flag's destination is its option."""
    parser.set_defaults(**{name: DEFAULTS[name] for name in (*FROM_FLAGS, "nats_auth")})
    parser.add_argument("--processes", type=int, help="bytewax processes (default %(default)s)")
    parser.add_argument("--workers", type=int, help="workers per process (default %(default)s)")
    parser.add_argument("--no-ui", dest="ui", action="store_false",
                        help="do not start the Streamlit frontend")
    parser.add_argument("--data-dir", type=Path,
                        help="JetStream and recovery data (default %(default)s)")
    parser.add_argument("--nats-port", type=int)
    parser.add_argument("--nats-url", dest="external_nats", metavar="NATS_URL",
                        help="use this NATS (JetStream on) instead of starting one; "
                        "its credentials from NATS_USER/NATS_PASSWORD")
    parser.add_argument("--nats-monitor-port", type=int)
    parser.add_argument("--cluster-port", type=int,
                        help="first bytewax process port; process i uses this + i")
    parser.add_argument("--metrics-port", type=int,
                        help="first metrics port; process i serves /metrics on this + i")
    parser.add_argument("--health-port", type=int,
                        help="first health port; process i serves /readyz and /livez on this + i")
    parser.add_argument("--ui-port", type=int)
    parser.add_argument("--snapshot-interval", type=int,
                        help="seconds between recovery snapshots (default %(default)s)")
    parser.add_argument("--with-prometheus", dest="prometheus", action="store_true",
                        help="also run a local Prometheus (Debian package `prometheus`) scraping "
                        "every dataflow process")
    parser.add_argument("--prometheus-port", type=int)
    parser.add_argument("--nats-auth", action="store_true",
                        help="require NATS user/password (made once, kept in the data dir); "
                        "the CLI uses NATS_USER=operator and its NATS_PASSWORD")
    parser.add_argument("--auth", choices=MODES,
                        help="sign-in on the pages: none (open mode, anyone picks a user id) "
                        "or oidc (OpenID Connect; provider from CHATWAX_OIDC_* or --auth-file); "
                        "default CHATWAX_AUTH, else none. oidc also turns the tutorial's "
                        "`prompts` subject off unless CHATWAX_COMPAT_SUBJECT is set")
    parser.add_argument("--auth-file",
                        help="NAME=value lines of CHATWAX_OIDC_*/CHATWAX_AUTH_* "
                        "settings (they win over the environment)")
    parser.add_argument("--llm",
                        help="local (the packaged SmolLM2 model), openai (OPENAI_API_KEY and "
                        "OPENAI_BASE_URL as set), or an OpenAI-compatible base URL; default "
                        "%(default)s: local when neither variable is set")
    parser.add_argument("--llm-port", type=int, help="port of the local model server")
    parser.add_argument("--transcript-max-age",
                        help="keep transcripts this long: 90d, 12h, ... (0: forever); default "
                        "CHATWAX_TRANSCRIPT_MAX_AGE, else 90 days. Applied to the stream at start, "
                        "also when it exists")
    parser.add_argument("--transcript-max-bytes",
                        help="bound the transcripts stream: 500MB, 10GiB, ... (0: no bound); the "
                        "oldest go first; default CHATWAX_TRANSCRIPT_MAX_BYTES, else none")
    parser.add_argument("--no-restart", dest="restart", action="store_false",
                        help="stop the stack when a dataflow process dies instead of restarting "
                        "the dataflow cluster")


FROM_FLAGS = (
    "processes", "workers", "ui", "data_dir", "nats_port", "external_nats", "nats_monitor_port",
    "cluster_port", "metrics_port", "health_port", "ui_port", "snapshot_interval",
    "prometheus", "prometheus_port", "llm", "llm_port", "restart",
)
"""The options `chatwax up`'s flags set as they are; `nats_auth`, `auth`, `auth_file` and
`extra_env` are worked out from flags and the environment."""


def stack_options(args: argparse.Namespace, settings: Settings) -> StackOptions:
    """What the flags ask for; `--auth` defaults to the environment's CHATWAX_AUTH."""
    extra_env = {}
    if args.transcript_max_age is not None:
        extra_env["CHATWAX_TRANSCRIPT_MAX_AGE"] = str(
            parse_duration(args.transcript_max_age, "--transcript-max-age"))
    if args.transcript_max_bytes is not None:
        extra_env["CHATWAX_TRANSCRIPT_MAX_BYTES"] = str(
            parse_size(args.transcript_max_bytes, "--transcript-max-bytes"))
    auth = args.auth or settings.auth
    return StackOptions(
        **{name: getattr(args, name) for name in FROM_FLAGS},
        # Sign-in on the pages means NATS must tell the frontend from the operator.
        nats_auth=args.nats_auth or (auth == "oidc" and not args.external_nats),
        auth=auth, auth_file=Path(args.auth_file) if args.auth_file else None,
        extra_env=extra_env,
    )


def up(args: argparse.Namespace) -> int:
    """Start the stack, say where everything listens, and keep it running until Ctrl-C."""
    # Imported here: every `chatwax` command loads this module to build its parser.
    try:
        from chatwax.dev.stack import Stack
    except ImportError:  # an install without the pages or the local model
        return needs_extra("dev", "`chatwax up`")

    if args.external_nats:  # its credentials go where NATS_USER/NATS_PASSWORD are read
        given = {"NATS_URL": args.external_nats}
        move_credentials(given)
        args.external_nats = given.pop("NATS_URL")
        for name, value in given.items():
            os.environ.setdefault(name, value)
    settings = Settings.from_env()
    setup_logging(settings.log_level)
    opts = stack_options(args, settings)
    try:
        stack = Stack(opts)
    except ConfigError as exc:
        print(f"chatwax: {exc}", file=sys.stderr)
        return 2
    if stack.llm.kind == "local" and args.llm == "auto":
        print("chatwax: no OPENAI_API_KEY / OPENAI_BASE_URL set: answering with the local "
              "model (--llm openai|<base URL> to choose another)", file=sys.stderr)
    # Ctrl-C stops the stack even where SIGINT came in ignored (a shell starts background
    # jobs that way): without this, `kill -INT` would leave the stack running.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        stack.start()
    except (ConfigError, RuntimeError) as exc:
        print(f"chatwax: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    except KeyboardInterrupt:
        stack.stop()
        return 0
    print(stack.describe(), flush=True)
    return stack.supervise()
