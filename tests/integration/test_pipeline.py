"""The whole pipeline against real parts: nats-server, a 2-process bytewax cluster, the
real openai client talking to an OpenAI-compatible server started by the tests."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import nats as nats_py

from chatwax.client.chat import ChatClient
from chatwax.core import wire
from chatwax.core.errors import ErrorCode
from chatwax.core.settings import Settings
from chatwax.core.wire import ChunkEvent, ErrorEvent, FinalEvent, ReplyEvent
from chatwax.dev.stack import Stack
from tests.support.asks import ask_all, run, uid
from tests.support.metrics import metric, scrape
from tests.support.waiting import wait_until


async def collect(pending: Any, timeout: float = 30.0) -> list[ReplyEvent]:
    return [e async for e in pending.events(timeout)]


def test_concurrent_users_stream_in_order_with_their_own_history(
    cluster: Stack, llm: Any, settings: Settings
) -> None:
    """3 users x 3 turns in flight at once: ordered chunks, right history, no leaks."""
    users = [uid("user") for _ in range(3)]
    convs = {u: uid("conv") for u in users}

    async def main() -> dict[str, list[list[ReplyEvent]]]:
        client = await ChatClient.connect(settings)
        try:
            pendings: dict[str, list[Any]] = {u: [] for u in users}
            for turn in range(3):  # stored in order per conversation, answered concurrently
                for u in users:
                    pendings[u].append(await client.ask(u, convs[u], f"{u} turn {turn}"))
            results = await asyncio.gather(
                *(collect(p) for u in users for p in pendings[u])
            )
        finally:
            await client.close()
        it = iter(results)
        return {u: [next(it) for _ in range(3)] for u in users}

    by_user = run(main())
    for u, turns in by_user.items():
        for n, events in enumerate(turns):
            final = events[-1]
            assert isinstance(final, FinalEvent), events
            assert final.text == f"echo: {u} turn {n}"
            assert final.turn == n + 1
            chunks = [e for e in events if isinstance(e, ChunkEvent)]
            assert [c.index for c in chunks] == list(range(len(chunks)))
            assert "".join(c.delta for c in chunks) == final.text
            assert final.usage.output_tokens == len(final.text.split())
    # The LLM saw each conversation's own earlier turns, in order, and nobody else's.
    for u in users:
        seen = [r for r in llm.requests()
                if r["messages"][-1]["content"].startswith(f"{u} turn")]
        assert len(seen) == 3
        for n, req in enumerate(sorted(seen, key=lambda r: r["messages"][-1]["content"])):
            contents = [m["content"] for m in req["messages"] if m["role"] != "system"]
            expected: list[str] = []
            for k in range(n):
                expected += [f"{u} turn {k}", f"echo: {u} turn {k}"]
            assert contents == [*expected, f"{u} turn {n}"]
            others = [o for o in users if o != u]
            assert not any(o in c for o in others for c in contents)


def test_transcripts_reload_a_conversation(cluster: Stack, settings: Settings) -> None:
    user, conv = uid("reload"), uid("conv")

    async def main() -> tuple[list[wire.Transcript], list[Any]]:
        for i in range(2):
            events = await ask_all(settings, user, conv, f"question {i}")
            assert isinstance(events[-1], FinalEvent)
        client = await ChatClient.connect(settings)
        try:  # read at once: a final reply is sent only once its turn is stored
            return await client.history(user, conv), await client.conversations(user)
        finally:
            await client.close()

    turns, convs = run(main())
    assert [(t.turn, t.prompt, t.answer) for t in turns] == [
        (1, "question 0", "echo: question 0"), (2, "question 1", "echo: question 1"),
    ]
    assert all(t.user_id == user and t.model == "echo-1" and t.usage.total_tokens > 0
               for t in turns)
    assert [(c.conversation_id, c.turns, c.title) for c in convs] == [(conv, 2, "question 0")]


def test_token_metrics_add_up_to_the_llm_servers_usage(
    cluster: Stack, llm: Any, settings: Settings
) -> None:
    run(ask_all(settings, uid("metrics"), uid("conv"), "count my tokens please"))
    usage = llm.usage()
    samples = scrape(cluster.metrics_urls())
    name = "chatwax_llm_tokens_total"
    assert metric(samples, name, type="input", model="echo-1") == usage["prompt_tokens"]
    assert metric(samples, name, type="output", model="echo-1") == usage["completion_tokens"]
    assert metric(samples, "chatwax_requests_total", outcome="ok") >= 1
    assert metric(samples, "chatwax_llm_time_to_first_token_seconds_count") >= 1
    assert metric(samples, "chatwax_request_duration_seconds_count", outcome="ok") >= 1
    # Labels stay bounded: no user or conversation ids anywhere.
    assert not any("user" in k or "conversation" in k
                   for (_, labels) in samples for k, _ in labels)


def test_rate_limit_is_retried_then_answered(
    cluster: Stack, llm: Any, settings: Settings
) -> None:
    retries = "chatwax_llm_retries_total"
    before = metric(scrape(cluster.metrics_urls()), retries, reason="rate_limited")
    events = run(ask_all(settings, uid("rl"), uid("conv"), "[[429x1]] after a retry"))
    final = events[-1]
    assert isinstance(final, FinalEvent) and final.text == "echo: after a retry"
    attempts = [r for r in llm.requests() if "after a retry" in r["messages"][-1]["content"]]
    assert [a["status"] for a in attempts] == [429, 200]
    after = metric(scrape(cluster.metrics_urls()), retries, reason="rate_limited")
    assert after == before + 1


def test_persistent_server_error_gives_an_error_reply(
    cluster: Stack, settings: Settings
) -> None:
    user, conv = uid("err"), uid("conv")
    events = run(ask_all(settings, user, conv, "[[500]] never works"))
    err = events[-1]
    assert isinstance(err, ErrorEvent)
    assert err.code is ErrorCode.LLM_UNAVAILABLE
    assert "gave up after" in err.message
    # The conversation still works afterwards, and the failed turn is not in its history.
    ok = run(ask_all(settings, user, conv, "works now"))[-1]
    assert isinstance(ok, FinalEvent) and ok.turn == 1


def test_hung_llm_attempt_times_out_and_is_retried(
    cluster: Stack, llm: Any, settings: Settings
) -> None:
    events = run(ask_all(settings, uid("hang"), uid("conv"), "[[hangx1]] eventually"))
    assert isinstance(events[-1], FinalEvent) and events[-1].text == "echo: eventually"


def test_malformed_messages_get_error_replies_and_the_flow_keeps_going(
    cluster: Stack, settings: Settings
) -> None:
    user, conv = uid("bad"), uid("conv")
    rejected_before = metric(scrape(cluster.metrics_urls()), "chatwax_rejected_inputs_total")

    async def main() -> list[Any]:
        nc = await nats_py.connect(settings.nats_url)
        js = nc.jetstream()
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        bad_payloads = [
            b"{not json",
            b"\xff\xfe\x00",
            json.dumps({"v": 1, "user_id": user, "prompt": "no ids"}).encode(),
            json.dumps({"v": 1, "request_id": "r-big", "user_id": user, "conversation_id": conv,
                        "prompt": "x" * 40_000, "reply_to": inbox}).encode(),
            json.dumps({"v": 9, "request_id": "r-v9", "user_id": user, "conversation_id": conv,
                        "prompt": "hi", "reply_to": inbox}).encode(),
            json.dumps({"v": 1, "request_id": "r-inj", "user_id": "a.>", "conversation_id": conv,
                        "prompt": "hi", "reply_to": inbox}).encode(),
        ]
        for payload in bad_payloads:
            await js.publish(wire.prompt_subject(0), payload,
                             headers={wire.REPLY_TO_HEADER: inbox})
        # No reply address at all: refused silently, but must not hurt the flow.
        await js.publish(wire.prompt_subject(1), b"garbage")
        replies = [wire.decode_event((await sub.next_msg(timeout=15)).data)
                   for _ in bad_payloads]
        await nc.close()
        return replies

    replies = run(main())
    assert all(isinstance(r, ErrorEvent) for r in replies)
    codes = sorted(r.code.value for r in replies)
    assert codes == sorted(["bad_request", "bad_request", "bad_request", "prompt_too_large",
                            "unsupported_version", "bad_request"])
    by_id = {r.request_id: r for r in replies}
    assert by_id["r-big"].code is ErrorCode.PROMPT_TOO_LARGE
    assert by_id["r-inj"].code is ErrorCode.BAD_REQUEST
    ok = run(ask_all(settings, user, conv, "still alive?"))[-1]
    assert isinstance(ok, FinalEvent) and ok.text == "echo: still alive?"
    # Every bad message is counted, the silent one too (on another partition, so it may be
    # read a moment after the others were answered).
    def rejected() -> float:
        return metric(scrape(cluster.metrics_urls()), "chatwax_rejected_inputs_total") \
            - rejected_before

    wait_until(lambda: rejected() >= len(replies) + 1, 15, "every bad message counted")


def test_a_conversation_id_names_a_conversation_of_its_user_only(
        cluster: Stack, llm: Any, settings: Settings) -> None:
    """Another user sending to the same conversation id gets a conversation of their own:
    they never see, continue or read the first user's (conversations live in their user's
    state, transcripts under their user's subject)."""
    conv, owner, intruder = uid("conv"), uid("owner"), uid("intruder")
    assert isinstance(run(ask_all(settings, owner, conv, "my secret is 42"))[-1], FinalEvent)
    theirs = run(ask_all(settings, intruder, conv, "what is the secret?"))[-1]
    assert isinstance(theirs, FinalEvent) and theirs.turn == 1
    sent = next(r for r in reversed(llm.requests())
                if r["messages"][-1]["content"] == "what is the secret?")
    assert not [m for m in sent["messages"] if "42" in m["content"]]

    async def read_as(user: str) -> list[str]:
        client = await ChatClient.connect(settings)
        try:  # read at once: a final reply is sent only once its turn is stored
            return [t.prompt for t in await client.history(user, conv)]
        finally:
            await client.close()

    assert run(read_as(owner)) == ["my secret is 42"]
    assert run(read_as(intruder)) == ["what is the secret?"]


