"""Every Prometheus metric chatwax exports, in one place.

The entry point makes one `Metrics` in prometheus_client's default registry, which Bytewax's
dataflow API already serves on `/metrics`, and hands it down; tests pass a registry of
their own. Labels are bounded: model names pass through `model_label`, never user or
conversation ids.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from chatwax.core.errors import ErrorCode
from chatwax.core.wire import USAGE_SOURCES
from chatwax.llm.failures import RetryReason

LATENCY_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)
TTFT_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

MAX_MODEL_LABELS: Final = 32
GUARDED_STEPS: Final = ("parse", "user", "nats", "compat")
"""The steps whose failures are set aside (`chatwax.dataflow.guard`; `compat` is the
tutorial adapter, which answers its failures at once and stores no dead letter)."""
REJECT_REASONS: Final = ("bad_request", "prompt_too_large", "unsupported_version",
                         "conversation_forbidden", "quota_exceeded", "too_many_requests",
                         "conversation_limit")


class Metrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._known_models: set[str] = set()
        r = registry
        self.tokens = Counter(
            "chatwax_llm_tokens",
            "Tokens spent, by type, and by who counted them: the LLM server's usage "
            "(`server`), or chatwax when the server sent none (`tokenizer`, `estimate`).",
            ["model", "provider", "type", "counted"], registry=r,
        )
        self.cost = Counter(
            "chatwax_llm_cost_usd", "Estimated cost in US dollars, from usage and the price table.",
            ["model", "provider"], registry=r,
        )
        self.requests = Counter(
            "chatwax_requests", "Prompts finished, by outcome (`ok` or an error code).",
            ["outcome"], registry=r,
        )
        self.llm_duration = Histogram(
            "chatwax_llm_request_duration_seconds",
            "One prompt's LLM time, first attempt to last token, retries included.",
            ["model", "provider"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.ttft = Histogram(
            "chatwax_llm_time_to_first_token_seconds",
            "From the LLM call's start to the first streamed token.",
            ["model", "provider"], buckets=TTFT_BUCKETS, registry=r,
        )
        self.e2e = Histogram(
            "chatwax_request_duration_seconds",
            "From the prompt's storage in JetStream to its final reply.",
            ["outcome"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.queue_wait = Histogram(
            "chatwax_queue_wait_seconds",
            "From storage in JetStream to the start of the LLM call (ordering and queueing).",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.retries = Counter(
            "chatwax_llm_retries", "LLM attempts that were retried, by reason.",
            ["model", "provider", "reason"], registry=r,
        )
        self.rejected = Counter(
            "chatwax_rejected_inputs", "Prompts refused before reaching the LLM, by reason.",
            ["reason"], registry=r,
        )
        self.in_flight = Gauge(
            "chatwax_llm_calls_in_flight", "LLM calls running in this process.",
            ["model", "provider"], registry=r,
        )
        self.active_conversations = Gauge(
            "chatwax_active_conversations", "Conversations held in this process's state.",
            registry=r,
        )
        self.history_dropped = Counter(
            "chatwax_history_turns_dropped",
            "Past turns left out of a call because they did not fit the token budget.", registry=r,
        )
        self.context_tokens = Histogram(
            "chatwax_context_tokens",
            "Estimated input tokens per call (system prompt, history and prompt).",
            buckets=(64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072),
            registry=r,
        )
        self.prompts_pending = Gauge(
            "chatwax_prompts_pending",
            "Prompts stored in JetStream but not yet taken by the dataflow (backlog).",
            ["partition"], registry=r,
        )
        self.summaries = Counter(
            "chatwax_summaries", "Conversation summaries made off the request path, by outcome.",
            ["outcome"], registry=r,
        )
        self.summary_turns_folded = Counter(
            "chatwax_summary_turns_folded", "Turns folded into a conversation's summary.",
            registry=r,
        )
        self.conversations_expired = Counter(
            "chatwax_conversations_expired",
            "Conversations that left the dataflow's state after the retention age idle.",
            registry=r,
        )
        self.dead_letters = Counter(
            "chatwax_dead_letters",
            "Items that made a dataflow step fail, set aside in the dead-letter stream instead "
            "of stopping the cluster, by step.", ["step"], registry=r,
        )
        self.unreadable_snapshots = Counter(
            "chatwax_unreadable_snapshots",
            "Keys whose recovery snapshot this build cannot read (kept as they are; their "
            "items are set aside), by step.", ["step"], registry=r,
        )
        self.transcript_failures = Counter(
            "chatwax_transcript_failures", "Completed turns that could not be stored.", registry=r,
        )

    def model_label(self, model: str) -> str:
        """Admit a bounded set of model names; the rest collapse into `other`."""
        if model in self._known_models:
            return model
        if len(self._known_models) < MAX_MODEL_LABELS and len(model) <= 100:
            self._known_models.add(model)
            return model
        return "other"

    def refused(self, code: ErrorCode) -> None:
        """A prompt refused before reaching the LLM: counted as rejected and as finished."""
        self.rejected.labels(code.value).inc()
        self.requests.labels(code.value).inc()

    def prime(self, model: str, provider: str) -> None:
        """Create every known series at zero, so each process exports them from the start.

        A series that appears only after its first event makes rates and sums across
        processes show gaps ("No data") until then.
        """
        labels = (self.model_label(model), provider)
        for kind in ("input", "output"):
            for counted in USAGE_SOURCES:
                self.tokens.labels(*labels, kind, counted)
        self.cost.labels(*labels)
        self.llm_duration.labels(*labels)
        self.ttft.labels(*labels)
        self.in_flight.labels(*labels)
        for reason in RetryReason:
            self.retries.labels(*labels, reason.value)
        for outcome in ("ok", *(c.value for c in ErrorCode)):
            self.requests.labels(outcome)
        for code in REJECT_REASONS:
            self.rejected.labels(code)
        for outcome in ("ok", "error"):
            self.e2e.labels(outcome)
            self.summaries.labels(outcome)
        for step in GUARDED_STEPS:
            self.dead_letters.labels(step)
            self.unreadable_snapshots.labels(step)

