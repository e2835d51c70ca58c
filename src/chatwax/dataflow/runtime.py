"""What one dataflow process runs on: built once by the entry point and handed down.

One event loop on a thread drives the NATS connection and every LLM call; one queue
carries finished calls back into the flow. Sources and sinks receive
these objects instead of reaching for process-wide singletons.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass

from chatwax.client.loopthread import LoopThread
from chatwax.core.settings import Settings
from chatwax.core.tokens import TokenCounter
from chatwax.dataflow.answerer import Answerer, Feedback
from chatwax.dataflow.edges import LlmSink, ReplySink, ResultSource
from chatwax.dataflow.flow import Edges
from chatwax.dataflow.link import NatsLink
from chatwax.dataflow.metrics import Metrics
from chatwax.dataflow.prompts import PromptSource
from chatwax.llm.tokenizers import RemoteTokenizer, UsageCounter, local_counter


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    metrics: Metrics
    loop: LoopThread
    link: NatsLink
    feedback: Feedback
    answerer: Answerer

    counter: TokenCounter

    @classmethod
    def start(cls, settings: Settings, metrics: Metrics, loop: LoopThread) -> Runtime:
        """Connect to NATS on `loop` and set up the streams; waits until NATS answers."""
        link = NatsLink.connect(settings, loop, metrics)
        feedback: Feedback = queue.SimpleQueue()
        counter = local_counter(settings.model, settings.token_counter)
        remote = (RemoteTokenizer(settings.openai_base_url)
                  if settings.token_counter == "auto" else None)
        answerer = Answerer(settings, link, metrics, feedback, UsageCounter(counter, remote))
        return cls(settings, metrics, loop, link, feedback, answerer, counter)

    def edges(self, *, from_start: bool, on_poll: Callable[[int], None] | None = None
              ) -> Edges:
        """The production edges: the prompts stream, the answerer and its results.

        `from_start`: with recovery on, a first start reads the whole prompts stream.
        `on_poll`: told the worker index whenever a worker polls (the health endpoint).
        """
        poll_ms = self.settings.poll_ms
        return Edges(
            prompts=PromptSource(self.link, poll_ms, from_start=from_start),
            results=ResultSource(self.feedback, poll_ms, on_poll),
            llm=LlmSink(self.answerer),
            replies=ReplySink(self.link),
        )
