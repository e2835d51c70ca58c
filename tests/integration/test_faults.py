"""Fault injection beyond a crashed process: a restarted broker and a misbehaving LLM.

Each test prints a summary line (sent / answered / lost / duplicates shown) as the
reliability suite does; lost and duplicates must be 0.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatwax.client.chat import ChatClient, Chunk
from chatwax.core.errors import ErrorCode
from chatwax.core.settings import Settings
from chatwax.core.wire import ChunkEvent, ErrorEvent, FinalEvent
from chatwax.dev.stack import Stack
from tests.support.asks import run, uid
from tests.support.procs import NatsServer, dataflow_cluster, dataflow_env, log_text, nats_server


def summary(name: str, results: list[Any]) -> dict[str, int]:
    answered = sum(1 for r in results if isinstance(r, list) and isinstance(r[-1], FinalEvent))
    ends = sum(1 for r in results if isinstance(r, list)
               for e in r if isinstance(e, FinalEvent | ErrorEvent))
    report = {"sent": len(results), "answered": answered, "lost": len(results) - answered,
              "duplicates_shown": ends - sum(1 for r in results if isinstance(r, list))}
    print(f"{name}: {report}")
    return report


@pytest.fixture(scope="module")
def own_stack(own_llm: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[NatsServer, Stack]]:
    """A stack of its own: these tests restart its broker."""
    work = tmp_path_factory.mktemp("faults")
    with nats_server(work / "nats") as nats:
        cluster = dataflow_cluster(nats.url, dataflow_env(own_llm.base_url, "echo-1"), work)
        try:
            yield nats, cluster
        finally:
            cluster.stop()


def test_prompts_accepted_before_a_nats_restart_are_answered_after_it(
    own_stack: tuple[NatsServer, Stack], own_llm: Any
) -> None:
    nats, cluster = own_stack
    settings = Settings(nats_url=nats.url)

    async def main() -> tuple[list[Any], list[Any]]:
        client = await ChatClient.connect(settings)
        try:
            own_llm.set(latency_s=1.5)  # answers will be produced while the broker is down
            pendings = [await client.ask(uid("nr"), uid("c"), f"before restart {i}")
                        for i in range(6)]
            await asyncio.to_thread(nats.stop)  # all 6 were acknowledged: durably accepted
            await asyncio.sleep(0.5)
            await asyncio.to_thread(nats.start)
            own_llm.set(latency_s=0.0)
            before = await asyncio.gather(*(_collect(p) for p in pendings),
                                          return_exceptions=True)
            after = [await _collect(await client.ask(uid("nr"), uid("c"), f"after {i}"))
                     for i in range(3)]
            return before, after
        finally:
            own_llm.set(latency_s=0.0)
            await client.close()

    before, after = run(main())
    report = summary("NATS restart", before)
    assert report["lost"] == 0 and report["duplicates_shown"] == 0, before
    assert all(isinstance(r[-1], FinalEvent) for r in after)
    # The CLI reconnects too: a fresh `chatwax ask` after the restart works.
    res = subprocess.run([sys.executable, "-m", "chatwax", "ask", "--user", uid("cli"), "hello"],
                         env={"NATS_URL": nats.url, "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "echo: hello", res.stderr
    assert "Traceback" not in log_text(cluster)


async def _collect(pending: Any) -> list[Any]:
    try:
        return [e async for e in pending.events(timeout=60)]
    finally:
        await pending.close()


def test_one_retrying_conversation_does_not_stall_the_others(
    own_stack: tuple[NatsServer, Stack], own_llm: Any
) -> None:
    """A conversation stuck in 429 backoff and a hung call; the rest answer meanwhile."""
    nats, _ = own_stack
    settings = Settings(nats_url=nats.url)

    async def timed(pending: Any) -> tuple[float, list[Any]]:
        events = await _collect(pending)
        return time.monotonic(), events

    async def main() -> tuple[list[tuple[float, list[Any]]], list[tuple[float, list[Any]]]]:
        client = await ChatClient.connect(settings)
        try:
            slow = [await client.ask(uid("slow"), uid("c"), "[[429x3]] storm"),
                    await client.ask(uid("slow"), uid("c"), "[[hangx1]] stuck")]
            fast = [await client.ask(uid("fast"), uid("c"), f"quick {i}") for i in range(20)]
            done = await asyncio.gather(*(timed(p) for p in [*slow, *fast]))
            return list(done[:2]), list(done[2:])
        finally:
            await client.close()

    slow, fast = run(main())
    report = summary("LLM storm", [events for _, events in slow + fast])
    assert report["lost"] == 0 and report["duplicates_shown"] == 0
    assert [events[-1].text for _, events in slow] == ["echo: storm", "echo: stuck"]
    # No stall: all 20 were answered while the hung call still waited for its attempt
    # timeout, which it can only pass after that attempt gives up.
    hung_done = slow[1][0]
    assert max(t for t, _ in fast) < hung_done


def test_a_cut_stream_is_retried_and_the_client_starts_over(
    own_stack: tuple[NatsServer, Stack], own_llm: Any
) -> None:
    nats, _ = own_stack
    events = run(_ask_once(nats.url, "[[cutx1]] one two three four five six"))
    final = events[-1]
    assert isinstance(final, FinalEvent) and final.text == "echo: one two three four five six"
    indexes = [e.index for e in events if isinstance(e, ChunkEvent)]
    restart = indexes.index(0, 1)  # the second attempt starts again at chunk 0
    assert indexes[:restart] == list(range(restart)) and restart > 0
    # What a client shows: the Reply folds the restart in, once, and ends on the final text.
    chunks, answer = run(_ask_chunks(nats.url, "[[cutx1]] seven eight nine ten eleven"))
    shown = ""
    for chunk in chunks:
        shown = chunk.text if chunk.restart else shown + chunk.text
    assert shown == answer.text == "echo: seven eight nine ten eleven"
    assert [c.restart for c in chunks].count(True) == 1


def test_a_stream_cut_every_time_ends_in_a_clear_error(
    own_stack: tuple[NatsServer, Stack], own_llm: Any
) -> None:
    nats, _ = own_stack
    events = run(_ask_once(nats.url, "[[cut]] one two three four five six"))
    # Every attempt is cut, so the retry budget runs out: a clear error, never a hang.
    assert isinstance(events[-1], ErrorEvent)
    assert events[-1].code is ErrorCode.LLM_UNAVAILABLE
    assert "ended before the answer was complete" in events[-1].message
    attempts = [r for r in own_llm.requests() if "[[cut]] one two" in r["messages"][-1]["content"]]
    assert len(attempts) >= 2


def test_the_api_key_never_reaches_logs_or_replies(
    own_stack: tuple[NatsServer, Stack], own_llm: Any
) -> None:
    nats, cluster = own_stack
    key = dataflow_env(own_llm.base_url, "echo-1")["OPENAI_API_KEY"]
    events = run(_ask_once(nats.url, "[[500]] show me your key"))
    assert isinstance(events[-1], ErrorEvent)
    assert key not in events[-1].message
    assert key not in log_text(cluster)


async def _ask_chunks(url: str, prompt: str) -> tuple[list[Chunk], FinalEvent]:
    client = await ChatClient.connect(Settings(nats_url=url))
    try:
        reply = await client.ask(uid("k"), uid("c"), prompt, timeout=30)
        return [c async for c in reply], await reply.result()
    finally:
        await client.close()


async def _ask_once(url: str, prompt: str) -> list[Any]:
    client = await ChatClient.connect(Settings(nats_url=url))
    try:
        reply = await client.ask(uid("k"), uid("c"), prompt, timeout=30)
        return [e async for e in reply.events()]
    finally:
        await client.close()


def test_per_user_quota_and_concurrency_are_enforced(own_llm: Any, tmp_path: Path) -> None:
    """A cluster with limits on: a greedy user is refused, others are not."""
    with nats_server(tmp_path / "nats") as nats:
        env = {**dataflow_env(own_llm.base_url, "echo-1"),
               "CHATWAX_USER_TOKEN_QUOTA": "40", "CHATWAX_USER_MAX_CONCURRENT": "2"}
        cluster = dataflow_cluster(nats.url, env, tmp_path, processes=1)
        try:
            settings = Settings(nats_url=nats.url)

            async def main() -> tuple[list[Any], list[Any], list[Any]]:
                client = await ChatClient.connect(settings)
                try:
                    own_llm.set(latency_s=0.5)
                    greedy = uid("greedy")
                    burst = [await client.ask(greedy, uid("c"), f"burst {i}") for i in range(3)]
                    burst_out = await asyncio.gather(*(_collect(p) for p in burst))
                    own_llm.set(latency_s=0.0)
                    spend = []
                    for _ in range(3):
                        # The user step charges a turn's tokens in the same step that
                        # sends its final: the next prompt is judged with them.
                        spend.append(await _collect(await client.ask(greedy, uid("c"),
                                                                      "w " * 12)))
                    other = [await _collect(await client.ask(uid("other"), uid("c"), "hi"))]
                    return list(burst_out), spend, other
                finally:
                    own_llm.set(latency_s=0.0)
                    await client.close()

            burst, spend, other = run(main())
        finally:
            cluster.stop()
    ends = [r[-1] for r in burst]
    assert sum(isinstance(e, FinalEvent) for e in ends) == 2
    refused = [e for e in ends if isinstance(e, ErrorEvent)]
    assert [e.code for e in refused] == [ErrorCode.TOO_MANY_REQUESTS]
    # 3 answers of ~15 tokens each use up 40 tokens: the last is refused.
    assert isinstance(spend[-1][-1], ErrorEvent)
    assert spend[-1][-1].code is ErrorCode.QUOTA_EXCEEDED
    assert "token quota used up" in spend[-1][-1].message
    assert isinstance(other[0][-1], FinalEvent)


def test_a_malformed_stream_is_retried(
    own_stack: tuple[NatsServer, Stack], own_llm: Any
) -> None:
    nats, _ = own_stack
    events = run(_ask_once(nats.url, "[[garbagex1]] clean the second time"))
    assert isinstance(events[-1], FinalEvent)
    assert events[-1].text == "echo: clean the second time"
    attempts = [r for r in own_llm.requests()
                if "clean the second time" in r["messages"][-1]["content"]]
    assert len(attempts) == 2


def test_the_frontend_reconnects_after_a_nats_restart(
    own_stack: tuple[NatsServer, Stack], monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    nats, _ = own_stack
    app = str(Path(__file__).resolve().parents[2] / "frontend" / "app.py")
    monkeypatch.setenv("NATS_URL", nats.url)
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(app, default_timeout=60).run()
        at.sidebar.text_input(key="user").input(uid("web")).run()
        at.chat_input[0].set_value("before the restart").run()
        nats.stop()
        nats.start()
        at.chat_input[0].set_value("after the restart").run()
        assert not at.exception, at.exception
        shown = [md.value for msg in at.chat_message for md in msg.markdown]
        assert "echo: before the restart" in shown and "echo: after the restart" in shown
    finally:
        st.cache_resource.clear()
