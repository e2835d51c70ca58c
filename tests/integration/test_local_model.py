"""The local model, for real: `chatwax local-llm` serving SmolLM2 through llama.cpp, called
with the openai client, and a whole `chatwax up` stack that answers with it and no key."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chatwax.client.chat import ChatClient
from chatwax.core.settings import Settings
from chatwax.core.wire import ChunkEvent, FinalEvent
from chatwax.local import model as local_llm
from tests.support.procs import free_port, wait_http
from tests.support.up import CHATWAX

PROMPTS = [("What is NATS?", 48), ("Say hello in one word.", 200), ("Count to ten.", 6)]


def health(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/health", timeout=5) as resp:
        return dict(json.loads(resp.read()))


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([*CHATWAX, "local-llm", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health", 60)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are brief."}, {"role": "user", "content": prompt}]


def test_streamed_answers_report_the_usage_llama_cpp_counts(server: str) -> None:
    """Every answer, streamed or not, reports the usage llama.cpp itself counts for the same
    request (not streamed, same model file, greedy sampling), with the same text.

    llama.cpp reuses the prompt prefix it evaluated last, and a re-used prefix can change a
    greedy answer; so the reference model gets the server's requests in the server's order
    and is in the same state for each.
    """
    from llama_cpp import Llama

    reference = Llama(model_path=str(local_llm.model_file()),
                      n_ctx=local_llm.DEFAULT_CONTEXT_TOKENS, verbose=False)
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused")
    for prompt, limit in PROMPTS:
        want = reference.create_chat_completion(messages(prompt), max_tokens=limit,
                                                temperature=0)
        stream = client.chat.completions.create(
            model="anything", messages=messages(prompt),  # type: ignore[arg-type]
            max_tokens=limit, temperature=0, stream=True,
            stream_options={"include_usage": True})
        deltas, usage, reasons, models = [], None, [], set()
        for chunk in stream:
            models.add(chunk.model)
            usage = chunk.usage or usage
            for choice in chunk.choices:
                deltas.append(choice.delta.content or "")
                reasons.append(choice.finish_reason)
        assert usage is not None
        assert models == {local_llm.MODEL_ALIAS}
        assert (usage.prompt_tokens, usage.completion_tokens) == (
            want["usage"]["prompt_tokens"], want["usage"]["completion_tokens"]), prompt
        assert "".join(deltas) == want["choices"][0]["message"]["content"]
        assert len([d for d in deltas if d]) > 1  # streamed as it was generated
        assert reasons[-1] == want["choices"][0]["finish_reason"]
        # The same request again, not streamed: the reference repeats it too.
        want = reference.create_chat_completion(messages(prompt), max_tokens=limit,
                                                temperature=0)
        whole = client.chat.completions.create(
            model="anything", messages=messages(prompt),  # type: ignore[arg-type]
            max_tokens=limit, temperature=0)
        assert whole.usage is not None
        assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (
            want["usage"]["prompt_tokens"], want["usage"]["completion_tokens"]), prompt
        assert whole.choices[0].message.content == want["choices"][0]["message"]["content"]
    assert client.models.list().data[0].id == local_llm.MODEL_ALIAS


def test_bad_requests_get_an_openai_error_and_the_server_keeps_serving(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="'messages' must be a non-empty list"):
        client.chat.completions.create(model="m", messages=[])
    too_long = "word " * 6000  # more tokens than the context window holds
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": too_long}], stream=True)
    assert err.value.code == "context_length_exceeded"
    request = urllib.request.Request(f"{server}/v1/chat/completions", data=b"{not json",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(request, timeout=10)
    assert http.value.code == 400
    assert json.loads(http.value.read())["error"]["message"] == "the request body is not JSON"
    ok = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=5)
    assert ok.choices[0].message.content


async def _ask(settings: Settings, user: str, conversation: str, prompt: str
               ) -> tuple[list[ChunkEvent], FinalEvent]:
    client = await ChatClient.connect(settings)
    chunks: list[ChunkEvent] = []
    try:
        async for event in (await client.ask(user, conversation, prompt, timeout=120)).events():
            if isinstance(event, ChunkEvent):
                chunks.append(event)
            else:
                assert isinstance(event, FinalEvent), event
                return chunks, event
    finally:
        await client.close()
    raise AssertionError("no final event")


async def _history(settings: Settings, user: str, conversation: str) -> list[Any]:
    client = await ChatClient.connect(settings)
    try:
        return await client.history(user, conversation)
    finally:
        await client.close()


def _tokens(metrics_ports: list[int]) -> dict[str, float]:
    out = {"input": 0.0, "output": 0.0}
    for port in metrics_ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            for family in text_string_to_metric_families(resp.read().decode()):
                for s in family.samples:
                    if (s.name == "chatwax_llm_tokens_total"
                            and s.labels["model"] == local_llm.MODEL_ALIAS
                            and s.labels["provider"] == "local"):
                        out[s.labels["type"]] += s.value
    return out


def test_with_no_key_up_answers_with_the_local_model(up: Any) -> None:
    """No OPENAI_* variable: `chatwax up` starts the local model; prompts stream answers,
    the transcript records them, and token metrics equal what the model server counted."""
    u = up("--no-ui", no_key=True)
    u.wait_ready(timeout=180)
    text = u.output()
    assert "answering with the local model" in text
    assert f"{local_llm.MODEL_ALIAS} (local model, http://127.0.0.1:{u.llm_port}/v1)" in text
    model_server = f"http://127.0.0.1:{u.llm_port}"
    before = health(model_server)

    cli = subprocess.run([*CHATWAX, "ask", "--user", "alice", "What is NATS?"], env=u.env,
                         capture_output=True, text=True, timeout=180)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip()
    assert local_llm.MODEL_ALIAS in cli.stderr and "turn 1" in cli.stderr

    settings = Settings.from_env({"NATS_URL": f"nats://127.0.0.1:{u.nats_port}"})
    user, conversation = "bob", f"c-{uuid.uuid4().hex[:8]}"
    finals = []
    for prompt in ("Name a color.", "Why is the sky that color?"):
        chunks, final = asyncio.run(_ask(settings, user, conversation, prompt))
        assert chunks and final.text.strip()
        assert "".join(c.delta for c in chunks) == final.text  # streamed, then whole
        assert final.model == local_llm.MODEL_ALIAS
        finals.append(final)
    assert finals[1].turn == 2
    # The second call carried the first turn: more input tokens than the prompt alone.
    assert finals[1].usage.input_tokens > finals[0].usage.input_tokens + finals[0].usage.\
        output_tokens

    turns = asyncio.run(_history(settings, user, conversation))
    assert [(t.turn, t.answer, t.model, t.provider) for t in turns] == [
        (f.turn, f.text, local_llm.MODEL_ALIAS, "local") for f in finals]

    # Usage as the model server counted it, per turn and in total (it served nothing else).
    after = health(model_server)
    assert before["answers"] == 0 and after["answers"] == 3
    every = turns + asyncio.run(_history(settings, "alice", "alice-cli"))
    assert sum(t.usage.input_tokens for t in every) == after["usage"]["prompt_tokens"]
    assert sum(t.usage.output_tokens for t in every) == after["usage"]["completion_tokens"]
    metrics = _tokens([u.metrics_port, u.metrics_port + 1])
    assert metrics == {"input": after["usage"]["prompt_tokens"],
                       "output": after["usage"]["completion_tokens"]}
    assert metrics["output"] > 0


@pytest.fixture(scope="module")
def llama_cpp_server() -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server on the same model file: it streams
    answers without usage, and counts tokens at /extras/tokenize/count."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(local_llm.model_file()),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
         "--model_alias", "smol-llama-cpp"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/v1/models", 120, proc)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def _server_count(base: str, text: str) -> int:
    request = urllib.request.Request(f"{base}/extras/tokenize/count",
                                     data=json.dumps({"input": text}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return int(json.loads(resp.read())["count"])


def test_a_server_that_reports_no_usage_is_counted_with_its_own_tokenizer(
        up: Any, llama_cpp_server: str) -> None:
    """llama-cpp-python's server sends no usage when streaming: chatwax counts the tokens
    with the server's tokenizer, says so, and never records zeros."""
    u = up("--no-ui", "--llm", f"{llama_cpp_server}/v1", env={
        "CHATWAX_MODEL": "smol-llama-cpp", "CHATWAX_CONTEXT_TOKENS": "2048",
        "CHATWAX_MAX_OUTPUT_TOKENS": "48", "CHATWAX_HISTORY_TOKEN_BUDGET": "1024"})
    u.wait_ready(timeout=120)
    settings = Settings.from_env({"NATS_URL": f"nats://127.0.0.1:{u.nats_port}"})
    _, final = asyncio.run(_ask(settings, "carol", f"c-{uuid.uuid4().hex[:8]}",
                                "Name a color."))
    usage = final.usage
    assert usage.counted == "tokenizer" and usage.estimated
    system = Settings().system_prompt
    framing = 4  # chatwax's per-message framing, as in its own counts
    assert usage.input_tokens == sum(_server_count(llama_cpp_server, t) + framing
                                     for t in (system, "Name a color."))
    assert usage.output_tokens == _server_count(llama_cpp_server, final.text) > 0

    counted: dict[str, float] = {}
    for port in (u.metrics_port, u.metrics_port + 1):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            for family in text_string_to_metric_families(resp.read().decode()):
                for s in family.samples:
                    if s.name == "chatwax_llm_tokens_total":
                        key = s.labels["counted"]
                        counted[key] = counted.get(key, 0.0) + s.value
    assert counted["tokenizer"] == usage.total_tokens
    assert counted["server"] == 0 and counted["estimate"] == 0
    report = subprocess.run([*CHATWAX, "usage", "--since", "all"], env=u.env,
                            capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    row = next(line.split() for line in report.stdout.splitlines() if line.startswith("carol"))
    assert row[5:7] == [str(usage.total_tokens), str(usage.total_tokens)]  # all estimated
