"""The OpenAI-compatible chat client: streaming, usage, timeouts and retries with backoff.

It knows nothing of NATS or Bytewax: it turns messages into a stream of text deltas and
one `Completion`, or raises `LlmError` with a wire error code once retrying is pointless.
Which failures are retried is decided by `chatwax.llm.failures`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import backoff
import certifi
import openai
from openai import AsyncOpenAI

from chatwax.core.errors import ErrorCode, LlmError
from chatwax.core.settings import Settings, secret
from chatwax.core.wire import Usage
from chatwax.llm.failures import (
    CUT_STREAM,
    Attempt,
    Failure,
    HttpStatus,
    RetryReason,
    classify,
)
from chatwax.llm.sse import SseEvents, parse_chunk

log = logging.getLogger(__name__)

NOT_CONFIGURED_MESSAGE: Final = (
    "No LLM is configured. Set OPENAI_API_KEY to use OpenAI, or OPENAI_BASE_URL to use any "
    "OpenAI-compatible server (vLLM, Ollama, llama.cpp, ...), then restart the dataflow."
)


class _Retryable(Exception):
    """An attempt failed in a way that another attempt may fix."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    usage: Usage | None
    """As the server reported it; None when it reported none."""
    model: str
    ttft_s: float | None
    duration_s: float
    attempts: int


OnDelta = Callable[[int, str], Awaitable[None]]
"""Called with (chunk index, text) for each delta; index 0 after a retry means 'start over'."""
OnRetry = Callable[[RetryReason], None]


