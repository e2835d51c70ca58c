"""The tutorial's design, rebuilt on chatwax's NATS I/O, as the benchmark's baseline.

The LLM is called inside `stateful_map`, so a worker serves one prompt at a time and
every other conversation on it waits: throughput is at most workers / LLM latency.
Only `chatwax bench` runs it (`python -m chatwax.bench.baseline`, placed in the cluster by
the same BYTEWAX_* variables as `chatwax dataflow`); nothing else should.
"""

from __future__ import annotations

import os
import sys
import time

import bytewax.operators as op
import openai
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from chatwax.client.loopthread import LoopThread
from chatwax.core.intake import Accepted, parse_inbound
from chatwax.core.settings import Settings, secret
from chatwax.core.wire import ChunkEvent, FinalEvent, PromptRequest, Usage
from chatwax.dataflow.link import NatsLink
from chatwax.dataflow.metrics import Metrics
from chatwax.dataflow.prompts import PromptSource
from chatwax.dataflow.runspec import RunSpec

History = list[dict[str, str]]


def build_baseline(settings: Settings, link: NatsLink) -> Dataflow:
    client = openai.OpenAI(api_key=secret(settings.openai_api_key) or "unused",
                           base_url=settings.openai_base_url, max_retries=0)

    def answer(history: History | None, req: PromptRequest) -> tuple[History, None]:
        history = history or [{"role": "system", "content": settings.system_prompt}]
        history.append({"role": "user", "content": req.prompt})
        started = time.monotonic()
        parts: list[str] = []
        usage = Usage()
        stream = client.chat.completions.create(
            model=settings.model, messages=history, stream=True,  # type: ignore[call-overload] # plain dicts
            stream_options={"include_usage": True}, max_tokens=settings.max_output_tokens)
        for chunk in stream:  # blocking: the whole worker waits here
            if chunk.usage is not None:
                usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    link.publish_many([(req.reply_to, ChunkEvent(
                        req.request_id, len(parts), choice.delta.content).encode())])
                    parts.append(choice.delta.content)
        text = "".join(parts)
        history.append({"role": "assistant", "content": text})
        link.publish_many([(req.reply_to, FinalEvent(
            req.request_id, req.conversation_id, text, settings.model, usage,
            (time.monotonic() - started) * 1000, None, len(history) // 2).encode())])
        return history, None

    flow = Dataflow("tutorial_baseline")
    raw = op.input("prompts", flow, PromptSource(link, settings.poll_ms))
    accepted = op.filter_map(
        "parse", raw, lambda m: p.request if isinstance(
            p := parse_inbound(m, settings.max_prompt_chars), Accepted) else None)
    keyed = op.key_on("by_conversation", accepted, lambda r: r.conversation_id)
    done = op.stateful_map("conversation", keyed, answer)
    op.output("discard", done, _Discard())
    return flow


class _Discard(DynamicSink[object]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DiscardPart:
        return _DiscardPart()


class _DiscardPart(StatelessSinkPartition[object]):
    def write_batch(self, items: list[object]) -> None:
        pass


def main() -> int:
    """One process of the baseline cluster (no recovery: the tutorial had none)."""
    from bytewax._bytewax import cli_main

    settings = Settings.from_env()
    spec = RunSpec.from_env(os.environ)
    link = NatsLink.connect(settings, LoopThread("baseline-loop"), Metrics())
    cli_main(build_baseline(settings, link), workers_per_process=spec.workers_per_process,
             process_id=spec.process_id, addresses=spec.addresses,
             epoch_interval=spec.snapshot_interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
