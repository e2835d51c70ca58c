"""State snapshotted by chatwax 0.1 (classes in `chatwax.steps`) loads after the upgrade."""

from __future__ import annotations

import base64
import pickle

from chatwax.core.conversation import Conversation
from chatwax.core.history import Turn
from chatwax.core.limits import UserLimits
from chatwax.dataflow import legacy

# pickle.dumps of chatwax 0.1 (commit b52545b) objects:
#   Conversation(owner="alice", history=[Turn("r1", "hello", "echo: hello")], turns=1,
#                pending=[Accepted(PromptRequest("r2", "alice", "c1", "and then?",
#                                                "_INBOX.r2", 1700000000.0), 1700000001.0)],
#                in_flight="r2")
#   UserLimits(in_flight={"r2": 1700000001.0}, spent=[(1700000000.5, 12)])
OLD_CONVERSATION = (
    "gAWVOwEAAAAAAACMDWNoYXR3YXguc3RlcHOUjAxDb252ZXJzYXRpb26Uk5QpgZROfZQojAVvd25lcpSMBWFsaWNl"
    "lIwHaGlzdG9yeZRdlGgAjARUdXJulJOUKYGUTn2UKIwKcmVxdWVzdF9pZJSMAnIxlIwGcHJvbXB0lIwFaGVsbG+U"
    "jAZhbnN3ZXKUjAtlY2hvOiBoZWxsb5R1hpRiYYwFdHVybnOUSwGMB3BlbmRpbmeUXZRoAIwIQWNjZXB0ZWSUk5Qp"
    "gZRdlCiMEGNoYXR3YXgucHJvdG9jb2yUjA1Qcm9tcHRSZXF1ZXN0lJOUKYGUXZQojAJyMpRoBowCYzGUjAlhbmQg"
    "dGhlbj+UjAlfSU5CT1gucjKUR0HZVPxAAAAASwFlYkdB2VT8QEAAAGViYYwJaW5fZmxpZ2h0lGggdYaUYi4="
)
OLD_LIMITS = (
    "gAWVYAAAAAAAAACMDWNoYXR3YXguc3RlcHOUjApVc2VyTGltaXRzlJOUKYGUTn2UKIwJaW5fZmxpZ2h0lH2UjAJy"
    "MpRHQdlU/EBAAABzjAVzcGVudJRdlEdB2VT8QCAAAEsMhpRhdYaUYi4="
)


def test_snapshots_of_the_previous_layout_load_as_todays_state() -> None:
    legacy.install()
    conv = pickle.loads(base64.b64decode(OLD_CONVERSATION))
    assert isinstance(conv, Conversation)
    assert conv.owner == "alice" and conv.turns == 1 and conv.in_flight == "r2"
    assert conv.history == [Turn("r1", "hello", "echo: hello")]
    assert conv.history[0].tokens == -1  # not counted then: sized by the counter now
    assert conv.pending[0].request.prompt == "and then?"
    assert (conv.summary, conv.folded, conv.summarizing) == ("", 0, None)
    assert conv.busy  # a resumed call is restarted
    limits = pickle.loads(base64.b64decode(OLD_LIMITS))
    assert isinstance(limits, UserLimits)
    assert limits.in_flight == {"r2": 1700000001.0} and limits.spent == [(1700000000.5, 12)]
