"""`chatwax ask`: one prompt, its answer streamed to stdout, the exit code of its outcome."""

from __future__ import annotations

import argparse
import asyncio
import sys

from chatwax.core.console import EXIT_CODES, fail
from chatwax.core.errors import ChatwaxError
from chatwax.core.settings import Settings


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
