"""A hostile client against a real 2-process stack: nothing it publishes stops the cluster,
and one user cannot take what everyone shares.

Everything here is published straight to the prompts stream (as any NATS user allowed to
publish prompts can), past every check the client library makes. Writes the numbers to
`artifacts/poison.md` for docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats as nats_py
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.js import api
from nats.js.errors import APIError

from chatwax.client.chat import MESSAGE_TOO_LARGE, ChatClient
from chatwax.core import wire
from chatwax.core.errors import ChatwaxError, ErrorCode
from chatwax.core.settings import Settings
from chatwax.core.wire import ErrorEvent, FinalEvent
from chatwax.dataflow.link import ensure_streams
from chatwax.dev.stack import Stack
from tests.support.metrics import scrape
from tests.support.procs import dataflow_cluster, dataflow_env, log_text, nats_server
from tests.unit.core.test_safejson import KILLERS

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
RATE = 20
FUZZ_CASES = 1000


def report(name: str, header: str, row: str) -> None:
    """A measured row for docs/reliability.md, in artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    columns = header.count("|") - 1
    (ARTIFACTS / f"{name}.md").write_text(f"{header}\n{'|---' * columns}|\n{row}\n")


class Hostile:
    """A stack of its own (its streams and recovery are not shared) and a raw connection."""

    def __init__(self, nats_url: str, stack: Stack) -> None:
        self.url, self.stack = nats_url, stack
        self.runner = asyncio.Runner()
        self.nc: Any = self.runner.run(nats_py.connect(nats_url))
        self.js = self.nc.jetstream()

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    def metrics(self) -> dict[Any, float]:
        port = self.stack.opts.metrics_port
        return scrape([f"http://127.0.0.1:{port + i}/metrics" for i in range(2)])

    def cluster_restarts(self) -> int:
        return log_text(self.stack).count("to re-form the cluster")

    def close(self) -> None:
        self.run(self.nc.close())
        self.runner.close()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, own_llm: Any) -> Iterator[Hostile]:
    with nats_server(tmp_path_factory.mktemp("nats")) as server:
        env = {**dataflow_env(own_llm.base_url, "echo-1"),
               "CHATWAX_USER_PROMPTS_PER_MINUTE": str(RATE)}
        stack = dataflow_cluster(server.url, env, tmp_path_factory.mktemp("stack"))
        h = Hostile(server.url, stack)
        try:
            yield h
        finally:
            h.close()
            stack.stop()


async def _publish(h: Hostile, data: bytes, partition: int, reply: bool = True,
                   timeout: float = 10.0) -> ErrorEvent | FinalEvent | str | None:
    """Publish raw bytes to a prompt subject; the event that answers it (`None` if it had
    no reply subject), or "refused" when the server did not store it."""
    inbox = h.nc.new_inbox()
    sub = await h.nc.subscribe(inbox)
    headers = {wire.REPLY_TO_HEADER: inbox} if reply else None
    try:
        try:
            await h.js.publish(wire.prompt_subject(partition), data, headers=headers)
        except APIError as exc:
            assert exc.err_code == MESSAGE_TOO_LARGE, exc
            return "refused"
        if not reply:
            return None
        while True:
            event = wire.decode_event((await sub.next_msg(timeout=timeout)).data)
            if isinstance(event, ErrorEvent | FinalEvent):
                return event
    finally:
        await sub.unsubscribe()


async def _answered(h: Hostile, user: str, conversation: str, prompt: str) -> FinalEvent:
    client = await ChatClient.connect(Settings(nats_url=h.url))
    try:
        reply = await client.ask(user, conversation, prompt, timeout=30)
        events = [e async for e in reply.events()]
    finally:
        await client.close()
    assert isinstance(events[-1], FinalEvent), events
    return events[-1]


def _dead_letters(h: Hostile) -> int:
    async def count() -> int:
        info = await h.js.stream_info(wire.DEAD_LETTERS_STREAM)
        return int(info.state.messages)
    return int(h.run(count()))


def _rejected_total(samples: dict[Any, float]) -> float:
    return sum(v for (name, _), v in samples.items() if name == "chatwax_rejected_inputs_total")


