"""The one settings object, read from environment variables once, at an entry point.

Each setting is declared once below: its type, environment variable, default, one-line doc
and its limits. Steps, the LLM client and the NATS adapters receive a `Settings`; none of
them reads `os.environ`, and constructing a `Settings` in code reads no environment
either: only `Settings.from_env` does. Secrets are `SecretStr`: they print as `**********`
in reprs, logs and error messages. The README's configuration table is generated from
these declarations (`python scripts/settings_table.py --write`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, Final
from urllib.parse import urlparse

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from chatwax.core.errors import ConfigError
from chatwax.core.identity import STABLE_CLAIMS, is_signed_in_id, split_list
from chatwax.core.pricing import PriceTable, parse_prices

UI_PORT: Final = 8501
"""Where the pages listen unless told (`chatwax ui --port`, `chatwax up --ui-port`): a
command-line default, not an environment setting, declared here for both."""
DEFAULT_SYSTEM_PROMPT: Final = "You are a helpful assistant. Answer clearly and concisely."


def env(name: str, doc: str, **limits: Any) -> Any:
    """A setting's declaration: its environment variable, its doc and its limits."""
    return Field(validation_alias=name, description=doc, **limits)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True,
                                      extra="forbid", case_sensitive=True)

    nats_url: Annotated[str, env("NATS_URL", "NATS server(s), comma-separated.")] = \
        "nats://127.0.0.1:4222"
    nats_user: Annotated[str | None, env(
        "NATS_USER", "NATS user name, if the server wants one.")] = None
    nats_password: Annotated[SecretStr | None, env(
        "NATS_PASSWORD", "NATS password (keep it in a Secret).")] = None
    nats_token: Annotated[SecretStr | None, env(
        "NATS_TOKEN", "NATS token, instead of user/password.")] = None
    nats_ca: Annotated[str | None, env(
        "NATS_CA", "CA bundle (PEM file) the NATS server's certificate is checked against; "
        "turns TLS on, as a tls:// URL does.")] = None
    nats_cert: Annotated[str | None, env(
        "NATS_CERT", "Client certificate (PEM file) for a NATS that verifies clients; "
        "needs NATS_KEY.")] = None
    nats_key: Annotated[str | None, env(
        "NATS_KEY", "Private key (PEM file) of NATS_CERT.")] = None
    openai_api_key: Annotated[SecretStr | None, env(
        "OPENAI_API_KEY", "API key for the LLM server. Never logged.")] = None
    openai_base_url: Annotated[str | None, env(
        "OPENAI_BASE_URL", "Any OpenAI-compatible server (vLLM, Ollama, llama.cpp, ...); "
        "unset means OpenAI.")] = None
    model: Annotated[str, env("CHATWAX_MODEL", "Model name sent to the LLM server.")] = \
        "gpt-4o-mini"
    provider_override: Annotated[str | None, env(
        "CHATWAX_PROVIDER", "Provider label for metrics; derived from the base URL when unset."
    )] = None
    system_prompt: Annotated[str, env(
        "CHATWAX_SYSTEM_PROMPT", "System prompt placed before every conversation's history."
    )] = DEFAULT_SYSTEM_PROMPT
    temperature: Annotated[float, env(
        "CHATWAX_TEMPERATURE", "Sampling temperature.", ge=0.0, le=2.0)] = 0.7
    max_output_tokens: Annotated[int, env(
        "CHATWAX_MAX_OUTPUT_TOKENS", "Upper bound on tokens in one answer.", gt=0)] = 1024
    context_tokens: Annotated[int, env(
        "CHATWAX_CONTEXT_TOKENS", "The model's context window; history never exceeds it.",
        gt=0)] = 128_000
    history_token_budget: Annotated[int, env(
        "CHATWAX_HISTORY_TOKEN_BUDGET",
        "Tokens of system prompt + history + prompt sent per call (newest turns kept).",
        gt=0)] = 4000
    max_prompt_chars: Annotated[int, env(
        "CHATWAX_MAX_PROMPT_CHARS", "Longer prompts are refused with `prompt_too_large`.",
        gt=0)] = 32_000
    llm_timeout_s: Annotated[float, env(
        "CHATWAX_LLM_TIMEOUT", "Seconds one LLM attempt may take from request to last token.",
        gt=0)] = 60.0
    llm_connect_timeout_s: Annotated[float, env(
        "CHATWAX_LLM_CONNECT_TIMEOUT", "Seconds to open a connection to the LLM server.",
        gt=0)] = 5.0
    retry_max_time_s: Annotated[float, env(
        "CHATWAX_LLM_RETRY_MAX_TIME",
        "Total seconds spent retrying rate limits, timeouts and 5xx before giving up.",
        ge=0)] = 30.0
    retry_max_tries: Annotated[int, env(
        "CHATWAX_LLM_MAX_TRIES", "Attempts per prompt at most.", gt=0)] = 6
    llm_max_concurrency: Annotated[int, env(
        "CHATWAX_LLM_MAX_CONCURRENCY",
        "LLM calls in flight per dataflow process at most; more wait their turn.", gt=0)] = 256
    user_token_quota: Annotated[int, env(
        "CHATWAX_USER_TOKEN_QUOTA", "Tokens one user may spend per quota window (0: no quota).",
        ge=0)] = 1_000_000
    user_quota_window_s: Annotated[float, env(
        "CHATWAX_USER_QUOTA_WINDOW", "The rolling quota window, in seconds.", gt=0)] = 86_400.0
    user_max_concurrent: Annotated[int, env(
        "CHATWAX_USER_MAX_CONCURRENT",
        "Prompts one user may have unanswered at once (0: no limit).", ge=0)] = 16
    user_prompts_per_minute: Annotated[int, env(
        "CHATWAX_USER_PROMPTS_PER_MINUTE",
        "Prompts one user may send per minute, in bursts of up to as many (0: no limit).",
        ge=0)] = 60
    user_max_conversations: Annotated[int, env(
        "CHATWAX_USER_MAX_CONVERSATIONS",
        "Conversations one user may keep in the dataflow's state; `chatwax forget` frees "
        "them (0: no limit).", ge=0)] = 1000
    partitions: Annotated[int, env(
        "CHATWAX_PROMPT_PARTITIONS",
        "Partitions of the prompts stream (fixed once the stream exists).", gt=0)] = 8
    prompt_max_age_s: Annotated[float, env(
        "CHATWAX_PROMPT_MAX_AGE", "Seconds the prompts stream keeps a prompt.",
        gt=0)] = 86_400.0
    prompt_max_bytes: Annotated[int, env(
        "CHATWAX_PROMPT_MAX_BYTES",
        "Bytes the prompts stream may hold; when full, new prompts are refused as `busy` "
        "until old ones age out (0: no limit).", ge=0)] = 256 << 20
    transcript_max_age_s: Annotated[float, env(
        "CHATWAX_TRANSCRIPT_MAX_AGE",
        "Seconds the transcripts stream keeps a turn (0 keeps forever).", ge=0)] = 90 * 86_400.0
    transcript_max_bytes: Annotated[int, env(
        "CHATWAX_TRANSCRIPT_MAX_BYTES",
        "Bytes the transcripts stream may hold; the oldest turns go first (0: no limit).",
        ge=0)] = 2 << 30
    dead_letter_max_age_s: Annotated[float, env(
        "CHATWAX_DEAD_LETTER_MAX_AGE",
        "Seconds the dead-letter stream keeps a message that made a dataflow step fail.",
        gt=0)] = 7 * 86_400.0
    dead_letter_max_bytes: Annotated[int, env(
        "CHATWAX_DEAD_LETTER_MAX_BYTES",
        "Bytes the dead-letter stream may hold; the oldest go first.", gt=0)] = 64 << 20
    summaries: Annotated[bool, env(
        "CHATWAX_SUMMARIES",
        "Fold turns that outgrow the history budget into a running summary, made off the "
        "request path (false: drop them).")] = True
    summary_model: Annotated[str, env(
        "CHATWAX_SUMMARY_MODEL", "Model that writes summaries; empty: CHATWAX_MODEL.")] = ""
    summary_trigger: Annotated[float, env(
        "CHATWAX_SUMMARY_TRIGGER",
        "Summarize when the unsummarized turns need more than this share of the history "
        "budget.", gt=0, le=1)] = 0.75
    summary_keep: Annotated[float, env(
        "CHATWAX_SUMMARY_KEEP",
        "After summarizing, the newest turns that fit this share of the budget stay as they "
        "are.", gt=0, lt=1)] = 0.5
    summary_max_tokens: Annotated[int, env(
        "CHATWAX_SUMMARY_MAX_TOKENS", "Upper bound on a summary's length, in tokens (never "
        "more than the history budget's share above the trigger).",
        gt=0)] = 256
    token_counter: Annotated[str, env(
        "CHATWAX_TOKEN_COUNTER",
        "How chatwax counts tokens the server does not report: auto (the model's tokenizer "
        "where one is available, else an estimate) or estimate.",
        pattern="^(auto|estimate)$")] = "auto"
    stream_replicas: Annotated[int, env(
        "CHATWAX_STREAM_REPLICAS", "JetStream replicas of both streams (3 on a clustered NATS).",
        gt=0)] = 1
    compat_subject: Annotated[str, env(
        "CHATWAX_COMPAT_SUBJECT",
        "Core NATS subject of the tutorial-style request adapter (empty disables it).")] = \
        "prompts"
    chunk_flush_ms: Annotated[float, env(
        "CHATWAX_CHUNK_FLUSH_MS",
        "Tokens arriving faster than this are joined into one chunk event (0: one per token).",
        ge=0)] = 20.0
    poll_ms: Annotated[float, env(
        "CHATWAX_POLL_MS", "How often idle sources look for new messages, in milliseconds "
        "(half of it is the average wait of a prompt that arrives while they are idle).",
        gt=0)] = 2.0
    prices: Annotated[str, env(
        "CHATWAX_PRICES",
        "Extra or overriding prices, `model=input:output;...` in USD per million tokens.")] = ""
    log_level: Annotated[str, env("CHATWAX_LOG_LEVEL", "Python log level.")] = "INFO"
    health_port: Annotated[int, env(
        "CHATWAX_HEALTH_PORT",
        "Port of the dataflow's health endpoint (`/readyz`, `/livez`); 0 turns it off.",
        ge=0, le=65535)] = 0
    health_host: Annotated[str, env(
        "CHATWAX_HEALTH_HOST", "Address the health endpoint listens on.")] = "0.0.0.0"
    k8s_api_timeout_s: Annotated[float, env(
        "CHATWAX_K8S_API_TIMEOUT",
        "Seconds one request to the Kubernetes API may take (a dataflow pod reads its "
        "StatefulSet's replicas).", gt=0)] = 5.0
    k8s_api_wait_s: Annotated[float, env(
        "CHATWAX_K8S_API_WAIT",
        "Seconds a starting dataflow pod retries an unreachable Kubernetes API before it "
        "forms the cluster from the rendered peer list.", ge=0)] = 30.0

    # -- Sign-in on the pages (read by `chatwax ui` and the pages; docs/security.md) --------
    auth: Annotated[str, env(
        "CHATWAX_AUTH",
        "Sign-in on the pages: none (open mode: anyone picks a user id) or oidc (OpenID "
        "Connect; the user id comes from the signed-in identity).",
        pattern="^(none|oidc)$")] = "none"
    oidc_metadata_url: Annotated[str | None, env(
        "CHATWAX_OIDC_METADATA_URL",
        "The provider's discovery document (`.../.well-known/openid-configuration`).")] = None
    oidc_client_id: Annotated[str | None, env(
        "CHATWAX_OIDC_CLIENT_ID", "Client id chatwax is registered with at the provider.")] = None
    oidc_client_secret: Annotated[SecretStr | None, env(
        "CHATWAX_OIDC_CLIENT_SECRET", "Client secret from the provider (keep it in a Secret).")
    ] = None
    oidc_cookie_secret: Annotated[SecretStr | None, env(
        "CHATWAX_OIDC_COOKIE_SECRET",
        "Signs the sign-in cookie; 32+ random characters, the same on every frontend pod.")
    ] = None
    oidc_redirect_uri: Annotated[str | None, env(
        "CHATWAX_OIDC_REDIRECT_URI",
        "Where the provider sends the browser back: `<page URL>/oauth2callback`, registered "
        "at the provider.")] = None
    oidc_scopes: Annotated[str, env(
        "CHATWAX_OIDC_SCOPES", "Scopes asked of the provider (add `groups` where groups need "
        "it).")] = "openid profile email"
    auth_user_claim: Annotated[str, env(
        "CHATWAX_AUTH_USER_CLAIM",
        "The ID-token claim the chatwax user id is made from: `sub` or `oid` (identifiers "
        "the provider assigns); any other needs CHATWAX_AUTH_USER_CLAIM_VERIFIED_BY.",
        min_length=1)] = "sub"
    auth_user_claim_verified_by: Annotated[str, env(
        "CHATWAX_AUTH_USER_CLAIM_VERIFIED_BY",
        "For a user claim other than `sub`/`oid`: the boolean claim the provider sets `true` "
        "once it verified that value (e.g. `email_verified`); sign-in is refused otherwise."
    )] = ""
    auth_groups_claim: Annotated[str, env(
        "CHATWAX_AUTH_GROUPS_CLAIM", "The ID-token claim that lists the user's groups.",
        min_length=1)] = "groups"
    auth_allowed_domains: Annotated[str, env(
        "CHATWAX_AUTH_ALLOWED_DOMAINS",
        "Comma-separated e-mail domains that may sign in (empty: any).")] = ""
    auth_allowed_groups: Annotated[str, env(
        "CHATWAX_AUTH_ALLOWED_GROUPS",
        "Comma-separated groups that may sign in (empty: any).")] = ""
    auth_admins: Annotated[str, env(
        "CHATWAX_AUTH_ADMINS",
        "Comma-separated admins (see every user's usage): chatwax user ids (`oidc-...`, "
        "shown on the page) or `group:<name>`.")] = ""
    auth_session_max_age_s: Annotated[float, env(
        "CHATWAX_AUTH_SESSION_MAX_AGE",
        "Seconds a sign-in lasts (from the ID token's issue time); then sign in again.",
        gt=0)] = 8 * 3600.0

    @field_validator("oidc_metadata_url", "oidc_client_id", "oidc_redirect_uri",
                     "oidc_client_secret", "oidc_cookie_secret", mode="before")
    @classmethod
    def _empty_auth_value_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("oidc_metadata_url", "oidc_redirect_uri")
    @classmethod
    def _auth_urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        url = urlparse(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("must be an http(s) URL")
        import ipaddress

        try:
            loopback = ipaddress.ip_address(url.hostname).is_loopback
        except ValueError:  # a name: only localhost itself
            loopback = url.hostname == "localhost"
        if url.scheme == "http" and not loopback:
            # Plain HTTP would carry the provider's keys, or the code and the identity
            # cookie, in the clear: only on this machine's own loopback.
            raise ValueError("must be an https URL (http only on localhost/127.0.0.1/::1)")
        if info.field_name == "oidc_redirect_uri" and not url.path.endswith("/oauth2callback"):
            raise ValueError("must end with /oauth2callback (Streamlit's callback path)")
        return value

    @field_validator("oidc_cookie_secret")
    @classmethod
    def _long_cookie_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (e.g. `openssl rand -base64 32`)")
        return value

    @field_validator("auth_admins")
    @classmethod
    def _admins_by_id_or_group(cls, value: str) -> str:
        for admin in split_list(value):
            if not (admin.startswith("group:") or is_signed_in_id(admin)):
                raise ValueError(f"lists {admin!r}: admins are chatwax user ids (oidc-..., "
                                 "shown on the page when signed in) or group:<name>, never "
                                 "e-mail addresses or other claims a user may set")
        return value

    @model_validator(mode="after")
    def _user_claim_is_stable_or_verified(self) -> Settings:
        if self.auth_user_claim not in STABLE_CLAIMS and not self.auth_user_claim_verified_by:
            raise ValueError(
                f"CHATWAX_AUTH_USER_CLAIM={self.auth_user_claim!r} may be a value users set "
                f"themselves: use {' or '.join(STABLE_CLAIMS)}, or name the claim the provider "
                "sets true once it verified it in CHATWAX_AUTH_USER_CLAIM_VERIFIED_BY "
                "(e.g. email_verified)")
        return self

    @model_validator(mode="after")
    def _client_certificate_has_its_key(self) -> Settings:
        if bool(self.nats_cert) != bool(self.nats_key):
            raise ValueError("NATS_CERT and NATS_KEY go together: set both or neither")
        return self

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what is passed in: the environment is read in from_env, at an entry point.
        return (init_settings,)

    @field_validator("nats_user", "nats_ca", "nats_cert", "nats_key", "openai_base_url",
                     "provider_override", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("nats_password", "nats_token", "openai_api_key", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("openai_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value and urlparse(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("prices")
    @classmethod
    def _prices(cls, value: str) -> str:
        parse_prices(value)  # a ConfigError names the bad entry
        return value

    @model_validator(mode="after")
    def _output_fits_the_context(self) -> Settings:
        if self.max_output_tokens >= self.context_tokens:
            raise ValueError("CHATWAX_MAX_OUTPUT_TOKENS must be below CHATWAX_CONTEXT_TOKENS")
        if self.summary_keep >= self.summary_trigger:
            raise ValueError("CHATWAX_SUMMARY_KEEP must be below CHATWAX_SUMMARY_TRIGGER")
        return self

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, values)) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every declared variable; a malformed value names its variable."""
        environ = os.environ if environ is None else environ
        found: dict[str, Any] = {}
        for name, info in cls.model_fields.items():
            var = variable(info)
            if var in environ:
                raw = environ[var]
                found[name] = raw if info.annotation in (str, str | None) else raw.strip()
        return cls(**found)

    @classmethod
    def one_from_env(cls, name: str, environ: Mapping[str, str]) -> Any:
        """One setting as `from_env` reads it, or its default when it is unset or malformed:
        for work done before the whole configuration is checked (which then names what is
        wrong)."""
        info = cls.model_fields[name]
        var = variable(info)
        if var in environ:
            try:
                return getattr(cls.from_env({var: environ[var]}), name)
            except ConfigError:
                pass
        return info.default

    @property
    def summary_tokens(self) -> int:
        """A summary's length at most: CHATWAX_SUMMARY_MAX_TOKENS, but never more than the
        budget's share above the trigger (the summary rides on every call, and must leave
        the recent turns their room)."""
        room = int(self.prompt_token_budget * (1 - self.summary_trigger))
        return max(1, min(self.summary_max_tokens, room))

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
        """Settings safe to log: secrets show only whether they are set."""
        return {name: (("<set>" if value else None) if name in SECRETS else value)
                for name, value in self.model_dump().items()}


def variable(info: FieldInfo) -> str:
    """The environment variable a field is read from."""
    return str(info.validation_alias)


SECRETS: Final = frozenset(name for name, info in Settings.model_fields.items()
                           if SecretStr in getattr(info.annotation, "__args__", (info.annotation,)))


def secret(value: SecretStr | None) -> str | None:
    """The plain text of a secret setting, for the one place that sends it."""
    return value.get_secret_value() if value is not None else None


def _describe(exc: ValidationError, values: Mapping[str, Any]) -> str:
    """The first problem, in terms of environment variables."""
    err = exc.errors()[0]
    fields = Settings.model_fields
    name = str(err["loc"][0]) if err["loc"] else ""
    if name in fields:
        var = variable(fields[name])
    elif any(variable(info) == name for info in fields.values()):
        var = name
    else:
        return str(err["msg"]).removeprefix("Value error, ")
    raw = values.get(name, values.get(var))
    shown = "<secret>" if name in SECRETS or var in {variable(fields[s]) for s in SECRETS} \
        else repr(raw)
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        limit = next(iter(ctx.values()), "")
        word = {"greater_than": "greater than", "greater_than_equal": "at least",
                "less_than": "less than", "less_than_equal": "at most"}[kind]
        if var == "CHATWAX_TEMPERATURE":
            return "CHATWAX_TEMPERATURE must be between 0 and 2"
        return f"{var} must be {word} {limit}"
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind == "value_error":
        return f"{var} {message}"
    return f"{var}={shown} is not valid: {message}"
