"""Steps that cannot stop the cluster: a failure becomes a dead letter, not a panic.

An exception that leaves a Bytewax step stops every process of the cluster, and the input
that caused it is read again after the restart: one bad message would keep the service
down for as long as the stream keeps it. Expected bad input is refused long before this
(`chatwax.core.intake`); what still makes a step fail (a bug, a snapshot this build cannot
read) is caught here. The item is set aside as a `DeadLetter` (stored in the dead-letter
stream with its bytes, headers and the error), its sender gets an `internal` error reply,
the failure is counted and logged with its traceback, and the flow goes on.

Logs and dead letters carry ids, never a prompt's text: it is cut out of the error message,
and the traceback is printed without local values.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Generic, TypeVar

import bytewax.operators as op

from chatwax.core import wire
from chatwax.core.conversation import LlmResult, SummaryResult
from chatwax.core.errors import ErrorCode
from chatwax.core.intake import Accepted, Forget, Inbound, salvage_request_id
from chatwax.core.replies import Reply
from chatwax.dataflow.deadletter import DeadLetter
from chatwax.dataflow.metrics import Metrics

log = logging.getLogger("chatwax.dataflow.guard")

In = TypeVar("In")
Out = TypeVar("Out")

SET_ASIDE = ("chatwax could not process this message; it was set aside for the operator "
             "(dead letter in step '{step}')")


def _texts(item: object) -> list[str]:
    """The user's words an item carries: never to be logged."""
    if isinstance(item, Accepted):
        return [item.request.prompt]
    if isinstance(item, LlmResult) and item.answer:
        return [item.answer]
    if isinstance(item, SummaryResult) and item.summary:
        return [item.summary]
    return []


def describe(item: object) -> str:
    """Ids that say which item it was, for logs."""
    if isinstance(item, Inbound):
        return f"prompts stream partition {item.partition} sequence {item.seq}"
    if isinstance(item, Accepted | Forget):
        r = item.request
        return (f"{type(item).__name__.lower()} request {r.request_id} of user {r.user_id}, "
                f"conversation {r.conversation_id}")
    if isinstance(item, LlmResult):
        return f"LLM result of request {item.request_id}, conversation {item.conversation_id}"
    if isinstance(item, SummaryResult):
        return f"summary {item.call_id} of conversation {item.conversation_id}"
    return type(item).__name__


def error_text(exc: BaseException, item: object) -> str:
    """`Type: message`, with any text of the user's cut out."""
    message = str(exc)
    for text in _texts(item):
        if len(text) >= 4 and text in message:  # shorter: a word's letters by chance
            message = message.replace(text, "<text>")
    if any(len(t) >= 8 and t[:8] in message for t in _texts(item)):
        message = "<message withheld: it quotes the user's text>"
    return f"{type(exc).__name__}: {message}"[:2000]


def _payload(item: object) -> tuple[bytes, dict[str, str], str, str | None, str]:
    """What a dead letter keeps of an item: bytes, headers, origin, reply address, id."""
    if isinstance(item, Inbound):
        rid = salvage_request_id(item.data)
        return (item.data, dict(item.headers), f"{item.partition}:{item.seq}",
                wire.safe_reply_to(item.reply_to), rid)
    if isinstance(item, Accepted | Forget):
        r = item.request
        return r.encode(), {wire.REPLY_TO_HEADER: r.reply_to}, "", r.reply_to, r.request_id
    ids = {k: getattr(item, k) for k in getattr(type(item), "__slots__", ())
           if k.endswith("_id") and isinstance(getattr(item, k, None), str)}
    return json.dumps({"type": type(item).__name__, **ids}).encode(), {}, "", None, ""


def failed(step: str, item: object, exc: BaseException, metrics: Metrics) -> list[Any]:
    """The dead letter for `item`, and an error reply where its sender can be told."""
    error = error_text(exc, item)
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("step %s failed on %s: %s; set aside as a dead letter\n%s",
              step, describe(item), error, frames.rstrip())
    metrics.dead_letters.labels(step).inc()
    data, headers, origin, reply_to, rid = _payload(item)
    out: list[Any] = [DeadLetter(step, error, data, headers, origin)]
    if reply_to is not None:
        metrics.requests.labels(ErrorCode.INTERNAL.value).inc()
        out.append(Reply.error(reply_to, rid, ErrorCode.INTERNAL, SET_ASIDE.format(step=step)))
    return out


