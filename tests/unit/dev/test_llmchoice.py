"""How `chatwax up` decides its LLM once: the environment, `extra_env` over it and the
chosen LLM's settings over both; the pages never get the key. (`choose_llm` and `llm_env`
themselves: tests/unit/local/test_model.py.)"""

from __future__ import annotations

import pytest

from chatwax.core.errors import ConfigError
from chatwax.dev.llmchoice import resolve_llm
from chatwax.local import model as local_llm


def test_extra_env_goes_over_the_environment_and_the_choice_over_both() -> None:
    choice = resolve_llm("http://h:1/v1", 8400, {"CHATWAX_MODEL": "mine", "A": "extra"},
                         {"A": "env", "B": "env", "OPENAI_BASE_URL": "http://old/v1"})
    assert choice.kind == "http://h:1/v1"
    assert dict(choice.env) == {"A": "extra", "B": "env", "CHATWAX_MODEL": "mine",
                                "OPENAI_BASE_URL": "http://h:1/v1"}
    with pytest.raises(TypeError):
        choice.env["A"] = "changed"  # type: ignore[index]  # one decision, for every child


def test_auto_sees_a_key_given_in_extra_env() -> None:
    assert resolve_llm("auto", 8400, {"OPENAI_API_KEY": "sk-1"}, {}).kind == "openai"
    assert resolve_llm("auto", 8401, {}, {}).settings.openai_base_url == "http://127.0.0.1:8401/v1"


def test_the_pages_name_the_model_but_never_get_its_key() -> None:
    choice = resolve_llm("openai", 8400, {}, {"OPENAI_API_KEY": "sk-1", "CHATWAX_MODEL": "m"})
    assert choice.ui_env == {"CHATWAX_MODEL": "m"}
    assert choice.describe() == "m at OpenAI"


def test_the_local_model_must_be_installed_to_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_llm, "installed", lambda: False)
    with pytest.raises(ConfigError, match="the local model needs llama-cpp-python"):
        resolve_llm("local", 8400, {}, {}).check_runnable()
    resolve_llm("openai", 8400, {}, {}).check_runnable()  # needs nothing here
