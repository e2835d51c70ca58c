"""The chat page in headless Chromium, driven with Playwright: sign in at the test provider,
chat, read the page, and forge identity cookies.

Playwright drives Debian's `chromium` (no browser download), with the flags of
tests/support/browser.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from itsdangerous import URLSafeTimedSerializer
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.browser import FLAGS, chromium_binary
from tests.support.oidc import USERS

T = TypeVar("T")

USER_COOKIE = "_streamlit_user"
"""Streamlit's identity cookie (streamlit.web.server.starlette.starlette_server_config)."""
ICONS = {"login", "logout", "forum", "bar_chart", "lock_open", "block", "send",
         "keyboard_double_arrow_right", "keyboard_double_arrow_left", "link"}
"""Material icon ligatures, which innerText reads as words."""


@contextmanager
def chromium() -> Iterator[Browser]:
    assert shutil.which("chromium") or chromium_binary()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_binary(),
                                    args=[f for f in FLAGS if f != "--headless"])
        try:
            yield browser
        finally:
            browser.close()


def arun(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run in another thread: Playwright's sync API keeps a loop in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def lines(page: Page, selector: str = "body") -> list[str]:
    """The visible text under `selector`, one stripped line each, icons left out."""
    text = page.inner_text(selector) if page.locator(selector).count() else ""
    return [s for s in (line.strip() for line in text.splitlines())
            if s and s not in ICONS and s != "Skip to main content"]


def wait_idle(page: Page, timeout_ms: float = 30_000) -> None:
    """Until the script run is over (Streamlit's running indicator is gone)."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=stStatusWidget]')",
        timeout=timeout_ms)


def sign_in(page: Page, base: str, name: str, expect: str = "Signed in as") -> None:
    """Open the page, press Sign in, log in at the provider as `name`, and wait to be back."""
    page.goto(f"{base}/")
    # The page's first script run imports the pages (Streamlit, pandas): once more than
    # Playwright's default 30 s on a loaded 2-core machine. The button comes when it runs.
    page.get_by_role("button", name="Sign in").click(timeout=120_000)
    page.wait_for_selector("#username", timeout=30_000)
    user = USERS[name]
    page.fill("#username", user.name)
    page.fill("#password", user.password)
    page.click("#submit")
    page.wait_for_url(re.compile(re.escape(base) + "/?$"), timeout=30_000)
    page.get_by_text(expect).first.wait_for(timeout=30_000)
    wait_idle(page)


def chat(page: Page, text: str, answer: str, timeout_ms: float = 60_000) -> None:
    """Type a prompt into the chat input and wait for `answer` to show, whole: while it
    streams, the text ends in a cursor (`▌`), and the first match can come before the
    answer is final."""
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")
    page.get_by_text(answer).first.wait_for(timeout=timeout_ms)
    page.wait_for_function("() => !document.body.innerText.includes('\u258c')",
                           timeout=timeout_ms)
    wait_idle(page)


def forged_cookie(claims: dict[str, Any], secret: str, origin: str) -> str:
    """An identity cookie as Streamlit signs it (itsdangerous, salted with its name)."""
    payload = {**claims, "origin": origin, "is_logged_in": True, "provider": "default"}
    signer = URLSafeTimedSerializer(secret, salt=USER_COOKIE)
    return str(signer.dumps(json.dumps(payload)))


def altered(cookie: str) -> str:
    """The same cookie with one character of its payload changed."""
    head, rest = cookie[:10], cookie[10:]
    return head + ("A" if rest[0] != "A" else "B") + rest[1:]
