"""The local model's HTTP side: OpenAI chat completions (streamed or not), models, health.

One model instance generates for one request at a time, in a worker thread; requests queue
in arrival order, and past `max_queue` waiting the server answers 429 so callers back off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from chatwax.local.model import (
    DEFAULT_MAX_TOKENS,
    MODEL_ALIAS,
    ChatRequest,
    LocalModel,
    RequestError,
    Usage,
    parse_request,
)

# What the generating thread hands the event loop: a (delta, finish reason, usage) step, the
# error that ended generation, or None when it finished.
Item = tuple[str, str | None, Usage] | BaseException | None


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