def proxy_for(url: str) -> str | None:
    """The proxy for `url` from HTTPS_PROXY/HTTP_PROXY/NO_PROXY, as the SDK's client reads
    them: once. aiohttp's `trust_env` looks them (and ~/.netrc) up again on every request,
    in a thread: 4 % of a process's busy samples at 300 prompts/s."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class LlmClient:
    def __init__(self, settings: Settings, on_retry: OnRetry | None = None) -> None:
        self.settings = settings
        self.model = settings.model
        self._on_retry = on_retry
        self._client: AsyncOpenAI | None = None
        self._http: aiohttp.ClientSession | None = None
        self._url = ""
        self._headers: dict[str, str] = {}
        self._proxy: str | None = None
        self._with_retries = self._retrying()
        if settings.llm_configured:
            self._client = AsyncOpenAI(
                # Servers such as vLLM or llama.cpp accept any key; the SDK insists on one.
                api_key=secret(settings.openai_api_key) or "unused",
                base_url=settings.openai_base_url,
                max_retries=0,  # retries are ours, with backoff and metrics
                timeout=openai.Timeout(settings.llm_timeout_s,
                                       connect=settings.llm_connect_timeout_s),
            )
            # The chat request itself goes out on aiohttp with the SDK's URL and headers,
            # taken once: the SDK's per-call request building (option transforms,
            # idempotency keys, header merging) and its HTTP pool's per-request checks of
            # every idle connection were a third of the event loop's busy time at 300
            # prompts/s. The SDK stays the source of the endpoint and its headers (the
            # key, OPENAI_ORG_ID, OPENAI_PROJECT_ID), read through its public attributes;
            # failures are classified from what aiohttp and the server say (`_send`).
            self._url = str(self._client.base_url).rstrip("/") + "/chat/completions"
            self._headers = {k: v for k, v in self._client.default_headers.items()
                             if isinstance(v, str) and k.lower() != "accept-encoding"}
            self._proxy = proxy_for(self._url)

    def _session(self) -> aiohttp.ClientSession:
        """One session per client, made on the event loop that uses it."""
        if self._http is None:
            s = self.settings
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=s.llm_max_concurrency, limit_per_host=0,
                    ssl=ssl.create_default_context(cafile=certifi.where())),
                timeout=aiohttp.ClientTimeout(total=None, connect=s.llm_connect_timeout_s,
                                              sock_read=s.llm_timeout_s),
                headers=self._headers)  # proxy: `proxy_for`, read once
        return self._http

    async def stream(self, messages: list[dict[str, str]], on_delta: OnDelta, *,
                     model: str | None = None, max_tokens: int | None = None) -> Completion:
        """Stream one answer, retrying transient failures within the retry budget.

        `model` and `max_tokens` default to the settings' (summaries use their own).
        """
        if self._client is None:
            raise LlmError(ErrorCode.LLM_NOT_CONFIGURED, NOT_CONFIGURED_MESSAGE)
        tries = [0]
        request = (model or self.settings.model, max_tokens or self.settings.max_output_tokens)
        try:
            return await self._with_retries(messages, on_delta, time.monotonic(), tries,
                                            request)
        except _Retryable as exc:
            raise LlmError(exc.failure.code,
                           f"{exc} (gave up after {tries[0]} attempts)") from None

    def _retrying(self) -> Any:
        """`_attempt` wrapped once in backoff (not per call: this is the hot path)."""
        def on_backoff(details: Any) -> None:
            exc = details.get("exception")
            if isinstance(exc, _Retryable) and exc.failure.retry is not None:
                if self._on_retry is not None:
                    self._on_retry(exc.failure.retry)
                log.info("LLM attempt %d failed (%s); retrying in %.2fs",
                         details["tries"], exc.failure.retry.value, details["wait"])

        return backoff.on_exception(
            backoff.expo, _Retryable, factor=0.25, max_value=8.0, jitter=backoff.full_jitter,
            max_tries=self.settings.retry_max_tries, max_time=self.settings.retry_max_time_s,
            on_backoff=on_backoff, raise_on_giveup=True, logger=None,
        )(self._attempt)

    async def _attempt(
        self, messages: list[dict[str, str]], on_delta: OnDelta, started: float, tries: list[int],
        request: tuple[str, int],
    ) -> Completion:
        tries[0] += 1
        s = self.settings
        requested, max_tokens = request
        body = json.dumps({
            "model": requested, "messages": messages, "temperature": s.temperature,
            "max_tokens": max_tokens, "stream": True, "stream_options": {"include_usage": True},
        }).encode()
        parts: list[str] = []
        usage: Usage | None = None
        model = requested
        ttft: float | None = None
        finished = False
        try:
            async with asyncio.timeout(s.llm_timeout_s):
                response = await self._send(body)
                try:
                    events = SseEvents()
                    async for line in _lines(response):
                        data = events.feed(line)
                        # Read on after [DONE] to the end of the body, so the connection
                        # goes back to the pool instead of being closed half-read.
                        if data is None or data == "[DONE]":
                            continue
                        chunk = parse_chunk(data)
                        usage = chunk.usage or usage
                        model = chunk.model or model
                        for delta in chunk.deltas:
                            if ttft is None:
                                ttft = time.monotonic() - started
                            await on_delta(len(parts), delta)
                            parts.append(delta)
                        finished = finished or chunk.finished
                finally:
                    response.release()
        except Exception as exc:
            failure = classify(exc, Attempt(s.llm_timeout_s, answering=bool(parts)))
            if failure is None:
                raise
            if failure.retry is None:
                raise LlmError(failure.code, failure.message) from None
            raise _Retryable(failure) from None
        if not finished:
            raise _Retryable(CUT_STREAM)
        return Completion("".join(parts), usage, model, ttft, time.monotonic() - started,
                          tries[0])

    async def _send(self, body: bytes) -> aiohttp.ClientResponse:
        """POST the chat request; an error status becomes `HttpStatus` with the server's
        message. aiohttp's timeouts and connection errors pass through as they are:
        `chatwax.llm.failures` classifies them."""
        response = await self._session().post(self._url, data=body, proxy=self._proxy)
        if response.status >= 400:
            content = await response.read()
            response.release()
            raise HttpStatus(response.status, error_detail(content))
        return response

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._client is not None:
            await self._client.close()


def error_detail(body: bytes) -> str:
    """The message of an OpenAI-style error body (`{"error": {"message": ...}}` or
    `{"error": "..."}`), else the body's start; never more than 200 characters."""
    try:
        obj = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip() or "no details"
    error = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    if isinstance(error, str) and error:
        return error[:200]
    return json.dumps(obj)[:200]


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The body's lines (SSE is UTF-8; aiohttp splits on newlines and decompresses)."""
    async for line in response.content:
        yield line.rstrip(b"\r\n").decode()
