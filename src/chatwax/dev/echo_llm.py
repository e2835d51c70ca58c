"""A deterministic OpenAI-compatible server: for tests, demos without a model, benchmarks.

It answers `echo: <last user message>` through `/v1/chat/completions` (plain or SSE
streaming with usage), so every byte a client sees can be predicted. A "token" here is a
whitespace-separated word: input tokens are the words of all messages, output tokens the
words of the answer, and each streamed chunk carries one word.

Faults are injected per request by directives in the last user message (stripped from the
echo): `[[429xN]]`, `[[500xN]]`, `[[hangxN]]` fail the first N attempts of that exact
request; `[[500]]` always fails; `[[hang]]` never answers; `[[cut]]` drops the connection
half-way through the stream; `[[slow:MS]]` waits before the first token;
`[[tokens:N]]` answers exactly N words; `[[garbage]]` streams a chunk that is not JSON.

Summary requests (the summarizer's system prompt) take no directives: they answer
`summary: ` and the words of the folded user prompts, after `summary_latency_s`, or fail
with a 500 while `summary_fail` is set. With `send_usage` off the server reports no usage,
like several real servers; `/extras/tokenize/count` counts words, as llama-cpp-python's
server counts tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError

from chatwax.client.loopthread import LoopThread
from chatwax.core.summary import SUMMARIZER_MARK

_DIRECTIVE = re.compile(r"\[\[(\d{3}|[a-z]+)(?:x(\d+)|:(\d+))?\]\]")
KNOWN = frozenset({"429", "500", "hang", "cut", "garbage", "slow", "tokens"})


@dataclass
class Knobs:
    latency_s: float = 0.0
    tokens_per_s: float = 0.0
    answer_tokens_max: int = 200
    pad_to: int = 0
    send_usage: bool = True
    """False: no usage in any answer (streamed or not)."""
    summary_latency_s: float = 0.0
    summary_fail: bool = False


@dataclass
class Plan:
    """What to do for one attempt, read from the last user message."""

    text: str
    fail_status: int | None = None
    hang: bool = False
    cut: bool = False
    garbage: bool = False
    slow_s: float = 0.0
    tokens: int | None = None


def words(text: str) -> list[str]:
    return text.split()


def count_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(len(words(str(m.get("content") or ""))) for m in messages)


def plan_for(last_user: str, attempt: int) -> Plan:
    """Parse directives; `attempt` is 1 for the first try of this exact request."""
    plan = Plan(text="")
    kept: list[str] = []
    pos = 0
    for m in _DIRECTIVE.finditer(last_user):
        name, times, value = m.group(1), m.group(2), m.group(3)
        if name not in KNOWN:
            continue
        kept.append(last_user[pos:m.start()])
        pos = m.end()
        active = times is None or attempt <= int(times)
        if name in ("429", "500") and active:
            plan.fail_status = plan.fail_status or int(name)
        elif name == "hang" and active:
            plan.hang = True
        elif name == "cut" and active:
            plan.cut = True
        elif name == "garbage" and active:
            plan.garbage = True
        elif name == "slow" and value:
            plan.slow_s = int(value) / 1000
        elif name == "tokens" and value:
            plan.tokens = int(value)
    kept.append(last_user[pos:])
    plan.text = " ".join("".join(kept).split())
    return plan


def is_summary(messages: list[dict[str, Any]]) -> bool:
    return bool(messages) and str(messages[0].get("content") or "").startswith(SUMMARIZER_MARK)


def summary_words(messages: list[dict[str, Any]]) -> list[str]:
    """`summary:` and the words of every folded user prompt (and of the last summary)."""
    body = str(messages[-1].get("content") or "")
    kept = [line.removeprefix("User: ") for line in body.splitlines()
            if line.startswith("User: ")]
    previous = body.split("\n\n", 1)[0].splitlines()[1:] if body.startswith("Summary so far:") \
        else []
    return ["summary:", *(w for line in [*previous, *kept] for w in words(line)
                          if w != "summary:")]


def answer_words(plan: Plan, knobs: Knobs, max_tokens: int | None) -> list[str]:
    out = ["echo:", *words(plan.text)]
    if plan.tokens is not None:
        out = (out * (plan.tokens // max(len(out), 1) + 1))[: plan.tokens]
    elif knobs.pad_to > 0:
        out = (out + ["lorem"] * knobs.pad_to)[: knobs.pad_to]
    limit = knobs.answer_tokens_max
    if max_tokens:
        limit = min(limit, max_tokens)
    return out[: max(limit, 1)]


@dataclass
class EchoLLM:
    model: str = "echo-1"
    knobs: Knobs = field(default_factory=Knobs)
    log: list[dict[str, Any]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("prompt_tokens", "completion_tokens", "total_tokens", "requests_ok"), 0))
    _runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_post("/_control", self.control)
        app.router.add_get("/_test/requests", self.requests)
        app.router.add_post("/_test/reset", self.reset)
        app.router.add_get("/_test/usage", self.usage)
        app.router.add_post("/extras/tokenize/count", self.tokenize_count)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        # A short shutdown timeout: hung requests ([[hang]]) are cancelled, not awaited.
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=4096)
        await site.start()
        server = site._server  # the bound socket tells the real port when port=0
        assert server is not None
        return int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- handlers -----------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "chatwax"}]})

    async def control(self, request: web.Request) -> web.Response:
        for k, v in (await request.json()).items():
            if hasattr(self.knobs, k):
                setattr(self.knobs, k, type(getattr(self.knobs, k))(v))
        return web.json_response(vars(self.knobs))

    async def requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.log)

    async def reset(self, request: web.Request) -> web.Response:
        self.log.clear()
        self.attempts.clear()
        for k in self.totals:
            self.totals[k] = 0
        return web.json_response({"ok": True})

    async def usage(self, request: web.Request) -> web.Response:
        return web.json_response(self.totals)

    async def tokenize_count(self, request: web.Request) -> web.Response:
        """llama-cpp-python's token count endpoint, in words."""
        body = await request.json()
        return web.json_response({"count": len(words(str(body.get("input") or "")))})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        messages: list[dict[str, Any]] = body.get("messages") or []
        model = body.get("model") or self.model
        key = hashlib.sha256(json.dumps([model, messages], sort_keys=True).encode()).hexdigest()
        attempt = self.attempts.get(key, 0) + 1
        self.attempts[key] = attempt
        last_user = next((str(m.get("content") or "") for m in reversed(messages)
                          if m.get("role") == "user"), "")
        summary = is_summary(messages)
        plan = Plan(text="") if summary else plan_for(last_user, attempt)
        if summary and self.knobs.summary_fail:
            plan.fail_status = 500
        entry: dict[str, Any] = {"messages": messages, "model": model,
                                 "stream": bool(body.get("stream")), "status": 200,
                                 "usage": None, "attempt_key": key, "summary": summary,
                                 "max_tokens": body.get("max_completion_tokens")
                                 or body.get("max_tokens"),
                                 "received_at": time.time()}
        self.log.append(entry)
        if plan.fail_status is not None:
            entry["status"] = plan.fail_status
            kind = "rate_limit_exceeded" if plan.fail_status == 429 else "server_error"
            return web.json_response(
                {"error": {"message": f"injected {plan.fail_status}", "type": kind,
                           "code": kind}},
                status=plan.fail_status, headers={"retry-after": "0"},
            )
        if plan.hang:
            entry["status"] = 0
            await asyncio.sleep(3600)
        delay = self.knobs.summary_latency_s if summary else self.knobs.latency_s + plan.slow_s
        if delay:
            await asyncio.sleep(delay)
        out = answer_words(plan, self.knobs, entry["max_tokens"])
        if summary:
            out = summary_words(messages)[: entry["max_tokens"] or None]
        usage = {"prompt_tokens": count_tokens(messages), "completion_tokens": len(out)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        cid = f"chatcmpl-{uuid.uuid4().hex[:16]}"
        created = int(time.time())
        if not body.get("stream"):
            self._count(entry, usage)
            return web.json_response({
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop", "message":
                             {"role": "assistant", "content": " ".join(out)}}],
                **({"usage": usage} if self.knobs.send_usage else {}),
            })
        try:
            return await self._stream(request, entry, cid, created, model, out, usage, plan,
                                      bool((body.get("stream_options") or {}).get("include_usage")))
        except (ConnectionResetError, ClientConnectionResetError):
            entry["status"] = 0  # the client went away mid-stream (e.g. a killed process)
            return web.Response(status=499)

    async def _stream(self, request: web.Request, entry: dict[str, Any], cid: str,
                      created: int, model: str, out: list[str], usage: dict[str, int],
                      plan: Plan, include_usage: bool) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        head = f'{{"id":"{cid}","object":"chat.completion.chunk","created":{created},' \
               f'"model":{json.dumps(model)},"choices":'

        def chunk(choices: str, extra: str = "") -> bytes:
            return f"data: {head}{choices}{extra}}}\n\n".encode()

        await resp.write(chunk('[{"index":0,"delta":{"role":"assistant","content":""},'
                               '"finish_reason":null}]'))
        if plan.garbage:
            entry["status"] = 0
            await resp.write(b"data: {this is not json\n\n")
            await resp.write_eof()
            return resp
        gap = 1 / self.knobs.tokens_per_s if self.knobs.tokens_per_s > 0 else 0.0
        stop_at = len(out) // 2 if plan.cut else len(out)
        for i, word in enumerate(out[:stop_at]):
            text = word if i == len(out) - 1 else word + " "
            await resp.write(chunk(f'[{{"index":0,"delta":{{"content":{json.dumps(text)}}},'
                                   '"finish_reason":null}]'))
            if gap:
                await asyncio.sleep(gap)
        if plan.cut:
            entry["status"] = 0
            if request.transport is not None:
                request.transport.close()
            return resp
        await resp.write(chunk('[{"index":0,"delta":{},"finish_reason":"stop"}]'))
        if include_usage and self.knobs.send_usage:
            await resp.write(chunk("[]", f',"usage":{json.dumps(usage)}'))
        await resp.write(b"data: [DONE]\n\n")
        self._count(entry, usage)
        await resp.write_eof()
        return resp

    def _count(self, entry: dict[str, Any], usage: dict[str, int]) -> None:
        entry["usage"] = usage
        entry["finished_at"] = time.time()
        for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
            self.totals[k] += usage[k]
        self.totals["requests_ok"] += 1


