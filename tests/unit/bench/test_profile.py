"""The profile summary reads py-spy's collapsed stacks (`chatwax bench --profile`)."""

from __future__ import annotations

from chatwax.bench.profile import parse, report

LOOP = "thread (0x1f): chatwax-loop;run (chatwax/client/loopthread.py:34)"
ATTEMPT = "_attempt (chatwax/llm/client.py:120)"
COLLAPSED = "\n".join([
    f"{LOOP};{ATTEMPT};loads (json/decoder.py:337) 30",
    f"{LOOP};{ATTEMPT} 10",
    "thread (0x2a): MainThread;run (chatwax/dataflow/process.py:99) 60",
])


def test_samples_are_counted_per_thread_inclusive_and_self() -> None:
    p = parse(COLLAPSED)
    assert p.total == 100
    assert p.threads == {"chatwax-loop": 40, "MainThread": 60}
    assert p.inclusive["_attempt (chatwax/llm/client.py)"] == 40
    assert p.own["loads (json/decoder.py)"] == 30
    assert p.own["_attempt (chatwax/llm/client.py)"] == 10
    text = report(p)
    assert " 60.0 %  thread MainThread" in text
    assert " 40.0 %  _attempt (chatwax/llm/client.py)" in text
