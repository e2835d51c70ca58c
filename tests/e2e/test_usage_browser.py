"""The Usage page in a real browser: a real Streamlit server, headless Chromium, a PNG."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from chatwax.core.settings import Settings
from chatwax.dev.stack import Stack
from tests.support.asks import ask_all, run
from tests.support.browser import capture

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"


def test_usage_page_renders_the_numbers(
    cluster: Stack, llm: Any, settings: Settings, frontend: str
) -> None:
    for who in ("ann", "ben", "ann"):
        run(ask_all(settings, f"{who}-{uuid.uuid4().hex[:4]}", f"c-{uuid.uuid4().hex[:8]}",
                    f"browser test from {who}"))
    usage = llm.usage()
    png = ARTIFACTS / "usage-page.png"
    text = capture(f"{frontend}/usage", ["Input tokens", "Top users", "By model"], png)
    lines = [line.strip() for line in text.splitlines() if line.strip()]

    def after(label: str) -> str:
        return lines[lines.index(label) + 1]

    assert after("Turns") == f"{usage['requests_ok']:,}"
    assert after("Input tokens") == f"{usage['prompt_tokens']:,}"
    assert after("Output tokens") == f"{usage['completion_tokens']:,}"
    assert "echo-1" in text
    assert png.stat().st_size > 10_000  # a real picture, not an empty page
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
