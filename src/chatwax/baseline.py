"""The tutorial's design, rebuilt on chatwax's NATS I/O, as the benchmark's baseline.

The LLM is called inside `stateful_map`, so a worker serves one prompt at a time and
every other conversation on it waits: throughput is at most workers / LLM latency.
Only `chatwax bench` runs it (`chatwax dataflow --baseline`); nothing else should.
"""

from __future__ import annotations

import time

import bytewax.operators as op
import openai
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from chatwax.nats_io import NatsLink, PromptSource
from chatwax.protocol import ChunkEvent, FinalEvent, PromptRequest, Usage
from chatwax.settings import Settings
from chatwax.steps import Accepted, parse_inbound

History = list[dict[str, str]]


def build_baseline(settings: Settings) -> Dataflow:
    client = openai.OpenAI(api_key=settings.openai_api_key or "unused",
                           base_url=settings.openai_base_url, max_retries=0)
    link = NatsLink.get(settings)

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
    raw = op.input("prompts", flow, PromptSource(settings))
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