def test_tutorial_style_request_on_prompts(
    cluster: Stack, llm: Any, settings: Settings
) -> None:
    user = uid("tut")

    async def main() -> list[bytes]:
        nc = await nats_py.connect(settings.nats_url)
        out = []
        for payload in (
            {"user_id": user, "prompt": "first"},
            {"user_id": user, "prompt": "second"},
        ):
            msg = await nc.request("prompts", json.dumps(payload).encode(), timeout=30)
            out.append(msg.data)
        out.append((await nc.request("prompts", b"not json", timeout=30)).data)
        out.append((await nc.request("prompts", b'{"user_id": "x"}', timeout=30)).data)
        await nc.close()
        return out

    first, second, bad_json, no_prompt = run(main())
    assert first == b"echo: first"
    assert second == b"echo: second"
    assert bad_json.startswith(b"error: ") and b"JSON" in bad_json
    assert no_prompt.startswith(b"error: ") and b"'prompt'" in no_prompt
    # Memory per user_id, as in the tutorial: the second call carried the first turn.
    req = next(r for r in llm.requests() if r["messages"][-1]["content"] == "second"
               and any(m["content"] == "echo: first" for m in r["messages"]))
    assert [m["content"] for m in req["messages"][1:]] == ["first", "echo: first", "second"]


