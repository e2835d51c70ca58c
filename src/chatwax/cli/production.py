"""The commands the images run: `dataflow` (a dataflow pod), `kube` (the chart's hooks),
`ui` (the frontend pod), and `ask`, `usage`, `export`, `forget` (an operator's, against a
running platform).

They import no dev tools, benchmarks or the local model, as an import-linter contract
checks: the images drop those packages. `chatwax.cli` adds `up`, `bench` and `local-llm`
from their own packages where they are installed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
from pathlib import Path

from chatwax.core.console import EXIT_CODES, fail, needs_extra, setup_logging
from chatwax.core.errors import ChatwaxError
from chatwax.core.settings import UI_PORT, Settings


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Every production command, in the order `chatwax --help` lists them."""
    add_dataflow(sub)
    add_kube(sub)
    add_ask(sub)
    add_usage(sub)
    add_export(sub)
    add_forget(sub)
    add_ui(sub)


# -- chatwax dataflow ---------------------------------------------------------------


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


# -- chatwax kube -------------------------------------------------------------------


def cmd_kube_rollout(args: argparse.Namespace) -> int:
    """The chart's post-upgrade hook: restart the dataflow's pods together if needed."""
    from chatwax.kube.api import connect
    from chatwax.kube.rollout import Rollout

    setup_logging("INFO")
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

    setup_logging("INFO")
    labels = dict(item.split("=", 1) for item in args.label)
    added = ensure_secret(connect(), args.namespace, args.name, args.key, labels)
    print(f"Secret {args.name}: {len(added)} key(s) added, {len(args.key) - len(added)} kept",
          flush=True)
    return 0


def add_kube(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`chatwax kube rollout` and `chatwax kube ensure-secret`."""
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


# -- chatwax ask --------------------------------------------------------------------


async def _ask(settings: Settings, user: str, conversation: str, text: str,
               timeout: float) -> int:
    from chatwax.client.chat import ChatClient

    client = await ChatClient.connect(settings, name="chatwax-ask")
    try:
        reply = await client.ask(user, conversation, text, timeout=timeout)
        try:
            async for chunk in reply:
                if chunk.restart:
                    sys.stdout.write("\n[retrying]\n")
                sys.stdout.write(chunk.text)
                sys.stdout.flush()
            answer = await reply.result()
        except ChatwaxError:
            if reply.text:
                sys.stdout.write("\n")
            raise
        finally:
            await reply.close()
        sys.stdout.write("\n")
        u = answer.usage
        print(f"[{answer.model} · turn {answer.turn} · {u.input_tokens} in / "
              f"{u.output_tokens} out tokens · {answer.latency_ms:.0f} ms]", file=sys.stderr)
        return 0
    finally:
        await client.close()


def cmd_ask(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    conversation = args.conversation or f"{args.user}-cli"
    try:
        return asyncio.run(_ask(settings, args.user, conversation, " ".join(args.text),
                                args.timeout))
    except ChatwaxError as exc:
        return fail(exc)


def add_ask(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`chatwax ask`: one prompt, the answer streamed to stdout."""
    ask = sub.add_parser("ask", help="send one prompt and stream the answer (NATS_URL says where)",
                         epilog=EXIT_CODES)
    ask.add_argument("--user", required=True, help="user id (letters, digits, _ and -)")
    ask.add_argument("--conversation", help="conversation id (default: <user>-cli)")
    ask.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    ask.add_argument("text", nargs="+", help="the prompt")
    ask.set_defaults(func=cmd_ask)


# -- chatwax usage ------------------------------------------------------------------


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


# -- chatwax export / forget ---------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    from chatwax.client.commands import run_export

    settings = Settings.from_env()
    setup_logging(settings.log_level)
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


# -- chatwax ui ---------------------------------------------------------------------


def cmd_ui(args: argparse.Namespace) -> int:
    """The Streamlit pages, with sign-in when CHATWAX_AUTH=oidc (what the frontend runs)."""
    if importlib.util.find_spec("streamlit") is None:
        return needs_extra("ui", "`chatwax ui`")
    from chatwax.frontend import launch

    extra = args.streamlit_args[1:] if args.streamlit_args[:1] == ["--"] else \
        args.streamlit_args
    secrets_dir = Path(args.secrets_dir) if args.secrets_dir else None
    launch.run(args.port, args.address, args.base_url_path, secrets_dir, extra)


def add_ui(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`chatwax ui`: the Streamlit pages, with options for a container."""
    ui = sub.add_parser(
        "ui", help="run the Streamlit pages (what the frontend image and `chatwax up` run); "
        "CHATWAX_AUTH=oidc and the CHATWAX_OIDC_* variables turn sign-in on")
    ui.add_argument("--port", type=int, default=UI_PORT,
                    help="port to listen on (default %(default)s)")
    ui.add_argument("--address", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)")
    ui.add_argument("--base-url-path", default="",
                    help="serve under this path (Streamlit's server.baseUrlPath)")
    ui.add_argument("--secrets-dir", help="private folder for Streamlit's secrets.toml when "
                    "sign-in is on (default: a new temporary folder)")
    ui.add_argument("streamlit_args", nargs=argparse.REMAINDER,
                    help="after --: more `streamlit run` options")
    ui.set_defaults(func=cmd_ui)
