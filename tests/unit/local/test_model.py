"""The local model server's request rules and token counting, and how `chatwax up` picks
an LLM: pure functions, no model loaded."""

from __future__ import annotations

import pytest

from chatwax.core.errors import ConfigError
from chatwax.dev.llmchoice import choose_llm, llm_env
from chatwax.local import model as local_llm
from chatwax.local.model import RequestError, completion_tokens, parse_request

USER = [{"role": "user", "content": "hi"}]


def test_a_request_keeps_what_the_model_uses_and_caps_max_tokens() -> None:
    req = parse_request({"model": "anything", "messages": [
        {"role": "system", "content": "be brief", "name": "ignored"}, *USER],
        "stream": True, "stream_options": {"include_usage": True},
        "max_tokens": 10_000, "temperature": 0, "seed": 7}, max_tokens_cap=512)
    assert req.messages == [{"role": "system", "content": "be brief"}, *USER]
    assert (req.stream, req.include_usage, req.max_tokens, req.temperature, req.seed) == (
        True, True, 512, 0.0, 7)
    plain = parse_request({"messages": USER, "max_completion_tokens": 20}, 512)
    assert (plain.stream, plain.include_usage, plain.max_tokens, plain.seed) == (
        False, False, 20, None)
    assert parse_request({"messages": USER}, 300).max_tokens == 300


@pytest.mark.parametrize(("body", "says"), [
    ([], "JSON object"),
    ({}, "'messages'"),
    ({"messages": []}, "'messages'"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
    ({"messages": [{"role": "user", "content": ["parts"]}]}, "messages[0]"),
    ({"messages": USER, "max_tokens": 0}, "max_tokens"),
    ({"messages": USER, "max_tokens": True}, "max_tokens"),
    ({"messages": USER, "temperature": 3}, "temperature"),
    ({"messages": USER, "temperature": "hot"}, "temperature"),
    ({"messages": USER, "seed": 1.5}, "seed"),
])
def test_a_malformed_request_is_refused_with_the_reason(body: object, says: str) -> None:
    with pytest.raises(RequestError, match=says.replace("[", r"\[").replace("]", r"\]")) as err:
        parse_request(body, 512)
    assert err.value.status == 400


def test_the_end_of_generation_step_is_not_a_token_but_a_cut_answer_counts_every_step() -> None:
    assert completion_tokens(33, "stop") == 32
    assert completion_tokens(64, "length") == 64
    assert completion_tokens(5, None) == 5  # mid-answer: every step so far made a token
    assert completion_tokens(0, "stop") == 0


@pytest.mark.parametrize(("choice", "env", "chosen"), [
    ("auto", {}, "local"),
    ("auto", {"OPENAI_API_KEY": "sk-x"}, "openai"),
    ("auto", {"OPENAI_BASE_URL": "http://vllm:8000/v1"}, "openai"),
    ("auto", {"OPENAI_API_KEY": ""}, "local"),
    ("local", {"OPENAI_API_KEY": "sk-x"}, "local"),
    ("openai", {}, "openai"),
    ("http://127.0.0.1:11434/v1", {}, "http://127.0.0.1:11434/v1"),
])
def test_up_uses_the_local_model_only_when_nothing_else_is_set_or_asked(
        choice: str, env: dict[str, str], chosen: str) -> None:
    assert choose_llm(choice, env) == chosen


@pytest.mark.parametrize("choice", ["ollama", "ftp://x/v1", "http://"])
def test_an_unknown_llm_choice_is_a_config_error(choice: str) -> None:
    with pytest.raises(ConfigError, match="--llm"):
        choose_llm(choice, {})


def test_the_local_choice_points_everything_at_the_local_server_within_its_context() -> None:
    env = llm_env("local", 8400, {})
    assert env["OPENAI_BASE_URL"] == "http://127.0.0.1:8400/v1"
    assert env["CHATWAX_MODEL"] == local_llm.MODEL_ALIAS
    assert env["CHATWAX_PROVIDER"] == "local"
    context = int(env["CHATWAX_CONTEXT_TOKENS"])
    assert int(env["CHATWAX_HISTORY_TOKEN_BUDGET"]) + int(
        env["CHATWAX_MAX_OUTPUT_TOKENS"]) < context
    # Sizes the user chose win; a URL choice only sets the URL; openai changes nothing.
    mine = llm_env("local", 8400, {"CHATWAX_MAX_OUTPUT_TOKENS": "64"})
    assert mine["CHATWAX_MAX_OUTPUT_TOKENS"] == "64"
    assert llm_env("http://h:1/v1", 8400, {}) == {"OPENAI_BASE_URL": "http://h:1/v1"}
    assert llm_env("openai", 8400, {}) == {}
