"""Durations written the way operators write them: ``500ms``, ``30s``, ``10m``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["format_duration", "parse_duration", "to_seconds"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Return seconds for ``text`` (``500ms``, ``30s``, ``10m``, ``1h``, ``1h30m``, ``2.5``).

    A bare number means seconds. Raises ``ValueError`` with a one-line message that names
    the bad value.
    """
    raw = text.strip().lower()
    if not raw:
        raise ValueError(f"{what} is empty; expected e.g. 500ms, 30s, 10m, 1h")
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        if value < 0 or value != value or value == float("inf"):
            raise ValueError(f"{what} {text!r} must be a finite number >= 0")
        return value
    pos = 0
    total = 0.0
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(raw) or pos == 0:
        raise ValueError(f"{what} {text!r} is not a duration; expected e.g. 500ms, 30s, 10m, 1h")
    return total


def to_seconds(value: float | int | timedelta | str, *, what: str = "duration") -> float:
    """Accept a ``timedelta``, a number of seconds or a duration string."""
    if isinstance(value, bool):
        raise TypeError(f"{what} {value!r} must be a timedelta, seconds or a duration string")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return parse_duration(value, what=what)
    raise TypeError(f"{what} {value!r} must be a timedelta, seconds or a duration string")


def format_duration(seconds: float) -> str:
    """The shortest readable form: ``0.2`` → ``200ms``, ``90`` → ``1m30s``."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000, 3):g}ms"
    parts = []
    rest = seconds
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if rest >= size:
            count = int(rest // size)
            parts.append(f"{count}{unit}")
            rest -= count * size
    if rest or not parts:
        parts.append(f"{round(rest, 3):g}s")
    return "".join(parts)
