"""The test LLM server speaks the OpenAI API: checked with the real openai client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from chatwax.dev.echo_llm import plan_for, serve_in_thread


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    with serve_in_thread(model="echo-1") as handle:
        yield handle


@pytest.fixture
def client(server: Any) -> openai.OpenAI:
    server.reset()
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=5)


MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]


def test_streamed_and_plain_answers_agree_with_exact_usage(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model="echo-1", messages=MESSAGES)  # type: ignore[arg-type]
    assert plain.choices[0].message.content == "echo: hello there"
    assert plain.usage is not None
    assert (plain.usage.prompt_tokens, plain.usage.completion_tokens) == (4, 3)
    chunks = list(client.chat.completions.create(
        model="echo-1", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 7
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_rate_limit_directive_fails_then_succeeds(client: openai.OpenAI, server: Any) -> None:
    msgs = [{"role": "user", "content": "[[429x2]] retry me"}]
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="echo-1", messages=msgs)  # type: ignore[arg-type]
    ok = client.chat.completions.create(model="echo-1", messages=msgs)  # type: ignore[arg-type]
    assert ok.choices[0].message.content == "echo: retry me"
    assert [r["status"] for r in server.requests()] == [429, 429, 200]
    assert server.usage()["requests_ok"] == 1


def test_server_error_hang_and_cut(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model="echo-1", messages=[{"role": "user", "content": "[[500]] x"}])
    with pytest.raises(openai.APITimeoutError):
        openai.OpenAI(base_url=client.base_url, api_key="x", max_retries=0, timeout=0.5) \
            .chat.completions.create(model="echo-1",
                                     messages=[{"role": "user", "content": "[[hang]] x"}])
    with pytest.raises(openai.APIConnectionError):
        list(client.chat.completions.create(
            model="echo-1", stream=True,
            messages=[{"role": "user", "content": "[[cut]] a b c d e f"}]))


def test_models_and_directive_parsing(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["echo-1"]
    plan = plan_for("[[slow:250]] [[tokens:5]] [[unknown]] hi", attempt=1)
    assert (plan.slow_s, plan.tokens, plan.text) == (0.25, 5, "[[unknown]] hi")
    assert plan_for("[[429x1]] a", attempt=2).fail_status is None