FIELDS = ["v", "type", "request_id", "user_id", "conversation_id", "prompt", "reply_to",
          "created_at"]
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=10,
)
VALID = {"v": 1, "request_id": "r", "user_id": "fuzz", "conversation_id": "fuzz",
         "prompt": "hi", "created_at": 1.7e9}
MESSAGES = st.one_of(
    st.binary(max_size=1024),
    st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=len(FIELDS)).map(
        lambda o: json.dumps(o).encode()),
    # A valid prompt but for one field (its body's reply_to is never a usable subject).
    st.tuples(st.sampled_from(FIELDS), VALUES, st.text(max_size=20)).map(
        lambda t: json.dumps({**VALID, t[0]: t[1], "reply_to": t[2]}).encode()),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 6000).map(lambda n: b'{"created_at":' + b"9" * n + b"}"),
)


def test_known_killers_and_a_fuzz_run_leave_the_cluster_answering(hostile: Hostile) -> None:
    h = hostile
    before = h.metrics()
    restarts = h.cluster_restarts()
    outcomes: Counter[str] = Counter()

    def account(got: ErrorEvent | FinalEvent | str | None) -> None:
        if isinstance(got, ErrorEvent):
            outcomes[got.code.value] += 1
        elif isinstance(got, FinalEvent):
            outcomes["answered"] += 1
        else:
            outcomes[str(got)] += 1

    for i, data in enumerate(KILLERS.values()):  # on both partitions, with and without
        for partition in (0, 1):                  # a reply subject
            account(h.run(_publish(h, data, partition, reply=i % 2 == 0)))

    @settings(max_examples=FUZZ_CASES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=MESSAGES, partition=st.integers(0, 1))
    def fuzz(data: bytes, partition: int) -> None:
        outcomes["fuzz cases"] += 1
        account(h.run(_publish(h, data, partition)))

    started = time.monotonic()
    fuzz()
    fuzz_s = time.monotonic() - started

    # Every prompt sent afterwards is answered, on both partitions, with its history.
    finals = [h.run(_answered(h, "after", f"conv-{i}", f"after {i}")) for i in range(4)]
    again = h.run(_answered(h, "after", "conv-0", "and again"))
    assert [f.text for f in finals] == [f"echo: after {i}" for i in range(4)]
    assert again.turn == 2

    after = h.metrics()
    sent = 2 * len(KILLERS) + outcomes["fuzz cases"]
    refused_by_server = outcomes["refused"]
    replied = sum(n for k, n in outcomes.items() if k not in ("fuzz cases", "None", "refused"))
    rejected = _rejected_total(after) - _rejected_total(before)
    dead = _dead_letters(h)
    assert outcomes["fuzz cases"] == FUZZ_CASES
    assert outcomes["answered"] == 0, outcomes  # nothing bad reached the LLM
    assert h.cluster_restarts() == restarts == 0, log_text(h.stack)[-3000:]
    # Each stored bad message is counted as rejected or set aside as a dead letter.
    assert rejected + dead == sent - refused_by_server, (outcomes, rejected, dead)
    assert replied + outcomes["None"] == sent - refused_by_server
    assert "panic" not in log_text(h.stack).lower()
    report("poison", "| scenario | sent | refused by NATS | rejected | dead letters | "
           "cluster restarts | later prompts answered | seconds |",
           f"| known killers (x2 partitions) + {FUZZ_CASES} fuzz cases | {sent} | "
           f"{refused_by_server} | {int(rejected)} | {dead} | {h.cluster_restarts()} | "
           f"{len(finals) + 1}/{len(finals) + 1} | {fuzz_s:.1f} |")


