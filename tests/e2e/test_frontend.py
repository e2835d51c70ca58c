"""The Streamlit page, driven with AppTest against the running stack."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from chatwax.dev.stack import Stack
from tests.support.procs import NatsServer

APP = str(Path(__file__).resolve().parents[2] / "frontend" / "app.py")


def page(monkeypatch: pytest.MonkeyPatch, nats_url: str) -> AppTest:
    monkeypatch.setenv("NATS_URL", nats_url)
    at = AppTest.from_file(APP, default_timeout=30)
    return at.run()


def texts(at: AppTest) -> list[str]:
    return [md.value for msg in at.chat_message for md in msg.markdown]


def test_unreachable_nats_is_said_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    st.cache_resource.clear()
    at = page(monkeypatch, "nats://127.0.0.1:1")
    assert not at.exception
    assert any("Cannot reach NATS" in e.value for e in at.error)
    st.cache_resource.clear()


def test_the_page_says_which_model_answers(monkeypatch: pytest.MonkeyPatch,
                                           nats: NatsServer) -> None:
    monkeypatch.setenv("CHATWAX_MODEL", "smollm2-135m-instruct")
    monkeypatch.setenv("CHATWAX_PROVIDER", "local")
    at = page(monkeypatch, nats.url)
    assert not at.exception
    assert "Answers by **smollm2-135m-instruct** (on this machine or cluster)" in [
        c.value for c in at.caption]
    monkeypatch.setenv("CHATWAX_MODEL", "gpt-4.1")
    monkeypatch.delenv("CHATWAX_PROVIDER")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert "Answers by **gpt-4.1** (OpenAI)" in [c.value for c in page(monkeypatch,
                                                                          nats.url).caption]


def test_chat_streams_an_answer_with_usage_and_reloads(
    monkeypatch: pytest.MonkeyPatch, cluster: Stack, nats: NatsServer, llm: Any
) -> None:
    user = f"web-{uuid.uuid4().hex[:6]}"
    at = page(monkeypatch, nats.url)
    at.sidebar.text_input(key="user").input(user).run()
    at.chat_input[0].set_value("hello from the page").run()
    assert not at.exception, at.exception
    assert "hello from the page" in texts(at)
    assert any("echo: hello from the page" in t for t in texts(at))
    captions = [c.value for c in at.caption]
    assert any("echo-1" in c and "out tokens" in c for c in captions), captions

    at.chat_input[0].set_value("and again").run()
    assert any("echo: and again" in t for t in texts(at))
    # The LLM got the first turn as history.
    last = next(r for r in reversed(llm.requests())
                if r["messages"][-1]["content"] == "and again")
    assert any(m["content"] == "echo: hello from the page" for m in last["messages"])

    # A fresh session lists the conversation and reloads both turns from transcripts.
    fresh = page(monkeypatch, nats.url)
    fresh.sidebar.text_input(key="user").input(user).run()
    picker = fresh.sidebar.selectbox(key="picked")
    assert len(picker.options) == 2  # "new" + the conversation
    picker.select_index(1).run()
    assert not fresh.exception
    shown = texts(fresh)
    assert shown[:4] == ["hello from the page", "echo: hello from the page",
                         "and again", "echo: and again"]


def test_an_error_reply_is_shown(
    monkeypatch: pytest.MonkeyPatch, cluster: Stack, nats: NatsServer
) -> None:
    at = page(monkeypatch, nats.url)
    at.sidebar.text_input(key="user").input(f"web-{uuid.uuid4().hex[:6]}").run()
    at.chat_input[0].set_value("[[500]] this fails").run()
    assert not at.exception
    assert any("llm_unavailable" in e.value for e in at.error)


def test_usage_page_shows_the_transcripts_totals(
    monkeypatch: pytest.MonkeyPatch, cluster: Stack, nats: NatsServer, llm: Any
) -> None:
    at = page(monkeypatch, nats.url)
    at.sidebar.text_input(key="user").input(f"web-{uuid.uuid4().hex[:6]}").run()
    at.chat_input[0].set_value("count this turn").run()
    assert any("echo: count this turn" in t for t in texts(at))

    at.switch_page("usage.py").run()
    at.selectbox(key="window").select("All time").run()
    usage = llm.usage()
    # Every answered turn is stored before its final reply; a summary (made off the request
    # path, counted by the LLM server too) may still be on its way.
    for _ in range(25):
        assert not at.exception, at.exception
        metrics = {m.label: m.value for m in at.metric}
        if metrics.get("Turns") == f"{usage['requests_ok']:,}":
            break
        time.sleep(0.2)
        at.run()
    # Every successful LLM completion of this session became a transcript.
    assert metrics["Input tokens"] == f"{usage['prompt_tokens']:,}"
    assert metrics["Output tokens"] == f"{usage['completion_tokens']:,}"
    assert metrics["Turns"] == f"{usage['requests_ok']:,}"
    assert metrics["Cost (USD)"] == "$0.0000"  # echo-1 is a local model: free


def test_the_chat_box_takes_no_more_than_the_prompt_limit(
        monkeypatch: pytest.MonkeyPatch, cluster: Stack, nats: NatsServer) -> None:
    """The chat box is limited to CHATWAX_MAX_PROMPT_CHARS (said in its placeholder), and
    Streamlit holds a longer value to it server-side: the page never sends a prompt the
    dataflow would refuse (the client library's own check: test_poison.py, `chatwax ask`)."""
    st.cache_resource.clear()  # the shared client is made with the page's settings
    monkeypatch.setenv("CHATWAX_MAX_PROMPT_CHARS", "20")
    try:
        at = page(monkeypatch, nats.url)
        at.sidebar.text_input(key="user").input(f"terse-{uuid.uuid4().hex[:6]}").run()
        assert at.chat_input[0].proto.max_chars == 20
        assert "up to 20 characters" in at.chat_input[0].proto.placeholder
        at.chat_input[0].set_value("x" * 30).run()
        assert not at.exception, at.exception
        assert texts(at) == ["x" * 20, "echo: " + "x" * 20]
    finally:
        st.cache_resource.clear()
