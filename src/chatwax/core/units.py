"""Durations and sizes as people type them on a command line: `90d`, `12h`, `10GiB`."""

from __future__ import annotations

import re
from typing import Final

from chatwax.core.errors import ConfigError

_DURATION: Final = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_SECONDS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_SIZE: Final = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?$", re.IGNORECASE)
_POWERS: Final = {"k": 1, "m": 2, "g": 3, "t": 4}


def parse_duration(text: str, what: str = "duration") -> float:
    """`30m`, `24h`, `90d`, `2w` or plain seconds, as seconds."""
    m = _DURATION.match(text.strip().lower())
    if not m:
        raise ConfigError(f"{what} {text!r} is not like 30m, 24h, 90d or a number of seconds")
    return float(m.group(1)) * _SECONDS[m.group(2)]


def parse_size(text: str, what: str = "size") -> int:
    """`500MB`, `10GiB`, `1g` or plain bytes, as bytes (KB/MB/GB are powers of 1000, KiB/MiB/GiB
    of 1024)."""
    m = _SIZE.match(text.strip())
    if not m:
        raise ConfigError(f"{what} {text!r} is not like 500MB, 10GiB or a number of bytes")
    unit = (m.group(2) or "b").lower()
    if unit == "b":
        return int(float(m.group(1)))
    base = 1024 if "i" in unit else 1000
    return int(float(m.group(1)) * base ** _POWERS[unit[0]])
