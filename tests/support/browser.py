"""Headless Chromium driven over the DevTools protocol: load a page, read it, screenshot it.

Debian's `chromium` and aiohttp's websocket client are all it takes, so no browser
download and no extra driver are needed.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars",
)


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("chromium not found: run scripts/system-deps.sh")


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        await self.ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads((await self.ws.receive()).data)
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    async def text(self) -> str:
        got = await self.send("Runtime.evaluate", expression="document.body.innerText",
                              returnByValue=True)
        return str(got.get("result", {}).get("value") or "")


async def _drive(port: str, url: str, wait_for: list[str], timeout: float) -> tuple[str, bytes]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json()
        target = next(t for t in targets if t["type"] == "page")
        async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            page = Page(ws)
            await page.send("Page.enable")
            await page.send("Page.navigate", url=url)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                shown = await page.text()
                if all(w in shown for w in wait_for):
                    break
                await asyncio.sleep(0.25)
            await asyncio.sleep(1.0)  # let charts finish drawing
            text = await page.text()
            shot = await page.send("Page.captureScreenshot", format="png",
                                   captureBeyondViewport=True)
            return text, base64.b64decode(shot["data"])


def capture(url: str, wait_for: list[str], png: Path, timeout: float = 60.0,
            width: int = 1280, height: int = 2000) -> str:
    """Load `url`, wait until its text contains every `wait_for`, save a PNG; return text."""
    profile = tempfile.mkdtemp(prefix="chatwax-chromium-")
    proc = subprocess.Popen(
        [chromium_binary(), *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         f"--window-size={width},{height}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        text, image = asyncio.run(_drive(port, url, wait_for, timeout))
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(image)
        return text
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
