"""A dead letter is stored with its original headers and why, once per step and origin."""

from __future__ import annotations

from nats.js.api import Header

from chatwax.core import wire
from chatwax.dataflow.deadletter import MAX_HEADER_CHARS, DeadLetter


def test_headers_say_why_and_replays_are_stored_once() -> None:
    letter = DeadLetter("parse", "ValueError:  bad\nthing " + "x" * 2000, b"{}",
                        {"Nats-Msg-Id": "client-id", wire.REPLY_TO_HEADER: "_INBOX.a"}, "3:17")
    headers = letter.all_headers()
    assert letter.subject == "chatwax.dead.parse"
    assert headers[Header.MSG_ID] == "parse:3:17"  # the client's id would clash with its prompt
    assert headers[wire.REPLY_TO_HEADER] == "_INBOX.a"
    assert headers[wire.DEAD_STEP_HEADER] == "parse" and headers[wire.DEAD_ORIGIN_HEADER] == "3:17"
    error = headers[wire.DEAD_ERROR_HEADER]
    assert error.startswith("ValueError: bad thing x") and len(error) == MAX_HEADER_CHARS


def test_without_an_origin_no_message_id_is_kept() -> None:
    headers = DeadLetter("user", "boom", b"x", {"Nats-Msg-Id": "client-id"}).all_headers()
    assert Header.MSG_ID not in headers and headers[wire.DEAD_ORIGIN_HEADER] == ""
