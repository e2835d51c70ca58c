"""Settings: one typed object from env vars, documented in the README's table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatwax.core.errors import ConfigError
from chatwax.core.settings import FIELDS, Settings

README = Path(__file__).resolve().parents[3] / "README.md"


def test_defaults_need_no_environment() -> None:
    s = Settings.from_env({})
    assert s.model == "gpt-4o-mini"
    assert s.nats_url == "nats://127.0.0.1:4222"
    assert not s.llm_configured
    assert s.provider == "openai"


def test_values_are_parsed_and_typed() -> None:
    s = Settings.from_env({
        "CHATWAX_TEMPERATURE": "0.2", "CHATWAX_HISTORY_TOKEN_BUDGET": "900",
        "OPENAI_BASE_URL": "http://127.0.0.1:8000/v1", "CHATWAX_MODEL": "llama",
    })
    assert (s.temperature, s.history_token_budget, s.model) == (0.2, 900, "llama")
    assert s.llm_configured and s.provider == "local"
    assert Settings(openai_base_url="https://vllm.example.com/v1").provider == "openai_compatible"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHATWAX_TEMPERATURE": "hot"}, "CHATWAX_TEMPERATURE='hot' is not valid"),
        ({"CHATWAX_TEMPERATURE": "3"}, "between 0 and 2"),
        ({"CHATWAX_PROMPT_PARTITIONS": "0"}, "CHATWAX_PROMPT_PARTITIONS must be greater than 0"),
        ({"OPENAI_BASE_URL": "localhost:8000"}, "OPENAI_BASE_URL must be an http(s) URL"),
        ({"CHATWAX_MAX_OUTPUT_TOKENS": "9000", "CHATWAX_CONTEXT_TOKENS": "8000"}, "below"),
    ],
)
def test_bad_values_name_their_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env(env)


def test_prompt_budget_never_exceeds_the_context_window() -> None:
    s = Settings(history_token_budget=10_000, context_tokens=8192, max_output_tokens=1024)
    assert s.prompt_token_budget == 8192 - 1024


def test_secrets_are_redacted() -> None:
    s = Settings(openai_api_key="sk-secret-123", nats_password="pw")
    text = repr(s.redacted())
    assert "sk-secret-123" not in text and "pw'" not in text
    assert s.redacted()["openai_api_key"] == "<set>"


def test_every_variable_is_in_the_readme_table() -> None:
    text = README.read_text()
    rows = set(re.findall(r"^\| `([A-Z_]+)`", text, flags=re.M))
    assert {f.env for f in FIELDS} <= rows
    for f in FIELDS:
        assert f.doc in text, f"README row for {f.env} is out of date"


def test_documented_defaults_are_the_real_defaults() -> None:
    defaults = Settings()
    for f in FIELDS:
        assert getattr(defaults, f.attr) == f.default, f.env
    assert {f.attr for f in FIELDS} == set(Settings.__dataclass_fields__)
