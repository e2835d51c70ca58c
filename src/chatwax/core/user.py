"""One user's state, owned by one key: admission, quotas and the user's conversations.

Everything a turn needs is here, so one stateful step decides it from admission to the
stored answer: the rate and quota a prompt is admitted under, the conversation it joins,
the LLM call it starts, and the transcript and final reply its result becomes. Each
conversation is kept packed (pickled bytes) between uses, so a snapshot re-packs only
what changed and a restart hands conversations over without building them. A
conversation idle past the retention age leaves the state; a user with none left goes.

Pure: the caller passes the time; nothing here does I/O or knows about Bytewax.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any, Final

from chatwax.core.conversation import (
    Conversation,
    ConversationConfig,
    Effect,
    LlmResult,
    SummaryResult,
)
from chatwax.core.intake import Accepted, Forget
from chatwax.core.limits import Allowance, LimitsConfig
from chatwax.core.replies import Reply
from chatwax.core.wire import AckEvent

SNAPSHOT_VERSION: Final = 2
"""Written into every snapshot; a snapshot of another version is refused by name."""

Packed = tuple[bool, int, bytes]
"""A conversation at rest: whether a call of it was in flight, how many of its prompts
were waiting for an answer, and its pickled state."""


class UnknownSnapshot(ValueError):
    """A snapshot this build does not know how to read."""


@dataclass(frozen=True)
class UserConfig:
    conversation: ConversationConfig
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    retention_s: float = 0.0
    """A conversation idle this long leaves the state (0: never)."""


@dataclass(slots=True)
class UserState:
    user_id: str
    allowance: Allowance = field(default_factory=Allowance)
    packed: dict[str, Packed] = field(default_factory=dict)
    """Conversations at rest, by id."""
    live: dict[str, Conversation] = field(default_factory=dict)
    """Conversations used since the last snapshot (their `packed` entry is stale)."""
    last_active: dict[str, float] = field(default_factory=dict)
    restart_due: bool = False
    """Resumed with calls that were in flight: start them again on the next timer."""

    # -- Reading and writing conversations -------------------------------------------------

    def conversation_ids(self) -> set[str]:
        return set(self.packed) | set(self.live)

    def count(self) -> int:
        """Conversations held."""
        return len(self.packed) + sum(1 for cid in self.live if cid not in self.packed)

    def get(self, conversation_id: str) -> Conversation | None:
        conv = self.live.get(conversation_id)
        if conv is None and conversation_id in self.packed:
            conv = pickle.loads(self.packed[conversation_id][2])
            self.live[conversation_id] = conv
        return conv

    def _busy(self, conversation_id: str) -> bool:
        conv = self.live.get(conversation_id)
        if conv is not None:
            return conv.busy or bool(conv.pending)
        busy, waiting, _ = self.packed.get(conversation_id, (False, 0, b""))
        return busy or waiting > 0

    def _waiting(self) -> int:
        """Prompts admitted and not answered yet, in every conversation."""
        return sum(len(c.pending) for c in self.live.values()) + sum(
            waiting for cid, (_, waiting, _) in self.packed.items() if cid not in self.live)

    # -- Events ------------------------------------------------------------------------------

    def on_prompt(self, item: Accepted, cfg: UserConfig, now: float) -> list[Effect]:
        req = item.request
        conv = self.get(req.conversation_id)
        if conv is not None and conv.knows(req.request_id):
            return conv.on_prompt(item, cfg.conversation)  # read again after a restart
        refused = self.allowance.admit(
            item, cfg.limits, now, waiting=self._waiting(),
            conversations=self.count(), new=conv is None)
        if refused is not None:
            return [refused]
        if conv is None:
            conv = self.live[req.conversation_id] = Conversation(owner=self.user_id)
        self.last_active[req.conversation_id] = now
        return conv.on_prompt(item, cfg.conversation)

    def on_result(self, result: LlmResult, cfg: UserConfig, now: float) -> list[Effect]:
        conv = self.get(result.conversation_id)
        if conv is None:
            return []  # forgotten while its call ran
        self.allowance.spend(result.usage.total_tokens, now)
        self.last_active[result.conversation_id] = now
        return conv.on_result(result, cfg.conversation)

    def on_summary(self, result: SummaryResult, cfg: UserConfig, now: float) -> list[Effect]:
        conv = self.get(result.conversation_id)
        if conv is None:
            return []
        self.allowance.spend(result.usage.total_tokens, now)
        return conv.on_summary(result, cfg.conversation)

    def forget(self, item: Forget) -> list[Effect]:
        """Every conversation the state holds (or the one named) goes, whether or not its
        transcripts still exist; the ack counts what was dropped."""
        req = item.request
        wanted = ([req.conversation_id] if req.conversation_id else
                  sorted(self.conversation_ids()))
        effects: list[Effect] = []
        forgotten = turns = waiting = 0
        for cid in wanted:
            conv = self.get(cid)
            if conv is None:
                continue
            forgotten += 1
            turns += conv.turns
            waiting += len(conv.pending)
            effects += conv.drop()
            self.live.pop(cid, None)
            self.packed.pop(cid, None)
            self.last_active.pop(cid, None)
        if not req.conversation_id:
            self.allowance = Allowance()  # the user's spending and rate go too
        effects.append(Reply(req.reply_to, AckEvent(
            req.request_id, f"forgot {forgotten} conversations of user {req.user_id}: "
            f"{turns} turns, {waiting} waiting",
            details={"conversations": forgotten, "turns": turns, "waiting": waiting})))
        return effects

    def restart_in_flight(self, cfg: UserConfig) -> list[Effect]:
        """After a restart nothing runs any more: start again what was running."""
        self.restart_due = False
        effects: list[Effect] = []
        for cid, (busy, _, _) in list(self.packed.items()):
            conv = self.get(cid) if busy else None
            if conv is not None:
                effects += conv.restart_in_flight(cfg.conversation)
        return effects

    def expire(self, cfg: UserConfig, now: float) -> int:
        """Conversations idle past the retention age leave; returns how many."""
        if not cfg.retention_s:
            return 0
        old = [cid for cid, t in self.last_active.items()
               if now - t >= cfg.retention_s and not self._busy(cid)]
        for cid in old:
            self.live.pop(cid, None)
            self.packed.pop(cid, None)
            del self.last_active[cid]
        return len(old)

    def next_expiry(self, cfg: UserConfig) -> float | None:
        """When the oldest idle conversation is due to leave. A busy one is not counted:
        its result touches the state again, and the timer is asked for anew then."""
        if not cfg.retention_s:
            return None
        idle = [t for cid, t in self.last_active.items() if not self._busy(cid)]
        return min(idle) + cfg.retention_s if idle else None

    @property
    def empty(self) -> bool:
        return not self.packed and not self.live

    # -- Snapshots -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain data: conversations packed (only the ones used since the last snapshot are
        pickled again), the allowance, the activity times, and the schema version."""
        for cid, conv in self.live.items():
            self.packed[cid] = (conv.busy, len(conv.pending),
                                pickle.dumps(conv, pickle.HIGHEST_PROTOCOL))
        self.live.clear()
        return {"v": SNAPSHOT_VERSION, "user": self.user_id, "packed": dict(self.packed),
                "last_active": dict(self.last_active),
                "allowance": self.allowance.to_snapshot()}

    @classmethod
    def from_snapshot(cls, snap: object) -> UserState:
        if not isinstance(snap, dict) or snap.get("v") != SNAPSHOT_VERSION:
            version = snap.get("v") if isinstance(snap, dict) else type(snap).__name__
            raise UnknownSnapshot(
                f"user state snapshot of version {version!r}; this build reads version "
                f"{SNAPSHOT_VERSION}")
        packed = {str(k): (bool(v[0]), int(v[1]), bytes(v[2]))
                  for k, v in snap["packed"].items()}
        return cls(str(snap["user"]), Allowance.from_snapshot(snap["allowance"]), packed, {},
                   {str(k): float(t) for k, t in snap["last_active"].items()},
                   restart_due=any(busy for busy, _, _ in packed.values()))