def test_a_flood_from_one_user_is_refused_while_another_is_answered(hostile: Hostile) -> None:
    h = hostile
    flood = 5 * RATE

    async def main() -> tuple[Counter[str], list[FinalEvent]]:
        client = await ChatClient.connect(Settings(nats_url=h.url))
        try:
            pendings = [await client.ask("flooder", f"f{i % 3}", f"flood {i}")
                        for i in range(flood)]
            calm = [await _answered(h, "calm", "calm", f"calm {i}") for i in range(3)]
            ends = [[e async for e in p.events(30)][-1] for p in pendings]
            for p in pendings:
                await p.close()
        finally:
            await client.close()
        kinds = Counter("answered" if isinstance(e, FinalEvent) else e.code.value  # type: ignore[union-attr]
                        for e in ends)
        return kinds, calm

    started = time.monotonic()
    kinds, calm = h.run(main())
    took = time.monotonic() - started
    assert [f.text for f in calm] == [f"echo: calm {i}" for i in range(3)]
    assert kinds[ErrorCode.TOO_MANY_REQUESTS.value] >= flood - RATE - 2, kinds
    assert kinds["answered"] <= RATE + 2, kinds
    report("flood", "| scenario | sent | answered | refused (too_many_requests) | "
           "other user answered | seconds |",
           f"| one user sends {flood} prompts at once (limit {RATE}/min) | {flood} | "
           f"{kinds['answered']} | {kinds['too_many_requests']} | 3/3 | {took:.1f} |")


def test_oversized_messages_are_refused_by_the_server_before_storage(hostile: Hostile) -> None:
    h = hostile

    async def stored() -> int:
        return int((await h.js.stream_info(wire.PROMPTS_STREAM)).state.messages)

    before = h.run(stored())
    limit = wire.max_inbound_bytes(Settings().max_prompt_chars)
    # Past the stream's max_msg_size (under the server's 1 MB payload limit): JetStream.
    assert h.run(_publish(h, b"x" * (limit + 1), 0)) == "refused"
    # 2 MB: past the server's payload limit; announced on a raw socket, past any client
    # check. The server refuses on the PUB line itself and closes the connection, so the
    # payload is not sent: writing it raced that close (a reset, once in a clean-clone run).
    with socket.create_connection(("127.0.0.1", int(h.url.rsplit(":", 1)[1]))) as s:
        s.recv(4096)  # INFO
        s.sendall(b'CONNECT {"verbose":false}\r\nPUB ' + wire.prompt_subject(0).encode()
                  + b" 2000000\r\n")
        reply = b""
        while b"-ERR" not in reply:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert b"Maximum Payload Violation" in reply
    assert h.run(stored()) == before
    assert h.cluster_restarts() == 0


def test_chatwax_ask_refuses_a_prompt_over_the_limit_before_sending(hostile: Hostile) -> None:
    h = hostile
    out = subprocess.run(
        [sys.executable, "-m", "chatwax", "ask", "--user", "longwinded", "x" * 51],
        env={"NATS_URL": h.url, "CHATWAX_MAX_PROMPT_CHARS": "50", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "51 characters; the limit is 50" in out.stderr


def test_a_full_prompts_stream_refuses_new_prompts_as_busy(tmp_path: Path) -> None:
    """`max_bytes` with `discard: new`: the sender hears "busy" at once; nothing stored is
    dropped to make room."""
    settings = Settings(prompt_max_bytes=4096, partitions=1)

    async def main() -> tuple[int, ChatwaxError, int, float]:
        with nats_server(tmp_path / "nats") as server:
            nc = await nats_py.connect(server.url)
            try:
                await ensure_streams(nc.jetstream(), settings)
                client = ChatClient(nc)
                request = wire.PromptRequest("r", "u", "c", "y" * 200, "_INBOX.x")
                sent = 0
                while True:
                    try:
                        await client.submit(wire.PromptRequest(
                            f"r{sent}", "u", "c", request.prompt, "_INBOX.x"))
                    except ChatwaxError as exc:
                        started = time.monotonic()
                        with pytest.raises(ChatwaxError):
                            await client.submit(wire.PromptRequest(
                                "again", "u", "c", request.prompt, "_INBOX.x"))
                        took = time.monotonic() - started
                        info = await nc.jetstream().stream_info(wire.PROMPTS_STREAM)
                        assert info.config.discard == api.DiscardPolicy.NEW
                        return sent, exc, int(info.state.messages), took
                    sent += 1
                    assert sent < 100, "the stream never filled up"
            finally:
                await nc.close()

    sent, exc, kept, took = asyncio.run(main())
    assert exc.code is ErrorCode.BUSY and exc.code.retryable
    assert "busy" in exc.message and "nothing was stored" in exc.message
    assert kept == sent > 0  # the ones stored before stay
    assert took < 5  # an answer, not a hang (the publish timeout is 10 s)
