"""What chatwax keeps, through the commands an operator runs: `chatwax export`, `chatwax
forget`, and the transcript limits of `chatwax up`, against real NATS and real dataflow
processes (the shared stack, or `chatwax up` with NATS auth where the identity matters)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import nats as nats_py
import pytest
from nats.js import api

from chatwax.client.chat import ChatClient
from chatwax.client.transcripts import subjects
from chatwax.core import wire
from chatwax.core.export import EMAIL_MARK
from chatwax.core.settings import Settings
from chatwax.core.wire import FinalEvent, Transcript, Usage
from chatwax.dev.stack import Stack
from tests.support.asks import ask_all, run, uid
from tests.support.procs import NatsServer, nats_server
from tests.support.up import CHATWAX, Up
from tests.support.waiting import wait_until

SYSTEM = "You are a helpful assistant. Answer clearly and concisely."


def chatwax(*args: str, env: dict[str, str], timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CHATWAX, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def env_for(nats_url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "NATS_URL": nats_url, **extra}


def converse(settings: Settings, user: str, conv: str, prompts: list[str]) -> None:
    for p in prompts:
        events = run(ask_all(settings, user, conv, p))
        assert isinstance(events[-1], FinalEvent), events[-1]


def check_fine_tuning_line(obj: Any) -> list[dict[str, str]]:
    """What OpenAI's chat fine-tuning format requires of one line."""
    assert set(obj) == {"messages"}
    messages = obj["messages"]
    assert isinstance(messages, list) and messages
    for m in messages:
        assert set(m) == {"role", "content"}
        assert m["role"] in ("system", "user", "assistant")
        assert isinstance(m["content"], str) and m["content"]
    roles = [m["role"] for m in messages]
    body = roles[1:] if roles[0] == "system" else roles
    assert body and body == ["user", "assistant"] * (len(body) // 2), roles
    return messages


def test_export_round_trips_the_transcripts(cluster: Stack, nats: NatsServer,
                                            settings: Settings, tmp_path: Path) -> None:
    ada, bob = uid("ada"), uid("bob")
    convs = {ada: [uid("c"), uid("c")], bob: [uid("c")]}
    for user, cs in convs.items():
        for c in cs:
            converse(settings, user, c, [f"{user} {c} one", "mail me at ada@example.com",
                                         f"{c} three"])
    short = uid("c")
    converse(settings, ada, short, ["just one turn"])
    env = env_for(nats.url)

    out = tmp_path / "ada.jsonl"
    res = chatwax("export", "--user", ada, str(out), env=env)
    assert res.returncode == 0, res.stderr
    assert "wrote 3 lines (3 conversations" in res.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]

    async def histories() -> dict[str, list[Transcript]]:
        client = await ChatClient.connect(settings)
        try:
            return {c: await client.history(ada, c) for c in [*convs[ada], short]}
        finally:
            await client.close()

    expected = run(histories())
    got = sorted((check_fine_tuning_line(obj) for obj in lines), key=json.dumps)
    want = sorted(([{"role": "system", "content": SYSTEM},
                    *({"role": r, "content": x} for t in turns
                      for r, x in (("user", t.prompt), ("assistant", t.answer)))]
                   for turns in expected.values()), key=json.dumps)
    assert got == want

    raw = tmp_path / "raw.jsonl"
    res = chatwax("export", "--format", "jsonl", "--user", ada, "--min-turns", "2",
                  "--scrub-pii", str(raw), env=env)
    assert res.returncode == 0, res.stderr
    records = [Transcript.decode(x.encode()) for x in raw.read_text().splitlines()]
    stored = {t.request_id: t for c in convs[ada] for t in expected[c]}
    assert sorted(r.request_id for r in records) == sorted(stored)  # not the 1-turn one
    for r in records:
        assert r.usage == stored[r.request_id].usage and r.usage.total_tokens > 0
        assert "ada@example.com" not in r.prompt + r.answer
    assert sum(EMAIL_MARK in r.prompt for r in records) == 2

    window = tmp_path / "window.jsonl"
    res = chatwax("export", "--until", "2020-01-01", str(window), env=env)
    assert res.returncode == 0 and window.read_text() == "", res.stderr
    res = chatwax("export", "--since", "1h", "--user", bob, str(window), env=env)
    assert res.returncode == 0 and len(window.read_text().splitlines()) == 1, res.stderr


