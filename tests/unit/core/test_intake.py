"""Property-based fuzzing of the edge: whatever arrives, the dataflow's parsing and
conversation logic answer with data (an accepted prompt or a rejection), never a crash."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chatwax.core import wire
from chatwax.core.conversation import (
    Answered,
    Conversation,
    ConversationConfig,
    LlmCall,
    LlmResult,
)
from chatwax.core.errors import ErrorCode
from chatwax.core.intake import Accepted, Inbound, Rejected, parse_inbound
from chatwax.core.replies import Reply
from chatwax.core.wire import ErrorEvent, FinalEvent, PromptRequest, Transcript, Usage

SAFE_ID = re.compile(r"[A-Za-z0-9_-]+")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
FIELDS = ["v", "request_id", "user_id", "conversation_id", "prompt", "reply_to", "created_at"]


def _check(result: Accepted | Rejected) -> None:
    if isinstance(result, Accepted):
        req = result.request
        for value in (req.request_id, req.user_id, req.conversation_id):
            assert SAFE_ID.fullmatch(value)
        assert req.reply_to.startswith(wire.REPLY_PREFIXES)
        assert not any(c in req.reply_to for c in "*> \t\r\n")
        assert 0 < len(req.prompt) <= 1000
    else:
        assert isinstance(result.code, ErrorCode) and result.message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512), st.one_of(st.none(), st.text(max_size=40)))
def test_any_bytes_become_data_never_an_exception(data: bytes, reply_to: str | None) -> None:
    result = parse_inbound(Inbound(0, 1, data, reply_to, 0.0), max_prompt_chars=1000)
    _check(result)
    if isinstance(result, Rejected) and result.reply_to is not None:
        assert result.reply_to.startswith(wire.REPLY_PREFIXES)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=len(FIELDS)))
def test_any_json_object_is_accepted_only_when_valid(obj: dict[str, Any]) -> None:
    data = json.dumps(obj, allow_nan=True).encode()
    _check(parse_inbound(Inbound(0, 1, data, "_INBOX.fuzz", 0.0), max_prompt_chars=1000))


INJECTIONS = ["a.b", "a*", ">", "a b", "a\tb", "a\x00b", "a\nb", "ü", "a/b", "", "a" * 200]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["user_id", "conversation_id", "request_id"]),
       st.sampled_from(INJECTIONS) | st.text(min_size=1, max_size=80))
def test_ids_that_could_inject_subject_tokens_are_refused(field: str, value: str) -> None:
    obj = {"v": 1, "request_id": "r", "user_id": "u", "conversation_id": "c", "prompt": "p",
           "reply_to": "_INBOX.x", field: value}
    result = parse_inbound(Inbound(0, 1, json.dumps(obj).encode(), None, 0.0), 1000)
    if SAFE_ID.fullmatch(value) and len(value) <= 64:
        assert isinstance(result, Accepted)
    else:
        assert isinstance(result, Rejected) and result.code is ErrorCode.BAD_REQUEST


CFG = ConversationConfig("sys", prompt_budget=300, provider="p", input_limit=2000)
events = st.lists(
    st.tuples(st.sampled_from(["prompt", "ok", "fail", "restart"]),
              st.sampled_from(["alice", "mallory"]), st.integers(0, 5), st.text(max_size=60)),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_conversation_invariants_hold_for_any_event_order(seq: list[Any]) -> None:
    conv = Conversation(owner="alice")
    transcripts: list[Transcript] = []
    for kind, _, n, text in seq:  # a conversation is one user's (their state holds it)
        if kind == "prompt":
            req = PromptRequest(f"r{n}", "alice", "c", text or "x", "_INBOX.r", 0.0)
            effects = conv.on_prompt(Accepted(req, 0.0), CFG)
        elif kind == "restart":
            effects = conv.restart_in_flight(CFG)
        else:
            rid = conv.in_flight if n % 2 == 0 and conv.in_flight else f"r{n}"
            answer = None if kind == "fail" else f"answer {n}"
            effects = conv.on_result(
                LlmResult(rid, "c", answer, Usage(1, 1), "m", 1.0, None, 0.0,
                          None if answer else ErrorCode.LLM_UNAVAILABLE, user_id="alice"), CFG)
        for e in effects:
            assert isinstance(e, LlmCall | Reply | Answered)
            if isinstance(e, Reply):
                assert isinstance(e.event, ErrorEvent)
            if isinstance(e, Answered):
                transcripts.append(e.transcript)
                assert isinstance(e.final.event, FinalEvent)
                assert e.final.event.turn == e.transcript.turn
            if isinstance(e, LlmCall):
                assert e.request.user_id == "alice"
                assert conv.in_flight == e.request.request_id
        # One call at most, always the head of the queue; only the owner is queued.
        assert conv.in_flight is None or conv.in_flight == conv.pending[0].request.request_id
        assert all(p.request.user_id == "alice" for p in conv.pending)
        assert [t.turn for t in transcripts] == list(range(1, len(transcripts) + 1))
        assert conv.turns == len(transcripts)
        ids = [t.request_id for t in conv.history] + [p.request.request_id for p in conv.pending]
        assert len(ids) == len(set(ids)), "a request is never held twice"
