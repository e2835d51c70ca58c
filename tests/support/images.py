"""The images the tests run, built once per session by scripts/build-images.sh.

`make test` starts that script in the background before the lint (a cold build takes
minutes, mostly downloads, and overlaps the chart's tests); `built()` first waits for that
build, whatever it did, then runs the script itself: BuildKit's cache makes an unchanged
rebuild take seconds, and the images then surely match this tree. A failed build fails the
tests that need the images, with the script's reason: nothing skips.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "artifacts" / "images"
BACKGROUND = OUT / "background"
"""`make test`'s background build: BACKGROUND.pid while it runs, .rc and .log after."""
NAMES = ("dataflow", "frontend", "local-llm")
TAG = os.environ.get("CHATWAX_TEST_IMAGE_TAG") or \
    "test-" + hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]
"""The tests' tag, one per checkout (the Makefile computes the same): two checkouts testing
at once on one engine (a CI clone beside a working tree) never run each other's images.
`make images` tags `dev`."""


@dataclass(frozen=True)
class Built:
    docker: str
    """The docker client of the engine that holds the images."""
    refs: dict[str, str]
    """name -> image reference (chatwax-<name>:<TAG>)."""
    report: str
    """The build tables: the background build's (cold or cached) and this session's."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for_background(timeout: float = 3000) -> str:
    """The background build's output once it has ended ("" when none was started)."""
    pid_file, rc_file = BACKGROUND.with_suffix(".pid"), BACKGROUND.with_suffix(".rc")
    if not pid_file.exists():
        return ""
    pid = int(pid_file.read_text().split()[0])
    deadline = time.monotonic() + timeout
    while not rc_file.exists() and _alive(pid) and time.monotonic() < deadline:
        time.sleep(1)
    log = BACKGROUND.with_suffix(".log")
    rc = rc_file.read_text().strip() if rc_file.exists() else "?"
    text = log.read_text(errors="replace") if log.exists() else ""
    return f"background build (make test), exit {rc}:\n{text[-3000:]}"


@functools.cache
def built() -> Built:
    background = _wait_for_background()
    engine = subprocess.run([str(ROOT / "scripts" / "container-engine.sh")],
                            capture_output=True, text=True, timeout=300)
    assert engine.returncode == 0, f"no container engine:\n{engine.stderr}"
    docker = engine.stdout.strip()
    started = time.monotonic()
    out = subprocess.run([str(ROOT / "scripts" / "build-images.sh"), *NAMES],
                         capture_output=True, text=True, timeout=3000,
                         env={**os.environ, "DOCKER": docker, "CHATWAX_IMAGE_TAG": TAG,
                              "CHATWAX_IMAGES_OUT": str(OUT)})
    assert out.returncode == 0, f"building the images failed:\n{out.stderr[-6000:]}"
    report = "\n".join(filter(None, [
        background, "this session's build:", out.stdout.rstrip(),
        f"(in {time.monotonic() - started:.0f} s; logs in {OUT})"]))
    return Built(docker, {name: f"chatwax-{name}:{TAG}" for name in NAMES}, report)
