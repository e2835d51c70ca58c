"""The LLM client's proxy: read from the environment once, as the SDK's own client does."""

from __future__ import annotations

import asyncio

import pytest

from chatwax.core.settings import Settings
from chatwax.dev.echo_llm import serve_in_thread
from chatwax.llm.client import LlmClient, proxy_for


def test_the_proxy_follows_the_scheme_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                 "NO_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert proxy_for("https://api.example.com/v1/chat/completions") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://plain.internal:8080")
    assert proxy_for("https://api.example.com/v1/chat/completions") == \
        "http://proxy.internal:3128"
    assert proxy_for("http://vllm.internal/v1/chat/completions") == "http://plain.internal:8080"
    monkeypatch.setenv("NO_PROXY", "vllm.internal,.svc.cluster.local")
    assert proxy_for("http://vllm.internal/v1/chat/completions") is None
    assert proxy_for("http://llm.chatwax.svc.cluster.local/v1/chat/completions") is None


def test_a_chat_request_goes_through_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The echo server answers proxy-form requests: a host that does not resolve is reached
    only if the client sends its request to the proxy."""
    with serve_in_thread(model="echo-1") as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        client = LlmClient(Settings(openai_base_url="http://llm.invalid/v1", model="echo-1",
                                    retry_max_time_s=0))

        async def ask() -> str:
            async def on_delta(index: int, text: str) -> None:
                pass
            try:
                done = await client.stream([{"role": "user", "content": "via the proxy"}],
                                           on_delta)
                return done.text
            finally:
                await client.close()

        assert "via the proxy" in asyncio.run(ask())
