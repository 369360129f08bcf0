"""Durations written the way operators write them: ``500ms``, ``30s``, ``10m``, ``1h30m``."""

from __future__ import annotations

import math
import re
from datetime import timedelta

__all__ = ["MAX_DURATION_SECONDS", "format_duration", "parse_duration", "to_seconds"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# ASCII digits only: ``\d`` would also take ``٣`` (ARABIC-INDIC DIGIT THREE) as 3.
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
#: No duration (period, timeout, grace, TTL…) is longer than a year: anything longer is a
#: typo, and instants that far ahead overflow the calendar.
MAX_DURATION_SECONDS = 366 * 86400.0


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Return seconds for ``text`` (``500ms``, ``30s``, ``10m``, ``1h``, ``1h30m``, ``2.5``).

    A bare number means seconds. Raises ``ValueError`` with a one-line message that names
    the bad value.
    """
    raw = text.strip(" \t").lower()
    expected = "expected e.g. 500ms, 30s, 10m, 1h (ASCII digits)"
    if not raw:
        raise ValueError(f"{what} is empty; {expected}")
    if _NUMBER.fullmatch(raw):
        total = float(raw)
    else:
        pos = 0
        total = 0.0
        for match in _PART.finditer(raw):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(raw) or pos == 0:
            raise ValueError(f"{what} {text!r} is not a duration; {expected}")
    return _bounded(total, text=repr(text), what=what)


def _bounded(seconds: float, *, text: str, what: str) -> float:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} {text} must be a finite number >= 0")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(
            f"{what} {text} is longer than the maximum {format_duration(MAX_DURATION_SECONDS)}"
        )
    return seconds


def to_seconds(value: float | int | timedelta | str, *, what: str = "duration") -> float:
    """Accept a ``timedelta``, a number of seconds or a duration string."""
    if isinstance(value, bool):
        raise TypeError(f"{what} {value!r} must be a timedelta, seconds or a duration string")
    if isinstance(value, timedelta):
        return _bounded(value.total_seconds(), text=repr(value), what=what)
    if isinstance(value, int | float):
        return _bounded(float(value), text=repr(value), what=what)
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
