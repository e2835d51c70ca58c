"""The real dataflow, run by bytewax.testing with several workers, its edges swapped for
in-memory ones: the LLM edge answers each call at once, as a server would, and the
results come back through one in-memory queue as in a process (`chatwax.bench.edges`,
which the restart benchmark seeds its stores with)."""

from __future__ import annotations

import json

from bytewax.testing import TestingSink, TestingSource, cluster_main
from prometheus_client import CollectorRegistry

from chatwax.bench.edges import InstantLoop
from chatwax.core.conversation import Answered, LlmCall, LlmResult
from chatwax.core.errors import ErrorCode
from chatwax.core.intake import Inbound
from chatwax.core.replies import Reply
from chatwax.core.settings import Settings
from chatwax.core.wire import ErrorEvent, PromptRequest, Transcript, Usage
from chatwax.dataflow.flow import build_flow
from chatwax.dataflow.metrics import Metrics


def _echo(call: LlmCall) -> LlmResult:
    """What a server would answer, at once."""
    r = call.request
    return LlmResult(r.request_id, r.conversation_id, f"echo: {r.prompt}",
                     Usage(len(call.messages), 2), "m", 1.0, 0.5, 0.0, user_id=r.user_id)


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
    # Another user's conversation of the same id is another conversation: no history leaks.
    intruder = PromptRequest("r-x", "intruder", "conv-u0", "hi", "_INBOX.x", 1.0)
    items.append(Inbound(0, seq, intruder.encode(), None, 1.0))

    calls = len(users) * 4 + 1
    llm = InstantLoop(calls, _echo)  # one result fed back per call
    out: list[object] = []
    flow = build_flow(Settings(system_prompt="sys"),
                      llm.edges(TestingSource(items, 3), TestingSink(out)),
                      Metrics(CollectorRegistry()))
    cluster_main(flow, [], 0, worker_count_per_proc=3)

    assert len(llm.calls) == calls
    (alone,) = [c for c in llm.calls if c.request.user_id == "intruder"]
    assert alone.messages[1:] == [{"role": "user", "content": "hi"}]
    for u in users:
        calls = [c for c in llm.calls if c.request.user_id == u]
        assert [c.request.prompt for c in calls] == [f"{u} says {t}" for t in range(4)]
        last = calls[-1].messages
        assert last[0] == {"role": "system", "content": "sys"}
        assert [m["content"] for m in last[1:]] == [
            *(x for t in range(3) for x in (f"{u} says {t}", f"echo: {u} says {t}")),
            f"{u} says 3",
        ]
        answers = [a for a in out if isinstance(a, Answered) and a.transcript.user_id == u]
        assert [a.transcript.turn for a in answers] == [1, 2, 3, 4]
        # Each answer leaves as one item: the transcript to store, then its final reply.
        assert all(a.final.subject == f"_INBOX.{a.transcript.request_id[1:]}"
                   for a in answers)
    errors = {r.subject: r.event for r in out
              if isinstance(r, Reply) and isinstance(r.event, ErrorEvent)}
    assert set(errors) == {"_INBOX.bad"}
    assert errors["_INBOX.bad"].code is ErrorCode.BAD_REQUEST
    assert json.loads(errors["_INBOX.bad"].encode())["retryable"] is False


def test_long_conversations_are_summarized_beside_the_answers() -> None:
    from chatwax.core.conversation import SummaryCall, SummaryResult
    from chatwax.core.history import SUMMARY_PREFIX

    def summarize(call: SummaryCall) -> SummaryResult:
        return SummaryResult(call.call_id, call.conversation_id,
                             f"summary of {len(call.folds)} turns", Usage(50, 5), "m", 1.0, 2.0,
                             user_id=call.user_id)

    turns = 30
    items = [_inbound(i + 1, "ada", "long", f"turn {i} " + "words " * 30) for i in range(turns)]
    llm = InstantLoop(turns, _echo, summarize)
    out: list[object] = []
    settings = Settings(system_prompt="sys", history_token_budget=300, summaries=True,
                        user_max_concurrent=0,
                        token_counter="estimate")
    flow = build_flow(settings, llm.edges(TestingSource(items, 1), TestingSink(out)),
                      Metrics(CollectorRegistry()))
    cluster_main(flow, [], 0, worker_count_per_proc=2)

    assert len(llm.calls) == turns
    assert llm.summaries, "a conversation far past its budget is summarized"
    assert all(c.est_tokens <= 300 for c in llm.calls), "every prompt stays within the budget"
    summarized = [c for c in llm.calls if c.messages[1]["content"].startswith(SUMMARY_PREFIX)]
    assert summarized and summarized[-1] is llm.calls[-1]
    stored = [t for t in out if isinstance(t, Transcript) and t.kind == "summary"]
    assert stored and all(t.subject == "chatwax.transcripts.ada.long.summary" for t in stored)
    assert [a.transcript.turn for a in out if isinstance(a, Answered)] == list(
        range(1, turns + 1))
