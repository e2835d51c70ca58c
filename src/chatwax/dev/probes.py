"""Probes of this machine's network: is a port free, does a URL answer yet."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from typing import Any


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[Any] | None = None,
              name: str = "the process", ok_status: int | None = None) -> None:
    """Wait until `url` answers (with `ok_status` when given, else anything below 500);
    fail at once if `proc` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status < 500 if ok_status is None else resp.status == ok_status:
                    return
        except OSError:  # includes HTTPError: a 503 while the cluster forms
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:g}s")
