"""Model output loads nothing: an answer (or a prompt) with a Markdown image shows a link,
and headless Chromium fetches nothing from the image's server, while the answer streams and
after a reload. A prompt-injected answer could otherwise leak the conversation in the
image's URL the moment it is shown (issue #23)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chatwax.dev.stack import Stack
from tests.support.signin import chat, chromium, wait_idle


class Leak:
    """An HTTP server that only counts what it is asked for (1x1 GIF answers)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        leak = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's name for GET
                leak.paths.append(self.path)
                body = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, secret: str) -> str:
        return f"http://127.0.0.1:{self.port}/leak.gif?c={secret}"


@pytest.fixture
def leak() -> Iterator[Leak]:
    server = Leak()
    yield server
    server.server.shutdown()


def test_images_in_answers_are_links_and_never_fetched(cluster: Stack, frontend: str,
                                                       leak: Leak) -> None:
    secret = f"secret{uuid.uuid4().hex[:8]}"
    url = leak.url(secret)
    with chromium() as browser:
        # The harness can see a leak: the same browser fetches a plain <img> at once.
        control = browser.new_page()
        control.set_content(f'<img src="{leak.url("control")}">')
        control.wait_for_load_state("load")
        assert any("control" in p for p in leak.paths)
        leak.paths.clear()

        page = browser.new_page()
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url))
        user = f"img-{uuid.uuid4().hex[:6]}"

        def open_as_user() -> None:
            page.goto(f"{frontend}/")
            box = page.get_by_label("User id")
            box.fill(user)
            box.press("Enter")
            wait_idle(page)

        open_as_user()
        # The echo LLM answers "echo: <prompt>": the answer holds the image too.
        chat(page, f"summary ![conversation]({url})", "echo: summary")
        for stored in (False, True):
            if stored:  # a new page, the conversation picked: rendered from the stream
                open_as_user()
                page.get_by_test_id("stSelectbox").click()
                page.get_by_role("option").nth(1).click()
                page.get_by_text("echo: summary").first.wait_for(timeout=30_000)
                wait_idle(page)
            page.wait_for_timeout(1000)  # time for any image to be asked for
            links = page.locator(f'a[href="{url}"]')
            assert links.count() == 2, page.inner_text("body")  # the prompt and the answer
            assert "image: conversation" in links.nth(1).inner_text()
            assert page.locator(f'img[src="{url}"]').count() == 0
            assert leak.paths == [] and not [u for u in asked if str(leak.port) in u]
