"""The tutorial's request, as its frontend sends it."""

from __future__ import annotations

import pytest

from chatwax.core import wire
from chatwax.core.errors import ProtocolError


def test_compat_payload_is_the_tutorials() -> None:
    got = wire.decode_compat(b'{"user_id": "bob", "prompt": "hey"}', 100)
    assert got == wire.CompatPrompt("bob", "hey")
    assert wire.decode_compat(b'{"user_id": 7, "prompt": "hey"}', 100).user_id == "7"
    with pytest.raises(ProtocolError, match="'user_id'"):
        wire.decode_compat(b'{"prompt": "hey"}', 100)
    assert wire.compat_conversation_id("bob") == "tutorial-bob"
