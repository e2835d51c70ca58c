"""The OpenAI-compatible chat client: streaming, usage, timeouts and retries with backoff.

It knows nothing of NATS or bytewax: it turns messages into a stream of text deltas and
one `Completion`, or raises `LlmError` with a wire error code once retrying is pointless.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import backoff
import httpx2
import openai
from openai import AsyncOpenAI

from chatwax.errors import ErrorCode, LlmError
from chatwax.metrics import METRICS, model_label
from chatwax.protocol import Usage
from chatwax.settings import Settings

log = logging.getLogger(__name__)

NOT_CONFIGURED_MESSAGE: Final = (
    "No LLM is configured. Set OPENAI_API_KEY to use OpenAI, or OPENAI_BASE_URL to use any "
    "OpenAI-compatible server (vLLM, Ollama, llama.cpp, ...), then restart the dataflow."
)


class _Retryable(Exception):
    """An attempt failed in a way that another attempt may fix."""

    def __init__(self, code: ErrorCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    usage: Usage
    model: str
    ttft_s: float | None
    duration_s: float
    attempts: int


OnDelta = Callable[[int, str], Awaitable[None]]
"""Called with (chunk index, text) for each delta; index 0 after a retry means 'start over'."""


class LlmClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model = settings.model
        self.labels = (model_label(settings.model), settings.provider)
        self._client: AsyncOpenAI | None = None
        self._with_retries = self._retrying()
        if settings.llm_configured:
            self._client = AsyncOpenAI(
                # Servers such as vLLM or llama.cpp accept any key; the SDK insists on one.
                api_key=settings.openai_api_key or "unused",
                base_url=settings.openai_base_url,
                max_retries=0,  # retries are ours, with backoff and metrics
                timeout=openai.Timeout(settings.llm_timeout_s,
                                       connect=settings.llm_connect_timeout_s),
            )

    async def stream(self, messages: list[dict[str, str]], on_delta: OnDelta) -> Completion:
        """Stream one answer, retrying transient failures within the retry budget."""
        if self._client is None:
            raise LlmError(ErrorCode.LLM_NOT_CONFIGURED, NOT_CONFIGURED_MESSAGE)
        tries = [0]
        try:
            return await self._with_retries(messages, on_delta, time.monotonic(), tries)
        except _Retryable as exc:
            raise LlmError(exc.code, f"{exc} (gave up after {tries[0]} attempts)") from None

    def _retrying(self) -> Any:
        """`_attempt` wrapped once in backoff (not per call: this is the hot path)."""
        def on_backoff(details: Any) -> None:
            exc = details.get("exception")
            reason = exc.reason if isinstance(exc, _Retryable) else "unknown"
            METRICS.retries.labels(*self.labels, reason).inc()
            log.info("LLM attempt %d failed (%s); retrying in %.2fs",
                     details["tries"], reason, details["wait"])

        return backoff.on_exception(
            backoff.expo, _Retryable, factor=0.25, max_value=8.0, jitter=backoff.full_jitter,
            max_tries=self.settings.retry_max_tries, max_time=self.settings.retry_max_time_s,
            on_backoff=on_backoff, raise_on_giveup=True, logger=None,
        )(self._attempt)

    async def _attempt(
        self, messages: list[dict[str, str]], on_delta: OnDelta, started: float, tries: list[int]
    ) -> Completion:
        assert self._client is not None
        tries[0] += 1
        s = self.settings
        parts: list[str] = []
        usage: Usage | None = None
        model = s.model
        ttft: float | None = None
        finished = False
        try:
            # The SDK sends the request and maps HTTP errors; the event stream is read raw:
            # building a pydantic model per token was most of the dataflow's CPU.
            async with asyncio.timeout(s.llm_timeout_s), \
                    self._client.chat.completions.with_streaming_response.create(
                        model=s.model, messages=messages,  # type: ignore[call-overload] # plain dicts are valid messages
                        temperature=s.temperature, max_tokens=s.max_output_tokens,
                        stream=True, stream_options={"include_usage": True},
                    ) as response:
                events = SseEvents()
                async for line in response.iter_lines():
                    data = events.feed(line)
                    # Read on after [DONE] to the end of the body, so the connection goes
                    # back to the pool instead of being closed half-read.
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
        except TimeoutError:
            raise _Retryable(ErrorCode.LLM_TIMEOUT, "timeout",
                             f"the LLM did not finish within {s.llm_timeout_s:g}s") from None
        except openai.RateLimitError as exc:
            raise _Retryable(ErrorCode.RATE_LIMITED, "rate_limited",
                             f"the LLM server is rate limiting ({_detail(exc)})") from None
        except openai.APITimeoutError:
            raise _Retryable(ErrorCode.LLM_TIMEOUT, "timeout",
                             "the LLM server did not answer in time") from None
        except (openai.APIConnectionError, httpx2.TransportError) as exc:
            if parts:  # it had started answering: the stream broke, not the connect
                raise _Retryable(ErrorCode.LLM_UNAVAILABLE, "cut_stream",
                                 "the LLM stream ended before the answer was complete") from None
            raise _Retryable(ErrorCode.LLM_UNAVAILABLE, "connection",
                             f"cannot reach the LLM server ({_detail(exc)})") from None
        except StreamError as exc:
            raise _Retryable(ErrorCode.LLM_UNAVAILABLE, "server_error",
                             f"the LLM server failed mid-answer ({exc})") from None
        except openai.InternalServerError as exc:
            raise _Retryable(ErrorCode.LLM_UNAVAILABLE, "server_error",
                             f"the LLM server failed ({exc.status_code})") from None
        except (ValueError, openai.APIResponseValidationError) as exc:
            # Not valid SSE/JSON (json.JSONDecodeError is a ValueError): a broken server
            # or proxy; another attempt may well get a clean stream.
            raise _Retryable(ErrorCode.LLM_UNAVAILABLE, "malformed_stream",
                             f"the LLM server sent a malformed stream ({type(exc).__name__})"
                             ) from None
        except openai.APIStatusError as exc:
            if exc.status_code in (408, 409) or exc.status_code >= 500:
                raise _Retryable(ErrorCode.LLM_UNAVAILABLE, "server_error",
                                 f"the LLM server failed ({exc.status_code})") from None
            raise LlmError(ErrorCode.LLM_REJECTED,
                           f"the LLM server refused the request ({exc.status_code}: "
                           f"{_detail(exc)})") from None
        if not finished:
            raise _Retryable(ErrorCode.LLM_UNAVAILABLE, "cut_stream",
                             "the LLM stream ended before the answer was complete")
        text = "".join(parts)
        if usage is None:
            log.warning("LLM server reported no usage; token metrics for this call are zero")
            usage = Usage()
        return Completion(text, usage, model, ttft, time.monotonic() - started, tries[0])

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


def _detail(exc: Exception) -> str:
    """A short, key-free description of an SDK error for error replies and logs."""
    message = getattr(exc, "message", "") or str(exc) or exc.__class__.__name__
    return message[:200]


# -- The event stream ---------------------------------------------------------------


class StreamError(Exception):
    """The server reported an error inside the event stream."""


class SseEvents:
    """Server-sent events from lines: the data of each event, once its blank line comes."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if not line:
            data, self._data = self._data, []
            return "\n".join(data) if data else None
        if line.startswith("data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None  # comments (":"), event:, id: and retry: lines carry nothing we use


@dataclass(frozen=True, slots=True)
class Chunk:
    deltas: list[str]
    finished: bool
    usage: Usage | None
    model: str | None


def parse_chunk(data: str) -> Chunk:
    """One `chat.completion.chunk`; anything else raises ValueError (a malformed stream)."""
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("a stream event is not a JSON object")
    if obj.get("error"):
        error = obj["error"]
        raise StreamError(str(error.get("message") if isinstance(error, dict) else error)[:200])
    choices = obj.get("choices")
    choices = [] if choices is None else choices
    raw_usage = obj.get("usage")
    model = obj.get("model")
    if (not isinstance(choices, list) or not isinstance(raw_usage, dict | None)
            or not isinstance(model, str | None)):
        raise ValueError("a stream event has fields of the wrong type")
    deltas: list[str] = []
    finished = False
    for choice in choices:
        if not isinstance(choice, dict):
            raise ValueError("a stream choice is not an object")
        content = (choice.get("delta") or {}).get("content")
        if content:
            if not isinstance(content, str):
                raise ValueError("a stream delta's content is not text")
            deltas.append(content)
        finished = finished or choice.get("finish_reason") is not None
    usage = None
    if raw_usage is not None:
        usage = Usage(int(raw_usage.get("prompt_tokens") or 0),
                      int(raw_usage.get("completion_tokens") or 0))
    return Chunk(deltas, finished, usage, model or None)
