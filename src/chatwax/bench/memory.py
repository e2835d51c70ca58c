"""How many bytes of Python state an idle conversation costs the user step, measured on the
real state objects (what bounds the conversations one process can hold)."""

from __future__ import annotations

import pickle
import tracemalloc

from prometheus_client import CollectorRegistry

from chatwax.core.conversation import Conversation, ConversationConfig
from chatwax.core.history import Turn
from chatwax.core.user import UserConfig, UserState
from chatwax.dataflow.logic import UserLogic
from chatwax.dataflow.metrics import Metrics


def _snapshots(count: int, per_user: int) -> tuple[list[bytes], int]:
    """Pickled states of `count // per_user` users with `per_user` one-turn conversations
    each, and the characters of text their turns hold."""
    snapshots = []
    text = 0
    for u in range(count // per_user):
        user = UserState(f"user-{u:06d}")
        for i in range(u * per_user, (u + 1) * per_user):
            conv = Conversation(owner=user.user_id, turns=1)
            prompt, answer = f"question {i} " * 8, f"answer {i} " * 30
            text += len(prompt) + len(answer)  # ASCII: one byte a character, pickled too
            conv.history.append(Turn(f"{i:032x}", prompt, answer))
            user.live[f"conv-{i:08d}"] = conv
            user.last_active[f"conv-{i:08d}"] = 0.0
        snapshots.append(pickle.dumps(user.snapshot()))
    return snapshots, text


def conversation_memory(count: int = 20_000) -> float:
    """Bytes of Python state per idle conversation (one turn), beyond the turn's text.

    What the user step holds for a resumed conversation of a user with 20: its packed
    bytes, the entry in the user's maps, and a share of the user's logic object. Bytewax's
    own per-key bookkeeping is not included.
    """
    metrics = Metrics(CollectorRegistry())
    cfg = UserConfig(ConversationConfig("system", 4000, "local"))
    per_user = 20
    snapshots, text = _snapshots(count, per_user)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    held = [UserLogic(cfg, metrics, pickle.loads(s)) for s in snapshots]
    used = sum(d.size_diff for d in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    assert sum(h.state.count() for h in held) == count // per_user * per_user
    return round((used - text) / count, 1)