def guarded_map(step: str, fn: Callable[[In], Out], metrics: Metrics
                ) -> Callable[[In], list[Out | DeadLetter | Reply]]:
    """`fn` for `op.flat_map`: its result, or the failure's dead letter and reply."""

    def mapper(item: In) -> list[Out | DeadLetter | Reply]:
        try:
            return [fn(item)]
        except Exception as exc:  # noqa: BLE001 - the guard's whole job
            return failed(step, item, exc, metrics)

    return mapper


class GuardedLogic(op.StatefulLogic[In, Any, Any], Generic[In]):
    """A stateful step's logic, with each call guarded.

    Building it from a snapshot can fail too (a snapshot of another build): then the key's
    snapshot is kept exactly as it was, so a build that can read it loses nothing, and each
    item for the key is refused and set aside meanwhile.
    """

    def __init__(self, step: str, build: Callable[[Any], op.StatefulLogic[In, Any, Any]],
                 resume: Any, metrics: Metrics) -> None:
        self.step = step
        self.metrics = metrics
        self.resume = resume
        self.inner: op.StatefulLogic[In, Any, Any] | None
        self.unreadable: Any = None
        try:
            self.inner = build(resume)
        except Exception as exc:  # noqa: BLE001 - the guard's whole job
            self.inner = None
            self.unreadable = resume
            metrics.unreadable_snapshots.labels(step).inc()
            log.error("step %s: a snapshot cannot be read by this build (%s); it is kept as "
                      "it is, and the key's items are set aside\n%s", step,
                      error_text(exc, None), "".join(traceback.format_tb(exc.__traceback__)))

    def on_item(self, value: In) -> tuple[Iterable[Any], bool]:
        if self.inner is None:
            error = RuntimeError("the key's snapshot cannot be read by this build")
            return failed(self.step, value, error, self.metrics), self.RETAIN
        try:
            return self.inner.on_item(value)
        except Exception as exc:  # noqa: BLE001 - the guard's whole job
            return failed(self.step, value, exc, self.metrics), self.RETAIN

    def on_notify(self) -> tuple[Iterable[Any], bool]:
        return self._without_item("its timer", lambda inner: inner.on_notify())

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        return self._without_item("the end of its input", lambda inner: inner.on_eof())

    def _without_item(self, what: str, call: Callable[[op.StatefulLogic[In, Any, Any]],
                                                      tuple[Iterable[Any], bool]]
                      ) -> tuple[Iterable[Any], bool]:
        """A call with no item to set aside: a failure is logged, and the key goes on."""
        if self.inner is None:
            return [], self.RETAIN
        try:
            return call(self.inner)
        except Exception as exc:  # noqa: BLE001 - the guard's whole job
            self._timer_failed(what, exc)
            return [], self.RETAIN

    def notify_at(self) -> datetime | None:
        if self.inner is None:
            return None
        try:
            return self.inner.notify_at()
        except Exception as exc:  # noqa: BLE001 - the guard's whole job
            self._timer_failed("its next timer", exc)
            return None

    def _timer_failed(self, what: str, exc: Exception) -> None:
        """No item to set aside: the failure is logged, and the key goes on."""
        log.error("step %s failed on %s: %s\n%s", self.step, what, error_text(exc, None),
                  "".join(traceback.format_tb(exc.__traceback__)).rstrip())

    def snapshot(self) -> Any:
        """The state to keep; if it cannot be written, what the key was resumed from."""
        if self.inner is None:
            return self.unreadable  # kept exactly as it was read
        try:
            return self.inner.snapshot()
        except Exception as exc:  # noqa: BLE001 - the guard's whole job
            self._timer_failed("its snapshot (kept as it was resumed)", exc)
            return self.resume
