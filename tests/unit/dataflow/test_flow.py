"""The real dataflow, run by bytewax.testing with several workers, its edges swapped for
in-memory ones: the LLM edge answers each call at once, as a server would, and the
feedback loop (results, releases) goes through one in-memory queue as in a process
(`chatwax.bench.edges`, which the restart benchmark seeds its stores with)."""

from __future__ import annotations

import json

from bytewax.testing import TestingSink, TestingSource, cluster_main
from prometheus_client import CollectorRegistry

from chatwax.bench.edges import InstantLoop
from chatwax.core.conversation import LlmCall, LlmResult
from chatwax.core.errors import ErrorCode
from chatwax.core.protocol import ErrorEvent, Inbound, PromptRequest, Reply, Transcript, Usage
from chatwax.core.settings import Settings
from chatwax.dataflow.flow import build_flow
from chatwax.dataflow.metrics import Metrics


def _echo(call: LlmCall) -> LlmResult:
    """What a server would answer, at once."""
    r = call.request
    return LlmResult(r.request_id, r.conversation_id, f"echo: {r.prompt}",
                     Usage(len(call.messages), 2), "m", 1.0, 0.5, 0.0)


def _inbound(seq: int, user: str, conv: str, prompt: str) -> Inbound:
    req = PromptRequest(f"r{seq}", user, conv, prompt, f"_INBOX.{seq}", 1.0)
    return Inbound(0, seq, req.encode(), req.reply_to, 1.0)


def test_conversations_keep_order_and_history_across_workers() -> None:
    users = [f"u{i}" for i in range(6)]
    items: list[Inbound] = []
    seq = 0
    for turn in range(4):
        for u in users:
            seq += 1
            items.append(_inbound(seq, u, f"conv-{u}", f"{u} says {turn}"))
    seq += 1
    items.append(Inbound(0, seq, b"{broken", "_INBOX.bad", 1.0))
    seq += 1
    bad_owner = PromptRequest("r-x", "intruder", "conv-u0", "hi", "_INBOX.x", 1.0)
    items.append(Inbound(0, seq, bad_owner.encode(), None, 1.0))

    calls = len(users) * 4
    # Fed back: one result and one release per call, one release for the intruder.
    llm = InstantLoop(2 * calls + 1, _echo)
    out: list[Reply | Transcript] = []
    flow = build_flow(Settings(system_prompt="sys"),
                      llm.edges(TestingSource(items, 3), TestingSink(out)),
                      Metrics(CollectorRegistry()))
    cluster_main(flow, [], 0, worker_count_per_proc=3)

    assert len(llm.calls) == calls
    assert sorted(r.request_id for r in llm.releases) == sorted(
        [c.request.request_id for c in llm.calls] + ["r-x"])
    for u in users:
        calls = [c for c in llm.calls if c.request.user_id == u]
        assert [c.request.prompt for c in calls] == [f"{u} says {t}" for t in range(4)]
        last = calls[-1].messages
        assert last[0] == {"role": "system", "content": "sys"}
        assert [m["content"] for m in last[1:]] == [
            *(x for t in range(3) for x in (f"{u} says {t}", f"echo: {u} says {t}")),
            f"{u} says 3",
        ]
        transcripts = [t for t in out if isinstance(t, Transcript) and t.user_id == u]
        assert [t.turn for t in transcripts] == [1, 2, 3, 4]
    errors = {r.subject: r.event for r in out
              if isinstance(r, Reply) and isinstance(r.event, ErrorEvent)}
    assert errors["_INBOX.bad"].code is ErrorCode.BAD_REQUEST
    assert errors["_INBOX.x"].code is ErrorCode.CONVERSATION_FORBIDDEN
    assert json.loads(errors["_INBOX.bad"].encode())["retryable"] is False
