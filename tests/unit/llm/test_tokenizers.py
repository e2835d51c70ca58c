"""Counting tokens a server does not report: tiktoken offline, the server's own tokenize
endpoint (the echo server's, a real HTTP server), else the estimate, always labelled."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chatwax.core.tokens import ESTIMATE, MESSAGE_OVERHEAD_TOKENS
from chatwax.dev.echo_llm import serve_in_thread
from chatwax.llm.tokenizers import RemoteTokenizer, Tiktoken, UsageCounter, local_counter
from tests.support.procs import free_port


def test_gpt4_counts_with_its_own_encoding_shipped_offline(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # nothing cached, no network
    counter = local_counter("gpt-4")
    assert isinstance(counter, Tiktoken) and counter.kind == "tokenizer"
    assert counter.name == "cl100k_base"
    assert counter.count("hello world") == 2
    assert counter.count("<|endoftext|>") > 1  # special tokens are text here, never an error


def test_models_without_an_offline_tokenizer_are_estimated(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert local_counter("gpt-4o") is ESTIMATE  # o200k is not shipped, and not cached here
    assert local_counter("llama3.2") is ESTIMATE
    assert local_counter("gpt-4", mode="estimate") is ESTIMATE


def test_the_servers_tokenizer_counts_what_it_did_not_report() -> None:
    async def main(base_url: str) -> None:
        remote = RemoteTokenizer(base_url)
        try:
            assert await remote.count("three little words") == 3
            counted = await UsageCounter(ESTIMATE, remote).usage(
                [{"role": "system", "content": "be brief"},
                 {"role": "user", "content": "what is two plus two"}], "four")
        finally:
            await remote.close()
        assert counted.usage.counted == "tokenizer"
        assert counted.usage.input_tokens == 2 + 5 + 2 * MESSAGE_OVERHEAD_TOKENS
        assert counted.usage.output_tokens == 1
        assert counted.last_message == 5 + MESSAGE_OVERHEAD_TOKENS

    with serve_in_thread() as llm:
        asyncio.run(main(llm.base_url))


def test_without_a_tokenize_endpoint_the_count_is_an_estimate() -> None:
    async def main() -> None:
        remote = RemoteTokenizer(f"http://127.0.0.1:{free_port()}/v1", timeout_s=1.0)
        try:
            counted = await UsageCounter(ESTIMATE, remote).usage(
                [{"role": "user", "content": "x" * 40}], "y" * 8)
        finally:
            await remote.close()
        assert counted.usage.counted == "estimate"
        assert (counted.usage.input_tokens, counted.usage.output_tokens) == (
            10 + MESSAGE_OVERHEAD_TOKENS, 2)

    asyncio.run(main())
