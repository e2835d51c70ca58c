"""What `make run` shows, in a real browser, for each way it picks its LLM: no key (the local
model), OPENAI_BASE_URL (that server) and `--llm openai` with no key (OpenAI, unconfigured).
The chat page's header must name the model and the place that answers, and the first
answer's own caption the same model. `make run` is `chatwax up`; here on free ports."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from chatwax.llm.client import NOT_CONFIGURED_MESSAGE
from chatwax.local.model import MODEL_ALIAS
from tests.support.signin import chromium, lines, wait_idle
from tests.support.up import Up

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
HEADER = re.compile(r"Answers by (?P<model>.+) \((?P<where>.+)\)")


@dataclass(frozen=True)
class Shown:
    header: str
    """The page's caption under its title: which model answers, and where."""
    answer: list[str]
    """The assistant's message, line by line: the answer and its caption, or an error."""
    caption: str | None
    """The answer's own caption (model · tokens · latency), if it has one."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def ask_on_page(browser: Browser, u: Up, prompt: str, png: Path,
                timeout_ms: float = 120_000) -> Shown:
    """Open the chat page of `u`, send `prompt` from the chat input, wait until the answer
    has ended (its caption or an error is shown), and save the page as `png`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{u.ui_port}/")
        box = page.get_by_test_id("stChatInputTextArea")
        box.fill(prompt)
        box.press("Enter")
        answer = page.get_by_test_id("stChatMessage").nth(1)
        answer.locator("[data-testid=stCaptionContainer], [data-testid=stAlert]").first.wait_for(
            timeout=timeout_ms)
        wait_idle(page)
        shown = _shown(page)
        png.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(png), full_page=True)
        return shown
    finally:
        context.close()


def _shown(page: Page) -> Shown:
    main = page.get_by_test_id("stMainBlockContainer")
    header = main.get_by_test_id("stCaptionContainer").first.inner_text().strip()
    answer = page.get_by_test_id("stChatMessageContent").nth(1)
    captions = answer.get_by_test_id("stCaptionContainer")
    caption = captions.first.inner_text().strip() if captions.count() else None
    return Shown(header, lines(page, "[data-testid=stChatMessageContent] >> nth=1"), caption)


def header_parts(shown: Shown) -> tuple[str, str]:
    found = HEADER.fullmatch(shown.header)
    assert found, shown.header
    return found["model"], found["where"]


def llm_line(u: Up) -> str:
    """What `chatwax up` printed for the LLM."""
    return next(line.split(None, 1)[1] for line in u.output().splitlines()
                if line.strip().startswith("LLM "))


def answered_by_local_model(u: Up) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{u.llm_port}/health", timeout=5) as resp:
        return int(json.loads(resp.read())["answers"])


def test_no_key_the_page_names_the_local_model_that_answers(up: Callable[..., Up],
                                                            browser: Browser) -> None:
    """A clean machine, no OPENAI_* variable: `make run` starts SmolLM2 and the page says so
    (the README's first screenshot)."""
    u = up(no_key=True)
    u.wait_ready(180)
    assert llm_line(u) == f"{MODEL_ALIAS} (local model, http://127.0.0.1:{u.llm_port}/v1)"
    shown = ask_on_page(browser, u, "Hello! Who are you?",
                        ARTIFACTS / "make-run-no-key.png")
    assert shown.header == f"Answers by {MODEL_ALIAS} (on this machine or cluster)"
    assert shown.caption is not None, shown.answer
    assert shown.caption.split(" · ")[0] == MODEL_ALIAS
    assert "out tokens" in shown.caption
    assert answered_by_local_model(u) == 1  # the model the page names is the one that answered


def test_a_base_url_the_page_names_that_server_and_model(up: Callable[..., Up],
                                                         browser: Browser,
                                                         own_llm: Any) -> None:
    """OPENAI_BASE_URL (the echo LLM, on this machine) and CHATWAX_MODEL: the page names
    them, and the answer comes from that server."""
    u = up()  # OPENAI_BASE_URL=<echo LLM>, CHATWAX_MODEL=echo-1
    u.wait_ready()
    assert llm_line(u) == f"echo-1 at {own_llm.base_url}"
    prompt = "hello from make run"
    shown = ask_on_page(browser, u, prompt, ARTIFACTS / "make-run-base-url.png")
    assert header_parts(shown) == ("echo-1", "on this machine or cluster")
    assert f"echo: {prompt}" in shown.answer
    assert shown.caption is not None and shown.caption.split(" · ")[0] == "echo-1"
    sent = [r for r in own_llm.requests() if r["messages"][-1]["content"] == prompt]
    assert [r["model"] for r in sent] == ["echo-1"]


def test_llm_openai_with_no_key_the_page_names_openai_and_says_what_to_set(
        up: Callable[..., Up], browser: Browser) -> None:
    """`--llm openai` and no key: the page names OpenAI's default model, and the prompt gets
    the error reply saying what to set (no answer, so no answer caption)."""
    u = up("--llm", "openai", no_key=True)
    u.wait_ready()
    assert llm_line(u).startswith("none configured: prompts get an error reply")
    shown = ask_on_page(browser, u, "hello?", ARTIFACTS / "make-run-llm-openai.png")
    assert shown.header == "Answers by gpt-4o-mini (OpenAI)"
    assert shown.caption is None
    assert f"{NOT_CONFIGURED_MESSAGE} (llm_not_configured)" in " ".join(shown.answer)
