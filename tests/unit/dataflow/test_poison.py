"""Nothing a client sends, and no snapshot a recovery store holds, can stop the real flow.

The flow is the real one, run by bytewax.testing with several workers and in-memory edges
(`chatwax.bench.edges`); recovery is Bytewax's own SQLite store. A step that raised would
end `cluster_main` with an exception: each test returning at all is half its assertion.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, cluster_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from chatwax.bench.edges import InstantLoop
from chatwax.core.conversation import LlmCall, LlmResult
from chatwax.core.errors import ErrorCode
from chatwax.core.intake import Inbound
from chatwax.core.replies import Reply
from chatwax.core.settings import Settings
from chatwax.core.wire import ErrorEvent, PromptRequest, Usage
from chatwax.dataflow.deadletter import DeadLetter
from chatwax.dataflow.flow import build_flow
from chatwax.dataflow.metrics import Metrics
from tests.unit.core.test_safejson import KILLERS


def _echo(call: LlmCall) -> LlmResult:
    r = call.request
    return LlmResult(r.request_id, r.conversation_id, f"echo: {r.prompt}", Usage(1, 2), "m",
                     1.0, 0.5, 0.0, user_id=r.user_id)


def _prompt(seq: int, user: str, conv: str, text: str = "hi") -> Inbound:
    req = PromptRequest(f"r{seq}", user, conv, text, f"_INBOX.{seq}", 1.0)
    return Inbound(seq % 2, seq, req.encode(), req.reply_to, 1.0)


def _run(items: list[Inbound], expected_feedback: int, metrics: Metrics | None = None,
         recovery: Path | None = None) -> tuple[list[Any], InstantLoop]:
    llm = InstantLoop(expected_feedback, _echo)
    out: list[Any] = []
    flow = build_flow(Settings(system_prompt="s"),
                      llm.edges(TestingSource(items, 4), TestingSink(out)),
                      metrics or Metrics(CollectorRegistry()))
    cluster_main(flow, [], 0, worker_count_per_proc=2, epoch_interval=timedelta(seconds=0),
                 recovery_config=RecoveryConfig(str(recovery)) if recovery else None)
    return out, llm


def _errors(out: list[Any]) -> dict[str, ErrorEvent]:
    return {r.subject: r.event for r in out
            if isinstance(r, Reply) and isinstance(r.event, ErrorEvent)}


def test_the_known_killers_are_refused_and_the_next_prompt_answered() -> None:
    items = [Inbound(i % 2, i, data, f"_INBOX.k{i}", 1.0)
             for i, data in enumerate(KILLERS.values())]
    items.append(_prompt(100, "alice", "after"))
    metrics = Metrics(CollectorRegistry())
    out, llm = _run(items, expected_feedback=1, metrics=metrics)

    errors = _errors(out)
    assert all(errors[f"_INBOX.k{i}"].code in (ErrorCode.BAD_REQUEST, ErrorCode.PROMPT_TOO_LARGE)
               for i in range(len(KILLERS)))
    assert [c.request.request_id for c in llm.calls] == ["r100"]
    assert sum(s.value for m in metrics.rejected.collect() for s in m.samples
               if s.name.endswith("_total")) == len(KILLERS)


FIELD_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6,
)
MESSAGES = (
    st.binary(max_size=300)
    | st.dictionaries(st.sampled_from(["v", "type", "request_id", "user_id", "conversation_id",
                                       "prompt", "reply_to", "created_at"]),
                      FIELD_VALUES, max_size=8).map(lambda o: json.dumps(o).encode())
    | st.sampled_from(list(KILLERS.values()))
)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MESSAGES, min_size=1, max_size=20))
def test_any_batch_of_messages_leaves_the_flow_running(batch: list[bytes]) -> None:
    """Whatever comes before it, a normal prompt is answered; every bad message is refused
    (a reply where it named a usable reply subject) and none reaches the LLM."""
    items = [Inbound(i % 2, i, data, f"_INBOX.f{i}", 1.0) for i, data in enumerate(batch)]
    items.append(_prompt(1000, "carol", "fuzzed"))
    out, llm = _run(items, expected_feedback=1)
    assert [c.request.request_id for c in llm.calls] == ["r1000"]
    assert len(_errors(out)) == len(batch)


def _snapshot_rows(store: Path) -> list[tuple[Path, str]]:
    rows = []
    for part in store.glob("*.sqlite3"):
        with sqlite3.connect(part) as db:
            rows += [(part, key) for (key,) in db.execute(
                "SELECT state_key FROM snaps WHERE step_id LIKE '%.user.%'")]
    return rows


def _overwrite(store: Path, user: str, snapshot: object) -> None:
    """Put `snapshot` where Bytewax keeps the user's state, as its own pickle."""
    for part, key in _snapshot_rows(store):
        if key == user:
            with sqlite3.connect(part) as db:
                db.execute("UPDATE snaps SET ser_change = ? WHERE state_key = ? AND step_id "
                           "LIKE '%.user.%'", (pickle.dumps(snapshot), key))
            return
    raise AssertionError(f"no snapshot of {user}")


def _garbled(snap: dict[str, Any], packed: bytes) -> dict[str, Any]:
    return {**snap, "packed": {"c": (False, 0, packed)}}


UNREADABLE = st.one_of(
    # Another build's shapes: an older snapshot's forms, an unknown version, garbage.
    st.tuples(st.booleans(), st.binary(max_size=64)),
    st.integers() | st.text(max_size=10) | st.binary(max_size=10),
    st.lists(st.integers(), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
    st.integers(0, 9).filter(lambda v: v != 2).map(lambda v: {"v": v, "user": "dora"}),
    # This build's form with a conversation inside it garbled, or not a conversation.
    st.binary(max_size=64).map(lambda b: ("packed", b)),
    st.just(("packed", pickle.dumps({"not": "a conversation"}))),
)


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(snapshot=UNREADABLE)
def test_a_snapshot_this_build_cannot_read_is_kept_and_its_prompts_set_aside(
        tmp_path_factory: Any, snapshot: object) -> None:
    store = tmp_path_factory.mktemp("recovery")
    init_db_dir(store, 2)
    first = [_prompt(1, "dora", "c"), _prompt(2, "eve", "c")]
    _run(first, expected_feedback=2, recovery=store)
    if isinstance(snapshot, tuple) and snapshot[0] == "packed":
        for part, key in _snapshot_rows(store):
            if key == "dora":
                with sqlite3.connect(part) as db:
                    (raw,) = db.execute("SELECT ser_change FROM snaps WHERE state_key = 'dora' "
                                        "AND step_id LIKE '%.user.%'").fetchone()
                snapshot = _garbled(pickle.loads(raw), snapshot[1])
    _overwrite(store, "dora", snapshot)

    later = [*first, _prompt(3, "dora", "c"), _prompt(4, "eve", "c")]
    out, llm = _run(later, expected_feedback=1, recovery=store)

    assert [c.request.request_id for c in llm.calls] == ["r4"]
    assert llm.calls[0].messages[-3]["content"] == "hi"  # eve had her history back
    refused = _errors(out)["_INBOX.3"]
    assert refused.code is ErrorCode.INTERNAL and "set aside" in refused.message
    dead = [d for d in out if isinstance(d, DeadLetter)]
    assert [d.step for d in dead] == ["user"]
    assert json.loads(dead[0].data)["request_id"] == "r3"
    # The unreadable snapshot stays, for a build that can read it.
    assert "dora" in {k for _, k in _snapshot_rows(store)}
