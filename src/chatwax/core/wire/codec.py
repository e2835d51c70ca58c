"""One codec for every wire message: a frozen dataclass <-> versioned JSON.

A message is a dataclass whose fields are its JSON keys, in order. A field may carry a
`Rule` (`field(metadata=on_wire(...))`): how a received value becomes the field's (a
conversion or a check), what stands in when the key is absent, and whether it is checked
before the others. The same for every message:

- untrusted bytes are read through `safejson`, bounded before parsing (`load_object`);
- `v` and `type` are written, never read into the object: inbound messages check `v`
  (`check_version`) and readers pick the class by `type`;
- unknown keys are ignored: a newer sender may add some;
- an absent key with no stand-in is a `KeyError`; a check's own `ProtocolError` passes
  through with its code and message; given a `what`, a value of the wrong type or shape
  (`KeyError`, `TypeError`, `ValueError`, ...) becomes `ProtocolError(BAD_REQUEST,
  "malformed <what> (<exception type>)")`, so a reader skips a bad record;
- a nested dataclass is written as its own object, an enum as its value, and a derived
  property (named in the class's `WIRE_DERIVED`) right after the field it follows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum
from typing import Any, Final, TypeVar

from chatwax.core import safejson
from chatwax.core.errors import ErrorCode, ProtocolError
from chatwax.core.wire.validate import MAX_MESSAGE_BYTES

VERSION: Final = 1
CONSTANT_KEYS: Final = ("v", "type")
"""Written from the class, never read from a message into it."""

T = TypeVar("T")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()
"""No stand-in: an absent key is a `KeyError` (a malformed message)."""


def _as_sent(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Rule:
    """How one field is read. `decode` gets the value sent, or the stand-in when the key is
    absent (`absent`, or `absent_factory()`); `sized` rules also get the prompt limit."""

    decode: Callable[..., Any] = _as_sent
    absent: Any = REQUIRED
    absent_factory: Callable[[], Any] | None = None
    first: bool = False
    """Checked before the fields that are not (a too-long prompt is refused as such)."""
    sized: bool = False

    def read(self, obj: Mapping[str, Any], name: str, max_prompt_chars: int) -> Any:
        value = obj.get(name, REQUIRED)
        if value is REQUIRED:
            if self.absent_factory is not None:
                value = self.absent_factory()
            elif self.absent is REQUIRED:
                raise KeyError(name)
            else:
                value = self.absent
        return self.decode(value, max_prompt_chars) if self.sized else self.decode(value)


_DEFAULT_RULE: Final = Rule()
_RULE_KEY: Final = "chatwax.wire"


def on_wire(decode: Callable[..., Any] = _as_sent, *, absent: Any = REQUIRED,
            absent_factory: Callable[[], Any] | None = None, first: bool = False,
            sized: bool = False) -> dict[str, Rule]:
    """A field's `metadata`: `field(metadata=on_wire(int, absent=0))`."""
    return {_RULE_KEY: Rule(decode, absent, absent_factory, first, sized)}


def optional(convert: Callable[[Any], T]) -> Callable[[Any], T | None]:
    """`null` (or absent, with `absent=None`) stays None; anything else is converted."""
    return lambda value: None if value is None else convert(value)


def nested(cls: type[T]) -> Callable[[Any], T]:
    """A dataclass inside a message; `null`, absent or empty reads as all its stand-ins."""
    return lambda value: _read_fields(cls, value or {}, 0)


_PLANS: dict[type[Any], tuple[tuple[str, Rule], ...]] = {}


def _plan(cls: type[Any]) -> tuple[tuple[str, Rule], ...]:
    """The fields a message is read into, with their rules: `first` ones, then the rest,
    each group in field order (the order of the checks decides which error is reported)."""
    plan = _PLANS.get(cls)
    if plan is None:
        rules = [(f.name, f.metadata.get(_RULE_KEY, _DEFAULT_RULE)) for f in fields(cls)
                 if f.name not in CONSTANT_KEYS]
        plan = _PLANS[cls] = tuple(sorted(rules, key=lambda named: not named[1].first))
    return plan


def _read_fields(cls: type[T], obj: Mapping[str, Any], max_prompt_chars: int) -> T:
    return cls(**{name: rule.read(obj, name, max_prompt_chars) for name, rule in _plan(cls)})


_MALFORMED: Final = (KeyError, TypeError, ValueError, AttributeError, OverflowError)
"""What reading a field of the wrong type or shape raises."""


def from_json(cls: type[T], obj: Mapping[str, Any], *, what: str | None = None,
              max_prompt_chars: int = 0) -> T:
    """The message `cls` from a loaded JSON object, every field by its rule (`sized` ones,
    the prompt, within `max_prompt_chars`). With `what`, a wrong type or shape is a
    `ProtocolError` naming it; without, only the rules' own checks fail (they raise
    `ProtocolError` themselves)."""
    if what is None:
        return _read_fields(cls, obj, max_prompt_chars)
    try:
        return _read_fields(cls, obj, max_prompt_chars)
    except _MALFORMED as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST,
                            f"malformed {what} ({type(exc).__name__})") from None


def to_json(message: Any) -> dict[str, Any]:
    """A message's JSON object: its fields in order, each derived property after its field."""
    derived: Mapping[str, str] = getattr(message, "WIRE_DERIVED", {})
    obj: dict[str, Any] = {}
    for f in fields(message):
        obj[f.name] = _json_value(getattr(message, f.name))
        for name, after in derived.items():
            if after == f.name:
                obj[name] = _json_value(getattr(message, name))
    return obj


def _json_value(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return to_json(value)
    if isinstance(value, Enum):
        return value.value
    return value


def dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


class Message:
    """A wire message: `encode()` gives its bytes (JSON, UTF-8, compact)."""

    __slots__ = ()

    def encode(self) -> bytes:
        return dump(to_json(self))


def check_version(obj: Mapping[str, Any]) -> None:
    """What a sender sends must be this version (absent means it)."""
    v = obj.get("v", VERSION)
    if v != VERSION:
        raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION,
                            f"protocol version {v!r} is not supported (use {VERSION})")


def load_object(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """A JSON object from untrusted bytes, bounded before parsing (`safejson`)."""
    obj = safejson.loads(data, max_bytes)
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "payload must be a JSON object")
    return obj
