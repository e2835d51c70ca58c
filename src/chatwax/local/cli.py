"""`chatwax local-llm`: serve the packaged local model over the OpenAI API."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from chatwax.local.model import (
    DEFAULT_CONTEXT_TOKENS,
    DEFAULT_MAX_TOKENS,
    MODEL_ALIAS,
    LocalModel,
    RequestError,
    model_file,
)

DEFAULT_PORT = 8400
"""Where the local model server listens unless --port says otherwise (`chatwax up` too)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--model", type=Path, help="a GGUF file (default: the packaged SmolLM2)")
    parser.add_argument("--alias", default=MODEL_ALIAS, help="model name clients use")
    parser.add_argument("--context-tokens", type=int, default=DEFAULT_CONTEXT_TOKENS)
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS,
                        help="upper bound on tokens in one answer")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: auto)")
    parser.add_argument("--max-queue", type=int, default=64,
                        help="requests that may wait; more get 429")


def serve(args: argparse.Namespace) -> int:
    try:
        path = args.model or model_file()
        started = time.monotonic()
        model = LocalModel(path, args.context_tokens, args.threads)
    except (RequestError, ImportError) as exc:
        print(f"chatwax local-llm: {exc}", file=sys.stderr)
        return 1
    print(f"chatwax local-llm: {args.alias} loaded from {path} in "
          f"{time.monotonic() - started:.1f}s; serving http://{args.host}:{args.port}/v1",
          flush=True)
    from aiohttp import web

    from chatwax.local.server import Server

    server = Server(model, args.alias, args.max_tokens, args.max_queue)
    web.run_app(server.app(), host=args.host, port=args.port, print=None)
    return 0

