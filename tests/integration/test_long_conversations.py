"""Long conversations through the real stack: `chatwax up` with a small history budget, the
echo LLM server, real Bytewax processes.

The echo server answers a summary request (the summarizer's system prompt) with `summary:`
and the words of the folded prompts, so a test can see which turns a summary holds and
when a chat request carries it. Its request log has each request's arrival and end.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatwax.client.chat import ChatClient
from chatwax.core.history import SUMMARY_PREFIX
from chatwax.core.settings import Settings
from chatwax.core.wire import ErrorEvent, FinalEvent
from tests.support.asks import run, uid
from tests.support.metrics import metric, scrape
from tests.support.procs import children_of
from tests.support.up import Up, up_factory
from tests.support.waiting import wait_until

BUDGET = 300
FILLER = " ".join(["word"] * 16)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, own_llm: Any) -> Iterator[Up]:
    starts = up_factory(tmp_path_factory.mktemp("long"), own_llm)
    start = next(starts)
    u = start("--no-ui", "--snapshot-interval", "1", env={
        "CHATWAX_HISTORY_TOKEN_BUDGET": str(BUDGET), "CHATWAX_SUMMARY_MAX_TOKENS": "40",
        "CHATWAX_USER_MAX_CONCURRENT": "0", "CHATWAX_LLM_RETRY_MAX_TIME": "2"})
    u.wait_ready()
    yield u
    next(starts, None)  # stops the stack


def _settings(u: Up) -> Settings:
    return Settings(nats_url=f"nats://127.0.0.1:{u.nats_port}")


def _metrics(u: Up) -> dict[Any, float]:
    return scrape(f"http://127.0.0.1:{u.metrics_port + i}/metrics" for i in range(2))


async def _talk(settings: Settings, user: str, conv: str, turns: range
                ) -> list[tuple[FinalEvent | ErrorEvent, float]]:
    """One turn after the other, as a person would: each answer and its latency. Prompts
    start with the conversation id, so its requests can be told apart in the server's log."""
    client = await ChatClient.connect(settings)
    out: list[tuple[FinalEvent | ErrorEvent, float]] = []
    try:
        for i in turns:
            started = time.monotonic()
            pending = await client.ask(user, conv, f"{conv} turn {i}: fact-{i} {FILLER}")
            last = [e async for e in pending.events(60)][-1]
            await pending.close()
            assert isinstance(last, FinalEvent | ErrorEvent)
            out.append((last, time.monotonic() - started))
    finally:
        await client.close()
    return out


