"""The one settings object, read from environment variables once at an entry point.

Steps, the LLM client and the NATS adapters receive a `Settings`; none of them reads
`os.environ`. The README's configuration table is checked against `FIELDS` by a test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Final
from urllib.parse import urlparse

from chatwax.core.errors import ConfigError
from chatwax.core.pricing import PriceTable, parse_prices

DEFAULT_SYSTEM_PROMPT: Final = "You are a helpful assistant. Answer clearly and concisely."


@dataclass(frozen=True, slots=True)
class Field:
    env: str
    attr: str
    default: Any
    parse: Callable[[str], Any]
    doc: str


def _float(s: str) -> float:
    return float(s)


def _int(s: str) -> int:
    return int(s)


def _str(s: str) -> str:
    return s


def _opt_str(s: str) -> str | None:
    return s or None


FIELDS: Final[tuple[Field, ...]] = (
    Field("NATS_URL", "nats_url", "nats://127.0.0.1:4222", _str,
          "NATS server(s), comma-separated."),
    Field("NATS_USER", "nats_user", None, _opt_str, "NATS user name, if the server wants one."),
    Field("NATS_PASSWORD", "nats_password", None, _opt_str, "NATS password (keep it in a Secret)."),
    Field("NATS_TOKEN", "nats_token", None, _opt_str, "NATS token, instead of user/password."),
    Field("OPENAI_API_KEY", "openai_api_key", None, _opt_str,
          "API key for the LLM server. Never logged."),
    Field("OPENAI_BASE_URL", "openai_base_url", None, _opt_str,
          "Any OpenAI-compatible server (vLLM, Ollama, llama.cpp, ...); unset means OpenAI."),
    Field("CHATWAX_MODEL", "model", "gpt-4o-mini", _str, "Model name sent to the LLM server."),
    Field("CHATWAX_PROVIDER", "provider_override", None, _opt_str,
          "Provider label for metrics; derived from the base URL when unset."),
    Field("CHATWAX_SYSTEM_PROMPT", "system_prompt", DEFAULT_SYSTEM_PROMPT, _str,
          "System prompt placed before every conversation's history."),
    Field("CHATWAX_TEMPERATURE", "temperature", 0.7, _float, "Sampling temperature."),
    Field("CHATWAX_MAX_OUTPUT_TOKENS", "max_output_tokens", 1024, _int,
          "Upper bound on tokens in one answer."),
    Field("CHATWAX_CONTEXT_TOKENS", "context_tokens", 128_000, _int,
          "The model's context window; history never exceeds it."),
    Field("CHATWAX_HISTORY_TOKEN_BUDGET", "history_token_budget", 4000, _int,
          "Tokens of system prompt + history + prompt sent per call (newest turns kept)."),
    Field("CHATWAX_MAX_PROMPT_CHARS", "max_prompt_chars", 32_000, _int,
          "Longer prompts are refused with `prompt_too_large`."),
    Field("CHATWAX_LLM_TIMEOUT", "llm_timeout_s", 60.0, _float,
          "Seconds one LLM attempt may take from request to last token."),
    Field("CHATWAX_LLM_CONNECT_TIMEOUT", "llm_connect_timeout_s", 5.0, _float,
          "Seconds to open a connection to the LLM server."),
    Field("CHATWAX_LLM_RETRY_MAX_TIME", "retry_max_time_s", 30.0, _float,
          "Total seconds spent retrying rate limits, timeouts and 5xx before giving up."),
    Field("CHATWAX_LLM_MAX_TRIES", "retry_max_tries", 6, _int, "Attempts per prompt at most."),
    Field("CHATWAX_LLM_MAX_CONCURRENCY", "llm_max_concurrency", 256, _int,
          "LLM calls in flight per dataflow process at most; more wait their turn."),
    Field("CHATWAX_USER_TOKEN_QUOTA", "user_token_quota", 0, _int,
          "Tokens one user may spend per quota window (0: no quota)."),
    Field("CHATWAX_USER_QUOTA_WINDOW", "user_quota_window_s", 86_400.0, _float,
          "The rolling quota window, in seconds."),
    Field("CHATWAX_USER_MAX_CONCURRENT", "user_max_concurrent", 16, _int,
          "Prompts one user may have unanswered at once (0: no limit)."),
    Field("CHATWAX_PROMPT_PARTITIONS", "partitions", 8, _int,
          "Partitions of the prompts stream (fixed once the stream exists)."),
    Field("CHATWAX_PROMPT_MAX_AGE", "prompt_max_age_s", 86_400.0, _float,
          "Seconds the prompts stream keeps a prompt."),
    Field("CHATWAX_TRANSCRIPT_MAX_AGE", "transcript_max_age_s", 90 * 86_400.0, _float,
          "Seconds the transcripts stream keeps a turn (0 keeps forever)."),
    Field("CHATWAX_STREAM_REPLICAS", "stream_replicas", 1, _int,
          "JetStream replicas of both streams (3 on a clustered NATS)."),
    Field("CHATWAX_COMPAT_SUBJECT", "compat_subject", "prompts", _str,
          "Core NATS subject of the tutorial-style request adapter (empty disables it)."),
    Field("CHATWAX_CHUNK_FLUSH_MS", "chunk_flush_ms", 20.0, _float,
          "Tokens arriving faster than this are joined into one chunk event (0: one per token)."),
    Field("CHATWAX_POLL_MS", "poll_ms", 5.0, _float,
          "How often idle sources look for new messages, in milliseconds."),
    Field("CHATWAX_PRICES", "prices", "", _str,
          "Extra or overriding prices, `model=input:output;...` in USD per million tokens."),
    Field("CHATWAX_LOG_LEVEL", "log_level", "INFO", _str, "Python log level."),
    Field("CHATWAX_HEALTH_PORT", "health_port", 0, _int,
          "Port of the dataflow's health endpoint (`/readyz`, `/livez`); 0 turns it off."),
    Field("CHATWAX_HEALTH_HOST", "health_host", "0.0.0.0", _str,
          "Address the health endpoint listens on."),
)


@dataclass(frozen=True)
class Settings:
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str | None = None
    nats_password: str | None = None
    nats_token: str | None = None
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    model: str = "gpt-4o-mini"
    provider_override: str | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    temperature: float = 0.7
    max_output_tokens: int = 1024
    context_tokens: int = 128_000
    history_token_budget: int = 4000
    max_prompt_chars: int = 32_000
    llm_timeout_s: float = 60.0
    llm_connect_timeout_s: float = 5.0
    retry_max_time_s: float = 30.0
    retry_max_tries: int = 6
    llm_max_concurrency: int = 256
    user_token_quota: int = 0
    user_quota_window_s: float = 86_400.0
    user_max_concurrent: int = 16
    partitions: int = 8
    prompt_max_age_s: float = 86_400.0
    transcript_max_age_s: float = 90 * 86_400.0
    stream_replicas: int = 1
    compat_subject: str = "prompts"
    chunk_flush_ms: float = 20.0
    poll_ms: float = 5.0
    prices: str = ""
    log_level: str = "INFO"
    health_port: int = 0
    health_host: str = "0.0.0.0"

    def __post_init__(self) -> None:
        _positive(self, "max_output_tokens", "history_token_budget", "context_tokens",
                  "max_prompt_chars", "llm_max_concurrency", "partitions", "retry_max_tries",
                  "stream_replicas")
        _positive(self, "llm_timeout_s", "llm_connect_timeout_s", "poll_ms")
        if min(self.user_token_quota, self.user_max_concurrent) < 0:
            raise ConfigError("per-user limits must not be negative (0 turns a limit off)")
        _positive(self, "user_quota_window_s")
        if not 0 <= self.health_port <= 65535:
            raise ConfigError("CHATWAX_HEALTH_PORT must be a port number (0 turns it off)")
        if self.chunk_flush_ms < 0:
            raise ConfigError("CHATWAX_CHUNK_FLUSH_MS must not be negative")
        if self.retry_max_time_s < 0:
            raise ConfigError("CHATWAX_LLM_RETRY_MAX_TIME must not be negative")
        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError("CHATWAX_TEMPERATURE must be between 0 and 2")
        if self.max_output_tokens >= self.context_tokens:
            raise ConfigError("CHATWAX_MAX_OUTPUT_TOKENS must be below CHATWAX_CONTEXT_TOKENS")
        parse_prices(self.prices)
        if self.openai_base_url and urlparse(self.openai_base_url).scheme not in ("http", "https"):
            raise ConfigError("OPENAI_BASE_URL must be an http(s) URL")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every documented variable; a malformed value names its variable."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in FIELDS:
            raw = env.get(f.env)
            if raw is None:
                continue
            try:
                values[f.attr] = f.parse(raw.strip() if f.parse is not _str else raw)
            except ValueError as exc:
                raise ConfigError(f"{f.env}={raw!r} is not valid: {exc}") from exc
        return cls(**values)

    @property
    def llm_configured(self) -> bool:
        return bool(self.openai_api_key or self.openai_base_url)

    @property
    def provider(self) -> str:
        """A bounded metrics label for where the model runs."""
        if self.provider_override:
            return self.provider_override
        if not self.openai_base_url:
            return "openai"
        host = urlparse(self.openai_base_url).hostname or ""
        if host.endswith("openai.com"):
            return "openai"
        if host in ("localhost", "::1") or host.startswith("127."):
            return "local"
        return "openai_compatible"

    def price_table(self) -> PriceTable:
        return PriceTable(parse_prices(self.prices))

    @property
    def prompt_token_budget(self) -> int:
        """What a call may spend on input: the budget, but never past the context window."""
        return min(self.history_token_budget, self.context_tokens - self.max_output_tokens)

    def redacted(self) -> dict[str, Any]:
        """Settings safe to log: secrets are replaced by whether they are set."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRETS:
                value = "<set>" if value else None
            out[f.name] = value
        return out


_SECRETS: Final = frozenset({"openai_api_key", "nats_password", "nats_token"})


def _positive(settings: Settings, *names: str) -> None:
    for name in names:
        if getattr(settings, name) <= 0:
            env = next(f.env for f in FIELDS if f.attr == name)
            raise ConfigError(f"{env} must be greater than 0")