def test_export_fails_with_a_code_and_leaves_no_file(nats: NatsServer, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    closed = env_for("nats://127.0.0.1:1")
    res = chatwax("export", str(out), env=closed)
    assert res.returncode == 3 and "cannot reach NATS" in res.stderr
    res = chatwax("export", str(tmp_path / "no-such-dir" / "out.jsonl"), env=env_for(nats.url))
    assert res.returncode == 4 and "is not a folder" in res.stderr
    (tmp_path / "taken").mkdir()
    res = chatwax("export", str(tmp_path / "taken"), env=env_for(nats.url))
    assert res.returncode == 4 and "cannot write" in res.stderr
    res = chatwax("export", "--since", "yesterday", str(out), env=env_for(nats.url))
    assert res.returncode == 2 and "'yesterday'" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def seed_transcripts(url: str, conversations: int, turns: int) -> None:
    """A large transcripts stream without a dataflow: records as the dataflow stores them."""
    async def main() -> None:
        nc = await nats_py.connect(url)
        js = nc.jetstream()
        await js.add_stream(api.StreamConfig(
            name=wire.TRANSCRIPTS_STREAM, subjects=[f"{wire.TRANSCRIPTS_PREFIX}.>"],
            allow_direct=True))
        acks = []
        for c in range(conversations):
            for t in range(turns):
                record = Transcript(f"r{c}-{t}", f"u{c % 50}", f"c{c}", t + 1, f"question {t}",
                                    "an answer " * 20, "m", "p", Usage(40, 20), 100.0, 10.0,
                                    1.0, 2.0)
                acks.append(await js.publish_async(record.subject, record.encode()))
        await asyncio.gather(*acks)
        await nc.close()

    run(main())


def test_an_export_cut_off_by_nats_leaves_no_file(tmp_path: Path) -> None:
    with nats_server(tmp_path / "nats") as server:
        seed_transcripts(server.url, conversations=3000, turns=2)
        out = tmp_path / "out.jsonl"
        proc = subprocess.Popen([*CHATWAX, "export", "--timeout", "2", str(out)],
                                env=env_for(server.url), stderr=subprocess.PIPE, text=True)
        partial = tmp_path / "out.jsonl.partial"
        wait_until(lambda: partial.exists() and partial.stat().st_size > 0, 30, "writing")
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)  # NATS stops answering mid-export
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
    assert proc.returncode == 3, err
    assert "stopped sending" in err and "for 2s; nothing written" in err, err
    assert not out.exists() and not partial.exists()


@pytest.fixture
def authed(up: Any, tmp_path: Path) -> tuple[Up, dict[str, str]]:
    u = up("--no-ui", "--nats-auth", "--snapshot-interval", "1")
    u.wait_ready()
    passwords = json.loads((tmp_path / "data" / "nats-auth.json").read_text())
    return u, passwords


def _as(u: Up, passwords: dict[str, str], user: str) -> dict[str, str]:
    return {**u.env, "NATS_USER": user, "NATS_PASSWORD": passwords[user]}


def _settings(u: Up, passwords: dict[str, str], user: str = "operator") -> Settings:
    return Settings(nats_url=f"nats://127.0.0.1:{u.nats_port}", nats_user=user,
                    nats_password=passwords[user])


async def _prompt_owners(settings: Settings) -> list[str]:
    """The user id of every message in the prompts stream (prompts and commands)."""
    client = await ChatClient.connect(settings)
    sub = await client.js.subscribe(f"{wire.PROMPTS_PREFIX}.>",
                                    stream=wire.PROMPTS_STREAM, ordered_consumer=True)
    owners = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=2)
            except TimeoutError:
                break
            owners.append(json.loads(msg.data).get("user_id", ""))
            if msg.metadata.num_pending == 0:
                break
    finally:
        await client.close()
    return owners


async def _subjects_of(settings: Settings, user: str) -> dict[str, int]:
    client = await ChatClient.connect(settings)
    try:
        return {s: n async for s, n in subjects(client.nc, wire.user_records_filter(user))}
    finally:
        await client.close()


