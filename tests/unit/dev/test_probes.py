"""Probes: a bound port is not free; `wait_http` returns once a URL answers, and fails at
once when the process it waits for has exited."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest

from chatwax.dev.probes import port_free, wait_http


class Status(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(int(self.path.strip("/")))
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Status)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_bound_port_is_not_free() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert not port_free(port)
    assert port_free(port)


def test_wait_http_takes_an_answer_or_the_one_asked_for(server: str) -> None:
    wait_http(f"{server}/204", timeout=5)
    wait_http(f"{server}/200", timeout=5, ok_status=200)
    with pytest.raises(RuntimeError, match=r"/503 did not answer within 0.3s"):
        wait_http(f"{server}/503", timeout=0.3)
    with pytest.raises(RuntimeError, match="did not answer"):
        wait_http(f"{server}/204", timeout=0.3, ok_status=200)


class Exited:
    returncode = 3

    def poll(self) -> int:
        return self.returncode


def test_wait_http_fails_at_once_when_the_process_exited() -> None:
    with pytest.raises(RuntimeError, match="nats-server exited with code 3"):
        wait_http("http://127.0.0.1:9/", timeout=30, proc=cast(Any, Exited()),
                  name="nats-server")
