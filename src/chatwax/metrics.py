"""Every Prometheus metric chatwax exports, in one place.

They live in prometheus_client's default registry, which bytewax's dataflow API already
serves on `/metrics`, so each dataflow process needs no HTTP server of its own. Labels are
bounded: model names pass through `model_label`, never user or conversation ids.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)
TTFT_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_known_models: set[str] = set()
MAX_MODEL_LABELS: Final = 32


def model_label(model: str) -> str:
    """Admit a bounded set of model names; the rest collapse into `other`."""
    if model in _known_models:
        return model
    if len(_known_models) < MAX_MODEL_LABELS and len(model) <= 100:
        _known_models.add(model)
        return model
    return "other"


class Metrics:
    def __init__(self) -> None:
        self.tokens = Counter(
            "chatwax_llm_tokens", "Tokens reported by the LLM server (usage), by type.",
            ["model", "provider", "type"],
        )
        self.cost = Counter(
            "chatwax_llm_cost_usd", "Estimated cost in US dollars, from usage and the price table.",
            ["model", "provider"],
        )
        self.requests = Counter(
            "chatwax_requests", "Prompts finished, by outcome (`ok` or an error code).",
            ["outcome"],
        )
        self.llm_duration = Histogram(
            "chatwax_llm_request_duration_seconds",
            "One prompt's LLM time, first attempt to last token, retries included.",
            ["model", "provider"], buckets=LATENCY_BUCKETS,
        )
        self.ttft = Histogram(
            "chatwax_llm_time_to_first_token_seconds",
            "From the LLM call's start to the first streamed token.",
            ["model", "provider"], buckets=TTFT_BUCKETS,
        )
        self.e2e = Histogram(
            "chatwax_request_duration_seconds",
            "From the prompt's storage in JetStream to its final reply.",
            ["outcome"], buckets=LATENCY_BUCKETS,
        )
        self.queue_wait = Histogram(
            "chatwax_queue_wait_seconds",
            "From storage in JetStream to the start of the LLM call (ordering and queueing).",
            buckets=LATENCY_BUCKETS,
        )
        self.retries = Counter(
            "chatwax_llm_retries", "LLM attempts that were retried, by reason.",
            ["model", "provider", "reason"],
        )
        self.rejected = Counter(
            "chatwax_rejected_inputs", "Prompts refused before reaching the LLM, by reason.",
            ["reason"],
        )
        self.in_flight = Gauge(
            "chatwax_llm_calls_in_flight", "LLM calls running in this process.",
            ["model", "provider"],
        )
        self.active_conversations = Gauge(
            "chatwax_active_conversations", "Conversations held in this process's state.",
        )
        self.history_dropped = Counter(
            "chatwax_history_turns_dropped",
            "Past turns left out of a call because they did not fit the token budget.",
        )
        self.context_tokens = Histogram(
            "chatwax_context_tokens",
            "Estimated input tokens per call (system prompt, history and prompt).",
            buckets=(64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072),
        )
        self.prompts_pending = Gauge(
            "chatwax_prompts_pending",
            "Prompts stored in JetStream but not yet taken by the dataflow (backlog).",
            ["partition"],
        )
        self.transcript_failures = Counter(
            "chatwax_transcript_failures", "Completed turns that could not be stored.",
        )


    def prime(self, model: str, provider: str) -> None:
        """Create every known series at zero, so each process exports them from the start.

        A series that appears only after its first event makes rates and sums across
        processes show gaps ("No data") until then.
        """
        from chatwax.errors import ErrorCode

        labels = (model_label(model), provider)
        for kind in ("input", "output"):
            self.tokens.labels(*labels, kind)
        self.cost.labels(*labels)
        self.llm_duration.labels(*labels)
        self.ttft.labels(*labels)
        self.in_flight.labels(*labels)
        for reason in RETRY_REASONS:
            self.retries.labels(*labels, reason)
        for outcome in ("ok", *(c.value for c in ErrorCode)):
            self.requests.labels(outcome)
        for code in REJECT_REASONS:
            self.rejected.labels(code)
        for outcome in ("ok", "error"):
            self.e2e.labels(outcome)


RETRY_REASONS: Final = ("rate_limited", "timeout", "connection", "server_error", "cut_stream",
                        "malformed_stream")
REJECT_REASONS: Final = ("bad_request", "prompt_too_large", "unsupported_version",
                         "conversation_forbidden", "quota_exceeded", "too_many_requests")

METRICS: Final = Metrics()