def test_forget_leaves_nothing_of_the_user_and_touches_no_one_else(
        authed: tuple[Up, dict[str, str]], own_llm: Any) -> None:
    u, passwords = authed
    settings = _settings(u, passwords)
    gone, kept = uid("gone"), uid("kept")
    secret = uid("secret-words")
    convs = {gone: [uid("c"), uid("c")], kept: [uid("c")]}
    for user, cs in convs.items():
        for c in cs:
            converse(settings, user, c, [f"{user} says {secret}", "and more"])
    # Every turn is stored by the time its final reply arrives: no waiting.
    kept_before = run(_subjects_of(settings, kept))
    assert sum(kept_before.values()) == 2
    assert sum(run(_subjects_of(settings, gone)).values()) == 4

    # The frontend's identity may not send commands: only the operator forgets.
    refused = chatwax("forget", "--user", gone, "--timeout", "5",
                      env=_as(u, passwords, "frontend"))
    assert refused.returncode != 0
    res = chatwax("forget", "--user", gone, env=_as(u, passwords, "operator"))
    assert res.returncode == 0, res.stderr
    assert f"forgot user {gone}: 2 conversations" in res.stderr
    assert secret not in res.stderr  # the audit line holds ids and counts only
    assert f"forgot every conversation of user {gone}" in u.output()
    assert secret not in u.output()

    # Transcripts, prompts, export and usage: nothing of `gone`; `kept` untouched.
    assert run(_subjects_of(settings, gone)) == {}
    assert run(_subjects_of(settings, kept)) == kept_before
    owners = run(_prompt_owners(settings))
    assert gone not in owners and owners.count(kept) == 2
    out = Path(u.log).with_name("all.jsonl")
    res = chatwax("export", "--format", "jsonl", str(out), env=_as(u, passwords, "operator"))
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    assert gone not in text and secret in text  # kept's turns carry the same words
    usage = chatwax("usage", "--since", "all", env=_as(u, passwords, "operator"))
    assert usage.returncode == 0 and gone not in usage.stdout and kept in usage.stdout

    # The dataflow's state: the old conversation starts over, the other goes on.
    own_llm.reset()
    converse(settings, gone, convs[gone][0], ["who am I?"])
    converse(settings, kept, convs[kept][0], ["still there?"])
    sent = {r["messages"][-1]["content"]: r["messages"] for r in own_llm.requests()}
    assert [m["role"] for m in sent["who am I?"]] == ["system", "user"]
    assert any(secret in m["content"] for m in sent["still there?"])


def test_forget_reaches_conversations_whose_transcripts_are_gone(up: Any, own_llm: Any
                                                                ) -> None:
    """The state is the owner: forget drops what it holds even after the transcripts went
    (here evicted by the stream's byte bound), reports the true count, and the same
    conversation id afterwards starts empty."""
    u = up("--no-ui", "--transcript-max-bytes", "3000")
    u.wait_ready()
    settings = Settings(nats_url=f"nats://127.0.0.1:{u.nats_port}")
    user, old, new = uid("evicted"), uid("old"), uid("new")
    secret = uid("remember")
    converse(settings, user, old, [f"the password is {secret}"])
    converse(settings, user, new, [f"filler {i} " + "x" * 600 for i in range(6)])
    stored = run(_subjects_of(settings, user))
    assert wire.transcript_subject(user, old) not in stored  # its transcripts are gone

    res = chatwax("forget", "--user", user, env=u.env)
    assert res.returncode == 0, res.stderr
    assert f"forgot user {user}: 2 conversations (7 turns, 0 waiting)" in res.stderr

    own_llm.reset()
    converse(settings, user, old, ["what is the password?"])
    (sent,) = [r["messages"] for r in own_llm.requests()]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert not [m for m in sent if secret in m["content"]]


def test_the_moment_chatwax_ask_returns_its_turn_is_in_chatwax_export(up: Any,
                                                                      tmp_path: Path) -> None:
    u = up("--no-ui")
    u.wait_ready()
    user = uid("prompt")
    for i in range(3):
        asked = chatwax("ask", "--user", user, f"question {i}", env=u.env)
        assert asked.returncode == 0, asked.stderr
        out = tmp_path / f"export-{i}.jsonl"  # at once: no wait, no retry
        res = chatwax("export", "--format", "jsonl", "--user", user, str(out), env=u.env)
        assert res.returncode == 0, res.stderr
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["prompt"] for r in records] == [f"question {n}" for n in range(i + 1)]


def test_transcript_limits_apply_to_the_existing_stream(up: Any) -> None:
    def limits(u: Up) -> tuple[float, int, int]:
        async def main() -> tuple[float, int, int]:
            nc = await nats_py.connect(f"nats://127.0.0.1:{u.nats_port}")
            try:
                info = await nc.jetstream().stream_info(wire.TRANSCRIPTS_STREAM)
            finally:
                await nc.close()
            return info.config.max_age or 0.0, info.config.max_bytes or 0, info.state.bytes
        return run(main())

    first = up("--no-ui", "--transcript-max-age", "2d", "--transcript-max-bytes", "1MB")
    first.wait_ready()
    conv_settings = Settings(nats_url=f"nats://127.0.0.1:{first.nats_port}")
    converse(conv_settings, uid("ret"), uid("c"), [f"turn {i} " + "x" * 400 for i in range(8)])
    age, max_bytes, stored = limits(first)
    assert (age, max_bytes) == (2 * 86_400, 1_000_000)
    assert stored > 3000
    first.proc.send_signal(signal.SIGINT)
    try:
        first.proc.wait(60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"chatwax up did not stop on SIGINT:\n{first.output()}") from None

    # Same data, new limits: applied to the stream that exists, the oldest going first.
    again = up("--no-ui", "--transcript-max-age", "12h", "--transcript-max-bytes", "3000")
    again.wait_ready()
    age, max_bytes, stored = limits(again)
    assert (age, max_bytes) == (12 * 3600, 3000)
    assert 0 < stored <= 3000
