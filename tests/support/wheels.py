"""A built chatwax wheel in a fresh virtualenv: what a user's (or an image's) install holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run(*cmd: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout)


def install_wheel(source: Path, work: Path, extras: str = "") -> Path:
    """Build `source` into a wheel, install it (with `extras`, e.g. "[dev]") into a new
    virtualenv without system site-packages, and return that virtualenv. pip's own cache
    is used, as an image build's cache mount would be."""
    wheels = work / "wheels"
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", wheels,
                source)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("chatwax-*.whl")
    venv = work / "venv"
    made = run(sys.executable, "-m", "venv", venv)
    assert made.returncode == 0, made.stderr
    # --no-compile: bytecode is written on first import anyway; compiling Streamlit, pandas
    # and pyarrow up front took half of the install (36 s against 19 s on 2 cores).
    installed = run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-compile",
                    "--disable-pip-version-check", f"{wheel}{extras}")
    assert installed.returncode == 0, installed.stderr
    return venv