class Handle:
    """An EchoLLM running on its own thread and event loop, for tests."""

    def __init__(self, server: EchoLLM, loop: asyncio.AbstractEventLoop, port: int) -> None:
        self.server, self.loop, self.port = server, loop, port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _on_loop(self, fn: Any) -> Any:
        async def run() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def requests(self) -> list[dict[str, Any]]:
        return self._on_loop(lambda: json.loads(json.dumps(self.server.log)))

    def usage(self) -> dict[str, int]:
        return self._on_loop(lambda: dict(self.server.totals))

    def reset(self) -> None:
        def clear() -> None:
            self.server.log.clear()
            self.server.attempts.clear()
            for k in self.server.totals:
                self.server.totals[k] = 0
        self._on_loop(clear)

    def set(self, **knobs: Any) -> None:
        def apply() -> None:
            for k, v in knobs.items():
                setattr(self.server.knobs, k, v)
        self._on_loop(apply)


@contextlib.contextmanager
def serve_in_thread(host: str = "127.0.0.1", port: int = 0, model: str = "echo-1",
                    **knobs: Any) -> Iterator[Handle]:
    server = EchoLLM(model=model, knobs=Knobs(**knobs))
    thread = LoopThread("echo-llm")
    real_port = thread.call(server.start(host, port))
    try:
        yield Handle(server, thread.loop, real_port)
    finally:
        thread.call(server.stop())
        thread.call(_cancel_rest())
        thread.stop()


async def _cancel_rest() -> None:
    """Cancel what is still pending (hung requests) so the loop stops cleanly."""
    me = asyncio.current_task()
    rest = [t for t in asyncio.all_tasks() if t is not me]
    for t in rest:
        t.cancel()
    await asyncio.gather(*rest, return_exceptions=True)


async def _main(args: argparse.Namespace) -> None:
    server = EchoLLM(model=args.model, knobs=Knobs(
        latency_s=args.latency, tokens_per_s=args.tokens_per_s,
        answer_tokens_max=args.answer_tokens_max, pad_to=args.pad_to))
    port = await server.start(args.host, args.port)
    print(f"echo-llm listening on http://{args.host}:{port}/v1", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m chatwax.dev.echo_llm",
                                description="Deterministic OpenAI-compatible echo server.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--model", default="echo-1")
    p.add_argument("--latency", type=float, default=0.0, help="seconds before the first token")
    p.add_argument("--tokens-per-s", type=float, default=0.0, help="0 streams at full speed")
    p.add_argument("--answer-tokens-max", type=int, default=200)
    p.add_argument("--pad-to", type=int, default=0, help="pad answers to this many words")
    asyncio.run(_main(p.parse_args(argv)))


if __name__ == "__main__":
    main()
