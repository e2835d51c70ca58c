"""Settings: declared once, read from env vars at an entry point, secrets never printed,
the README's table generated from the declarations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatwax.core.errors import ConfigError
from chatwax.core.settings import Settings, secret, variable

ROOT = Path(__file__).resolve().parents[3]


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


def test_secrets_never_print() -> None:
    s = Settings(openai_api_key="sk-secret-123", nats_password="pw-secret", nats_token="tok")
    for text in (repr(s), str(s), repr(s.redacted()), s.model_dump_json()):
        assert "sk-secret-123" not in text and "pw-secret" not in text and "tok'" not in text
    assert s.redacted()["openai_api_key"] == "<set>" and s.redacted()["nats_user"] is None
    assert secret(s.openai_api_key) == "sk-secret-123"  # where it is sent, it is plain
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"OPENAI_API_KEY": "sk-secret-456", "CHATWAX_LLM_MAX_TRIES": "x"})
    assert "sk-secret-456" not in str(err.value)


def test_empty_variables_mean_unset() -> None:
    s = Settings.from_env({"OPENAI_API_KEY": "", "OPENAI_BASE_URL": "", "NATS_USER": ""})
    assert s.openai_api_key is None and s.openai_base_url is None and s.nats_user is None


def test_building_settings_in_code_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATWAX_MODEL", "from-the-environment")
    assert Settings().model == "gpt-4o-mini"
    assert Settings.from_env().model == "from-the-environment"


def test_an_unknown_setting_is_refused_in_code() -> None:
    with pytest.raises(ConfigError):
        Settings(modle="typo")  # type: ignore[call-arg]


def test_every_setting_is_declared_once_with_its_variable_and_doc() -> None:
    names = [variable(info) for info in Settings.model_fields.values()]
    assert len(names) == len(set(names))
    for name, info in Settings.model_fields.items():
        assert re.fullmatch(r"[A-Z][A-Z0-9_]+", variable(info)), name
        assert info.description and info.description.endswith("."), name


def test_the_readme_table_is_generated_from_the_declarations() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "settings_table.py")],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() in (ROOT / "README.md").read_text(), \
        "run: python scripts/settings_table.py --write"


def test_a_summary_never_outgrows_the_room_the_budget_leaves_it() -> None:
    assert Settings(history_token_budget=4000).summary_tokens == 256
    small = Settings(history_token_budget=300, summary_trigger=0.75, summary_keep=0.5)
    assert small.summary_tokens == 75  # 300 * (1 - 0.75)


def test_one_setting_before_the_rest_is_checked() -> None:
    """What a pod reads before its whole configuration (chatwax.dataflow.process
    `replace_if_stale`): the value as from_env reads it, else the declared default."""
    read = Settings.one_from_env
    assert read("k8s_api_timeout_s", {}) == 5.0
    assert read("k8s_api_timeout_s", {"CHATWAX_K8S_API_TIMEOUT": " 2.5 "}) == 2.5
    for bad in ("soon", "-1"):
        assert read("k8s_api_timeout_s", {"CHATWAX_K8S_API_TIMEOUT": bad}) == 5.0
    # Another setting's bad value does not matter here.
    assert read("k8s_api_timeout_s", {"CHATWAX_K8S_API_TIMEOUT": "3",
                                      "CHATWAX_K8S_API_WAIT": "x"}) == 3.0
