"""The `chatwax` command: up, dataflow, ask, usage, export, forget, ui, bench.

Settings come from the environment (see the README's table); flags only say what to run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import signal
import sys
from pathlib import Path

from chatwax.core.errors import ChatwaxError, ConfigError
from chatwax.core.natsurl import move_credentials
from chatwax.core.protocol import ChunkEvent, ErrorEvent, FinalEvent
from chatwax.core.secretfiles import load_secret_files
from chatwax.core.settings import Settings
from chatwax.core.units import parse_duration, parse_size

log = logging.getLogger("chatwax")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per HTTP request to the LLM is noise at INFO; failures are logged by chatwax.
    for noisy in ("httpx", "httpx2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# -- chatwax up ---------------------------------------------------------------------


def _needs(extra: str, what: str) -> None:
    print(f"chatwax: {what} is not in this install: pip install 'chatwax[{extra}]'",
          file=sys.stderr)


def cmd_up(args: argparse.Namespace) -> int:
    try:
        from chatwax.dev.stack import Stack, StackOptions
    except ImportError:  # the dataflow image carries no development tools
        _needs("dev", "`chatwax up`")
        return 2

    if args.nats_url:  # its credentials go where NATS_USER/NATS_PASSWORD are read
        given = {"NATS_URL": args.nats_url}
        move_credentials(given)
        args.nats_url = given.pop("NATS_URL")
        for name, value in given.items():
            os.environ.setdefault(name, value)
    settings = Settings.from_env()
    _setup_logging(settings.log_level)
    extra_env = {}
    if args.transcript_max_age is not None:
        extra_env["CHATWAX_TRANSCRIPT_MAX_AGE"] = str(
            parse_duration(args.transcript_max_age, "--transcript-max-age"))
    if args.transcript_max_bytes is not None:
        extra_env["CHATWAX_TRANSCRIPT_MAX_BYTES"] = str(
            parse_size(args.transcript_max_bytes, "--transcript-max-bytes"))
    opts = StackOptions(
        processes=args.processes, workers=args.workers, ui=not args.no_ui,
        data_dir=Path(args.data_dir), nats_port=args.nats_port,
        nats_monitor_port=args.nats_monitor_port, cluster_port=args.cluster_port,
        metrics_port=args.metrics_port, health_port=args.health_port, ui_port=args.ui_port,
        snapshot_interval=args.snapshot_interval, prometheus=args.with_prometheus,
        prometheus_port=args.prometheus_port, restart=not args.no_restart,
        # Sign-in on the pages means NATS must tell the frontend from the operator.
        nats_auth=args.nats_auth or ((args.auth or settings.auth) == "oidc"
                                     and not args.nats_url),
        llm=args.llm, llm_port=args.llm_port,
        external_nats=args.nats_url, auth=args.auth or settings.auth,
        auth_file=Path(args.auth_file) if args.auth_file else None, extra_env=extra_env,
    )
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


# -- chatwax dataflow ---------------------------------------------------------------


def cmd_dataflow(args: argparse.Namespace) -> int:
    """Run one bytewax process of the cluster, as a pod does (bytewax's env decides)."""
    from chatwax.dataflow.process import run

    settings = Settings.from_env()
    _setup_logging(settings.log_level)
    return run(settings, os.environ)


# -- chatwax kube -------------------------------------------------------------------


def cmd_kube_rollout(args: argparse.Namespace) -> int:
    """The chart's post-upgrade hook: restart the dataflow's pods together if needed."""
    from chatwax.kube.api import connect
    from chatwax.kube.rollout import Rollout

    _setup_logging("INFO")
    try:
        outcome = Rollout(connect(), args.namespace, args.statefulset).run(
            args.timeout, wait=not args.no_wait)
    except TimeoutError as exc:
        print(f"chatwax kube rollout: {exc}", file=sys.stderr)
        return 1
    print(f"{args.statefulset}: revision {outcome.update_revision}; restarted "
          f"{len(outcome.restarted)} pod(s) in {outcome.waited_s:.1f}s", flush=True)
    return 0


def cmd_kube_ensure_secret(args: argparse.Namespace) -> int:
    """The chart's pre-install hook: a Secret of generated values that never change."""
    from chatwax.kube.api import connect
    from chatwax.kube.secrets import ensure_secret

    _setup_logging("INFO")
    labels = dict(item.split("=", 1) for item in args.label)
    added = ensure_secret(connect(), args.namespace, args.name, args.key, labels)
    print(f"Secret {args.name}: {len(added)} key(s) added, {len(args.key) - len(added)} kept",
          flush=True)
    return 0


# -- chatwax ask --------------------------------------------------------------------


async def _ask(settings: Settings, user: str, conversation: str, text: str,
               timeout: float) -> int:
    from chatwax.client.chat import ChatClient

    client = await ChatClient.connect(settings, name="chatwax-ask")
    shown = 0
    try:
        events = client.ask(user, conversation, text, timeout=timeout)
        async for event in events:
            if isinstance(event, ChunkEvent):
                if event.index == 0 and shown:
                    sys.stdout.write("\n[retrying]\n")
                sys.stdout.write(event.delta)
                sys.stdout.flush()
                shown += 1
            elif isinstance(event, FinalEvent):
                if not shown:
                    sys.stdout.write(event.text)
                sys.stdout.write("\n")
                u = event.usage
                print(f"[{event.model} · turn {event.turn} · {u.input_tokens} in / "
                      f"{u.output_tokens} out tokens · {event.latency_ms:.0f} ms]",
                      file=sys.stderr)
                return 0
            elif isinstance(event, ErrorEvent):
                if shown:
                    sys.stdout.write("\n")
                print(f"chatwax: error ({event.code.value}): {event.message}", file=sys.stderr)
                return 1
    finally:
        await events.aclose()
        await client.close()
    return 1


def cmd_ask(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    conversation = args.conversation or f"{args.user}-cli"
    try:
        return asyncio.run(_ask(settings, args.user, conversation, " ".join(args.text),
                                args.timeout))
    except ChatwaxError as exc:
        print(f"chatwax: error ({exc.code.value}): {exc.message}", file=sys.stderr)
        return 2 if exc.code.value == "llm_timeout" else 1


# -- chatwax usage ------------------------------------------------------------------


async def _usage(settings: Settings, since: str, by: str) -> int:
    from chatwax.client.chat import ChatClient
    from chatwax.client.transcripts import read_transcripts
    from chatwax.core.usage import aggregate, format_table, parse_since

    window = parse_since(since)
    client = await ChatClient.connect(settings, name="chatwax-usage")
    try:
        transcripts = await read_transcripts(client.js, window)
    finally:
        await client.close()
    print(format_table(aggregate(transcripts, by), by))  # type: ignore[arg-type]
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_usage(Settings.from_env(), args.since, args.by))
    except ChatwaxError as exc:
        print(f"chatwax: {exc.message}", file=sys.stderr)
        return 1


# -- chatwax export / forget ---------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    from chatwax.client.commands import run_export

    settings = Settings.from_env()
    _setup_logging(settings.log_level)
    # Transcripts are everyone's conversations: the partial file and the export it is
    # renamed to are the owner's alone (0600), whatever the umask.
    umask = os.umask(0o077)
    try:
        return asyncio.run(run_export(settings, Path(args.out), args.format, args.since,
                                      args.until, args.user, args.min_turns, args.scrub_pii))
    finally:
        os.umask(umask)


def cmd_forget(args: argparse.Namespace) -> int:
    from chatwax.client.commands import run_forget

    settings = Settings.from_env()
    _setup_logging(settings.log_level)
    return asyncio.run(run_forget(settings, args.user, args.timeout))


# -- chatwax ui ---------------------------------------------------------------------


def cmd_ui(args: argparse.Namespace) -> int:
    """The Streamlit pages, with sign-in when CHATWAX_AUTH=oidc (what the frontend runs)."""
    if importlib.util.find_spec("streamlit") is None:
        _needs("ui", "`chatwax ui`")
        return 2
    from chatwax.frontend import launch

    extra = args.streamlit_args[1:] if args.streamlit_args[:1] == ["--"] else \
        args.streamlit_args
    secrets_dir = Path(args.secrets_dir) if args.secrets_dir else None
    launch.run(args.port, args.address, args.base_url_path, secrets_dir, extra)


# -- chatwax bench ------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> int:
    try:
        from chatwax.bench.harness import main as bench
    except ImportError:
        _needs("bench", "`chatwax bench`")
        return 2

    logging.basicConfig(level=logging.WARNING)
    duration, restart, export, sustained = (
        (5.0, 100_000, 0, 10.0) if args.quick  # a development loop: short runs, no export
        else (args.duration, args.restart_conversations, args.export_conversations, None))
    return bench(duration, args.latency, args.tokens, args.only, Path(args.out), restart,
                 export, args.profile, args.before, sustained)


# -- parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatwax",
        description="A stateful chatbot platform on NATS JetStream and Bytewax. "
        "Settings come from environment variables (NATS_URL, OPENAI_API_KEY, "
        "OPENAI_BASE_URL, CHATWAX_MODEL, ...; see the README).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start NATS, the dataflow cluster and the frontend locally")
    up.add_argument("--processes", type=int, default=2, help="bytewax processes (default 2)")
    up.add_argument("--workers", type=int, default=1, help="workers per process (default 1)")
    up.add_argument("--no-ui", action="store_true", help="do not start the Streamlit frontend")
    up.add_argument("--data-dir", default=".chatwax",
                    help="JetStream and recovery data (default .chatwax)")
    up.add_argument("--nats-port", type=int, default=4222)
    up.add_argument("--nats-url", help="use this NATS (JetStream on) instead of starting one; "
                    "its credentials from NATS_USER/NATS_PASSWORD")
    up.add_argument("--nats-monitor-port", type=int, default=8222)
    up.add_argument("--cluster-port", type=int, default=2101,
                    help="first bytewax process port; process i uses this + i")
    up.add_argument("--metrics-port", type=int, default=3030,
                    help="first metrics port; process i serves /metrics on this + i")
    up.add_argument("--health-port", type=int, default=8080,
                    help="first health port; process i serves /readyz and /livez on this + i")
    up.add_argument("--ui-port", type=int, default=8501)
    up.add_argument("--snapshot-interval", type=int, default=5,
                    help="seconds between recovery snapshots (default 5)")
    up.add_argument("--with-prometheus", action="store_true",
                    help="also run a local Prometheus (Debian package `prometheus`) scraping "
                    "every dataflow process")
    up.add_argument("--prometheus-port", type=int, default=9090)
    up.add_argument("--nats-auth", action="store_true",
                    help="require NATS user/password (made once, kept in the data dir); "
                    "the CLI uses NATS_USER=operator and its NATS_PASSWORD")
    up.add_argument("--auth", choices=["none", "oidc"],
                    help="sign-in on the pages: none (open mode, anyone picks a user id) or oidc "
                    "(OpenID Connect; provider from CHATWAX_OIDC_* or --auth-file); default "
                    "CHATWAX_AUTH, else none. oidc also turns the tutorial's `prompts` subject "
                    "off unless CHATWAX_COMPAT_SUBJECT is set")
    up.add_argument("--auth-file", help="NAME=value lines of CHATWAX_OIDC_*/CHATWAX_AUTH_* "
                    "settings (they win over the environment)")
    up.add_argument("--llm", default="auto",
                    help="local (the packaged SmolLM2 model), openai (OPENAI_API_KEY and "
                    "OPENAI_BASE_URL as set), or an OpenAI-compatible base URL; default auto: "
                    "local when neither variable is set")
    up.add_argument("--llm-port", type=int, default=8400, help="port of the local model server")
    up.add_argument("--transcript-max-age",
                    help="keep transcripts this long: 90d, 12h, ... (0: forever); default "
                    "CHATWAX_TRANSCRIPT_MAX_AGE, else 90 days. Applied to the stream at start, "
                    "also when it exists")
    up.add_argument("--transcript-max-bytes",
                    help="bound the transcripts stream: 500MB, 10GiB, ... (0: no bound); the "
                    "oldest go first; default CHATWAX_TRANSCRIPT_MAX_BYTES, else none")
    up.add_argument("--no-restart", action="store_true",
                    help="stop the stack when a dataflow process dies instead of restarting "
                    "the dataflow cluster")
    up.set_defaults(func=cmd_up)

    df = sub.add_parser("dataflow", help="run one dataflow process (what a pod runs); "
                        "BYTEWAX_* variables place it in the cluster")
    df.set_defaults(func=cmd_dataflow)

    kube = sub.add_parser("kube", help="Kubernetes operations the Helm chart's hooks run")
    kube_sub = kube.add_subparsers(dest="kube_command", required=True)
    rollout = kube_sub.add_parser(
        "rollout", help="restart every pod of the dataflow StatefulSet together when any runs "
        "an older pod template (the chart's post-upgrade hook)")
    rollout.add_argument("--namespace", required=True)
    rollout.add_argument("--statefulset", required=True)
    rollout.add_argument("--timeout", type=float, default=600.0,
                         help="seconds to wait for the pods to be ready (default 600)")
    rollout.add_argument("--no-wait", action="store_true",
                         help="return once the pods are deleted, without waiting for them")
    rollout.set_defaults(func=cmd_kube_rollout)
    secret = kube_sub.add_parser(
        "ensure-secret", help="create a Secret of random values, add missing keys, never "
        "change a value (the chart's pre-install hook for generated passwords)")
    secret.add_argument("--namespace", required=True)
    secret.add_argument("--name", required=True)
    secret.add_argument("--key", action="append", required=True, help="a key to hold")
    secret.add_argument("--label", action="append", default=[], help="key=value label")
    secret.set_defaults(func=cmd_kube_ensure_secret)

    ask = sub.add_parser("ask", help="send one prompt and stream the answer (NATS_URL says where)")
    ask.add_argument("--user", required=True, help="user id (letters, digits, _ and -)")
    ask.add_argument("--conversation", help="conversation id (default: <user>-cli)")
    ask.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    ask.add_argument("text", nargs="+", help="the prompt")
    ask.set_defaults(func=cmd_ask)

    usage = sub.add_parser("usage", help="token usage and cost from the transcripts stream")
    usage.add_argument("--since", default="24h", help="window: 30m, 24h, 7d, ... or all")
    usage.add_argument("--by", choices=["user", "model", "conversation"], default="user")
    usage.set_defaults(func=cmd_usage)

    exit_codes = ("exit codes: 0 done, 1 failed, 2 bad arguments, 3 NATS unreachable, "
                  "4 output not writable, 5 not confirmed by the dataflow in time")
    exp = sub.add_parser(
        "export", help="write transcripts to a file for fine-tuning or analysis",
        description="Read the transcripts stream a conversation at a time (constant memory) "
        "and write OUT: openai-jsonl is one conversation per line in OpenAI's chat "
        "fine-tuning format (system prompt from CHATWAX_SYSTEM_PROMPT); jsonl is one stored "
        "record (turn or summary) per line with its usage. OUT appears only when complete.",
        epilog=exit_codes)
    exp.add_argument("--format", choices=["openai-jsonl", "jsonl"], default="openai-jsonl")
    exp.add_argument("--since", help="turns stored from: 24h, 7d, ... back, or an ISO date/time")
    exp.add_argument("--until", help="turns stored before: a span back or an ISO date/time")
    exp.add_argument("--user", help="only this user's conversations")
    exp.add_argument("--min-turns", type=int, default=1,
                     help="leave out conversations with fewer turns in the window (default 1)")
    exp.add_argument("--scrub-pii", action="store_true",
                     help="replace e-mail addresses and phone numbers with [email] and [phone]")
    exp.add_argument("out", help="the file to write")
    exp.set_defaults(func=cmd_export)

    forget = sub.add_parser(
        "forget", help="delete everything of one user: transcripts, prompts, dataflow state",
        description="Tells the dataflow to drop the user's conversations (history, summary, "
        "waiting prompts) and quota window, waits for it to confirm, then purges the user's "
        "transcripts and deletes their stored prompts. Logs an audit line with ids and counts "
        "only. With NATS auth on, run it as NATS_USER=operator.", epilog=exit_codes)
    forget.add_argument("--user", required=True, help="the user id to forget")
    forget.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the dataflow to confirm (default 60)")
    forget.set_defaults(func=cmd_forget)

    # The dataflow and frontend images drop chatwax.local: no local-llm command there.
    if importlib.util.find_spec("chatwax.local") is not None:
        local = sub.add_parser("local-llm", help="serve the packaged local model (SmolLM2) "
                               "over the OpenAI API; `chatwax up` starts it when no key is set")
        from chatwax.local import cli as local_cli

        local_cli.add_arguments(local)
        local.set_defaults(func=local_cli.serve)

    ui = sub.add_parser(
        "ui", help="run the Streamlit pages (what the frontend image and `chatwax up` run); "
        "CHATWAX_AUTH=oidc and the CHATWAX_OIDC_* variables turn sign-in on")
    ui.add_argument("--port", type=int, default=8501)
    ui.add_argument("--address", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)")
    ui.add_argument("--base-url-path", default="",
                    help="serve under this path (Streamlit's server.baseUrlPath)")
    ui.add_argument("--secrets-dir", help="private folder for Streamlit's secrets.toml when "
                    "sign-in is on (default: a new temporary folder)")
    ui.add_argument("streamlit_args", nargs=argparse.REMAINDER,
                    help="after --: more `streamlit run` options")
    ui.set_defaults(func=cmd_ui)

    bench = sub.add_parser("bench", help="benchmark a local stack (and the tutorial's design)")
    bench.add_argument("--duration", type=float, default=15.0, help="seconds per scenario")
    bench.add_argument("--latency", type=float, default=0.5, help="LLM latency in seconds")
    bench.add_argument("--tokens", type=int, default=50, help="tokens per answer")
    bench.add_argument("--only", help="run scenarios whose name contains this "
                       "(`restart` for the restart measurement alone)")
    bench.add_argument("--restart-conversations", type=int, default=1_000_000,
                       help="conversations in recovery for the restart measurement (0: skip)")
    bench.add_argument("--before", metavar="REF",
                       help="also run each scenario with the dataflow of this git commit "
                       "(checked out beside this one), side by side in the table")
    bench.add_argument("--quick", action="store_true",
                       help="a development loop: 5 s per scenario (10 s sustained), a "
                       "100,000-conversation restart, no export")
    bench.add_argument("--export-conversations", type=int, default=20_000,
                       help="conversations (5 turns each) in the stream `--only export` "
                       "exports, and a tenth of that (0: skip)")
    bench.add_argument("--profile", action="store_true",
                       help="record every dataflow process with py-spy during each scenario "
                       "(collapsed stacks in OUT/profiles; `python -m chatwax.bench.profile` "
                       "summarizes them)")
    bench.add_argument("--out", default="artifacts/bench", help="where bench.json/png go")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    load_secret_files()  # the chart's pods: secrets come as files (core/secretfiles.py)
    move_credentials(os.environ)  # no password in a NATS_URL that is logged or shown
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"chatwax: configuration error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