def test_usage_command_totals_equal_the_llm_servers_usage(
    cluster: Stack, llm: Any, settings: Settings
) -> None:
    """`chatwax usage` (from transcripts) matches what the LLM server reported, exactly."""
    for i in range(2):
        run(ask_all(settings, uid("usage"), uid("conv"), f"usage check {i}"))
    env = {**os.environ, "NATS_URL": settings.nats_url}

    def totals() -> tuple[str, list[str]] | None:
        """`chatwax usage`'s output and its total row, once they match the LLM server."""
        res = subprocess.run([sys.executable, "-m", "chatwax", "usage", "--since", "all",
                              "--by", "model"], env=env, capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 0, res.stderr
        cells = res.stdout.strip().splitlines()[-1].split()
        usage = llm.usage()
        # turns + summaries, input, output: the server counts both kinds of call
        got = (int(cells[1]) + int(cells[2]), int(cells[3]), int(cells[4]))
        want = (usage["requests_ok"], usage["prompt_tokens"], usage["completion_tokens"])
        return (res.stdout, cells) if got == want else None

    # Turns are stored before their final; a summary (made off the request path) may be
    # on its way, and is stored when it is done.
    stdout, cells = wait_until(totals, 10, "chatwax usage matching the LLM server's counts")
    assert cells[0] == "total"
    assert cells[6] == "0"  # the server reported every count: none estimated
    assert "echo-1" in stdout