def _of(llm: Any, tag: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """This conversation's chat requests and summary requests, in arrival order."""
    chats, summaries = [], []
    for r in llm.requests():
        text = " ".join(str(m.get("content")) for m in r["messages"])
        if tag not in text:
            continue
        (summaries if r["summary"] else chats).append(r)
    return chats, summaries


def _sizes(requests: list[dict[str, Any]]) -> list[int]:
    """Each request's prompt tokens as the server counted them (its context, the truth)."""
    return [int(r["usage"]["prompt_tokens"]) for r in requests]


def _carries_summary(request: dict[str, Any]) -> bool:
    return any(m["role"] == "system" and m["content"].startswith(SUMMARY_PREFIX)
               for m in request["messages"])


def test_a_long_conversation_answers_from_a_summary_made_beside_it(stack: Up,
                                                                   own_llm: Any) -> None:
    # An answer takes 50 ms, a summary 500 ms: about ten turns go by while one is made.
    own_llm.set(latency_s=0.05, summary_latency_s=0.5, summary_fail=False)
    user, tag = uid("long"), uid("t")
    before = _metrics(stack)
    try:
        answers = run(_talk(_settings(stack), user, tag, range(32)))
    finally:
        own_llm.set(latency_s=0.0)
    # Every turn answered, in order, from the right prompt.
    assert [type(a) for a, _ in answers] == [FinalEvent] * 32
    assert all(f"fact-{i}" in a.text for i, (a, _) in enumerate(answers))

    chats = wait_until(lambda: (c := _of(own_llm, tag))[1] and c, 10, "a summary request")
    chat_requests, summaries = chats
    sizes = _sizes(chat_requests)
    print("prompt tokens by turn, as the server counted them (summaries on, budget 300):",
          sizes)
    print("latency by turn (s):", [round(t, 3) for _, t in answers])
    assert max(sizes) <= BUDGET, "every prompt stays within the budget"
    assert sizes[-1] < sum(len(f"{tag} turn 0: fact-0 {FILLER}".split()) * 2 for _ in range(32))
    assert len(summaries) >= 2, "the summary is remade as the conversation goes on"
    first = summaries[0]
    # No answer waited for it: a chat request came in and was answered while the
    # summary was still being written.
    assert any(first["received_at"] < c["received_at"] and c["finished_at"] < first[
        "finished_at"] for c in chat_requests)
    # Once it is back, every prompt carries it, and it holds the first facts.
    since = next(i for i, c in enumerate(chat_requests) if _carries_summary(c))
    later = chat_requests[since:]
    assert chat_requests[since]["received_at"] > first["received_at"]
    assert all(_carries_summary(c) for c in later)
    summary_text = next(m["content"] for m in later[-1]["messages"]
                        if m["content"].startswith(SUMMARY_PREFIX))
    assert "fact-0" in summary_text and "summary:" in summary_text
    assert "fact-0" not in " ".join(m["content"] for m in later[-1]["messages"]
                                    if m["role"] != "system"), "folded turns are not resent"
    after = _metrics(stack)
    made = metric(after, "chatwax_summaries_total", outcome="ok") - metric(
        before, "chatwax_summaries_total", outcome="ok")
    assert made >= len(summaries) - 1  # the last may still be on its way
    assert metric(after, "chatwax_summary_turns_folded_total") > metric(
        before, "chatwax_summary_turns_folded_total")


def test_a_failing_summary_falls_back_to_trimming_and_no_user_sees_an_error(
        stack: Up, own_llm: Any) -> None:
    own_llm.set(summary_latency_s=0.0, summary_fail=True)
    try:
        user, tag = uid("fail"), uid("t")
        failed = metric(_metrics(stack), "chatwax_summaries_total", outcome="error")
        answers = run(_talk(_settings(stack), user, tag, range(20)))
        # A summary retries 5xx like any call (2 s here) before it counts as failed.
        wait_until(lambda: metric(_metrics(stack), "chatwax_summaries_total", outcome="error")
                   > failed, 30, "a failed summary counted")
    finally:
        own_llm.set(summary_fail=False)
    assert [type(a) for a, _ in answers] == [FinalEvent] * 20
    chat_requests, summaries = _of(own_llm, tag)
    sizes = _sizes(chat_requests)
    print("prompt tokens by turn, as the server counted them (summaries failing: trimming, "
          "budget 300):", sizes)
    assert summaries and all(s["status"] == 500 for s in summaries)
    assert max(sizes) <= BUDGET
    assert not any(_carries_summary(c) for c in chat_requests)
    assert "fact-0" not in " ".join(m["content"] for m in chat_requests[-1]["messages"])


def _dataflow_pids(u: Up) -> list[int]:
    return [pid for pid in children_of(u.proc.pid)
            if b"dataflow" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_a_summary_cut_off_by_a_crash_is_made_again(stack: Up, own_llm: Any) -> None:
    own_llm.set(summary_latency_s=4.0, summary_fail=False)
    user, tag = uid("crash"), uid("t")
    settings = _settings(stack)
    run(_talk(settings, user, tag, range(6)))  # past the trigger: a summary is under way
    wait_until(lambda: _of(own_llm, tag)[1], 10, "the summary request")
    time.sleep(2.0)  # a snapshot (every second) holds the summary in flight
    # Either process's death restarts the cluster from the last snapshot (the survivor
    # replaces itself to re-form it), wherever the conversation lives.
    restarts = stack.output().count("restarting it")
    os.kill(_dataflow_pids(stack)[1], signal.SIGKILL)
    wait_until(lambda: stack.output().count("restarting it") > restarts, 30, "a restart")
    own_llm.set(summary_latency_s=0.0)
    # The resumed conversation asks for the same summary again...
    wait_until(lambda: len(_of(own_llm, tag)[1]) >= 2, 60, "the summary asked again")
    first, again = _of(own_llm, tag)[1][:2]
    assert again["messages"] == first["messages"]
    # ...and goes on from it: every turn once, in order, and the summary in the prompt.
    answers = run(_talk(settings, user, tag, range(6, 10)))
    assert [type(a) for a, _ in answers] == [FinalEvent] * 4
    assert [a.turn for a, _ in answers] == [7, 8, 9, 10]
    assert _carries_summary(_of(own_llm, tag)[0][-1])
