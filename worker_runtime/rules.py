"""The schedule and lease rules, in one place. Pure: no I/O, no clock.

The runtime's validation (``Schedule.build``, ``LeaseTiming``, ``tickwork run``), the
operator's spec parser and the CRD's CEL rules all read these numbers and checks, so a value
one of them accepts is never refused by another. Each check raises ``ValueError`` with one
line that names the value (``what`` is how the caller calls it: a flag, an environment
variable or a field path) and what was expected.
"""

from __future__ import annotations

import math
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from worker_runtime.durations import format_duration

__all__ = [
    "DEFAULT_LEASE_TTL_SECONDS",
    "DEFAULT_RENEW_FRACTION",
    "MAX_LEASE_TTL_SECONDS",
    "MAX_RENEW_FRACTION",
    "MAX_SHUTDOWN_GRACE_SECONDS",
    "MIN_LEASE_TTL_SECONDS",
    "MIN_PERIOD_SECONDS",
    "MIN_RENEW_INTERVAL_SECONDS",
    "STOP_OVERRUN_SECONDS",
    "check_jitter",
    "check_lease",
    "check_period",
    "check_shutdown_grace",
    "default_renew_interval",
    "load_timezone",
]

#: The shortest period; faster work belongs in a loop inside ``do_work``.
MIN_PERIOD_SECONDS = 0.1
#: A lease shorter than this cannot be renewed reliably over a network.
MIN_LEASE_TTL_SECONDS = 0.5
#: A killed holder's worker waits up to one TTL for a takeover: more than an hour is a mistake.
MAX_LEASE_TTL_SECONDS = 3600.0
DEFAULT_LEASE_TTL_SECONDS = 15.0
#: Renewing more often than this only loads Redis (ten renewals a second per worker).
MIN_RENEW_INTERVAL_SECONDS = 0.1
#: The renew interval is at most this fraction of the TTL, so one failed renewal can be
#: retried before the lease runs out.
MAX_RENEW_FRACTION = 0.5
DEFAULT_RENEW_FRACTION = 1 / 3
#: After the shutdown grace (or a second signal), how long ``tickwork run`` may still take to
#: cancel its ticks and release its leases. Past it (a do_work that keeps catching its
#: cancellation, or blocks the event loop) the process exits 1 at once, its leases left to
#: expire after their TTL. Below the pod's termination margin, so the kubelet never has to
#: kill it.
STOP_OVERRUN_SECONDS = 5.0
#: The longest shutdown grace (``--shutdown-grace``, ``spec.shutdownGrace``).
MAX_SHUTDOWN_GRACE_SECONDS = 3600.0


def _shown(seconds: float, text: str | None) -> str:
    return text if text is not None else format_duration(seconds)


def check_period(seconds: float, *, what: str = "period", text: str | None = None) -> None:
    """A period is at least ``MIN_PERIOD_SECONDS``."""
    if not math.isfinite(seconds) or seconds < MIN_PERIOD_SECONDS:
        raise ValueError(
            f"{what} {_shown(seconds, text)} is shorter than the minimum "
            f"{format_duration(MIN_PERIOD_SECONDS)}"
        )


def default_renew_interval(ttl_seconds: float) -> float:
    return ttl_seconds * DEFAULT_RENEW_FRACTION


def check_lease(
    ttl_seconds: float,
    renew_seconds: float | None,
    *,
    ttl_what: str = "lease TTL",
    renew_what: str = "lease renew interval",
    ttl_text: str | None = None,
    renew_text: str | None = None,
) -> None:
    """TTL within bounds; the renew interval (default TTL/3) at least 100ms and at most TTL/2."""
    ttl = _shown(ttl_seconds, ttl_text)
    if not math.isfinite(ttl_seconds) or ttl_seconds < MIN_LEASE_TTL_SECONDS:
        raise ValueError(
            f"{ttl_what} {ttl} is shorter than the minimum {format_duration(MIN_LEASE_TTL_SECONDS)}"
        )
    if ttl_seconds > MAX_LEASE_TTL_SECONDS:
        raise ValueError(
            f"{ttl_what} {ttl} is longer than the maximum {format_duration(MAX_LEASE_TTL_SECONDS)}"
        )
    if renew_seconds is None:
        return
    renew = _shown(renew_seconds, renew_text)
    if not math.isfinite(renew_seconds) or renew_seconds < MIN_RENEW_INTERVAL_SECONDS:
        raise ValueError(
            f"{renew_what} {renew} is shorter than the minimum "
            f"{format_duration(MIN_RENEW_INTERVAL_SECONDS)}"
        )
    if renew_seconds > ttl_seconds * MAX_RENEW_FRACTION:
        raise ValueError(
            f"{renew_what} {renew} must be at most half of {ttl_what} {ttl}, "
            "so one failed renewal can be retried in time"
        )


def check_jitter(
    jitter_seconds: float,
    period_seconds: float,
    *,
    rate_mode: bool,
    what: str = "jitter",
) -> None:
    """In rate mode the jitter is shorter than the period (starts stay on their grid)."""
    if jitter_seconds < 0:
        raise ValueError(f"{what} {format_duration(jitter_seconds)} must not be negative")
    if rate_mode and jitter_seconds >= period_seconds:
        raise ValueError(
            f"{what} {format_duration(jitter_seconds)} must be shorter than the period "
            f"{format_duration(period_seconds)} in rate mode"
        )


def load_timezone(name: str, *, what: str = "time zone") -> ZoneInfo:
    """An IANA zone, or ``ValueError`` naming the bad value."""
    try:
        if not name.isascii() or not name.isprintable():
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"{what} {name!r} is not an IANA time zone name (e.g. UTC, Europe/Berlin)"
        ) from None


def check_shutdown_grace(seconds: float, *, text: str, what: str = "shutdown grace") -> None:
    """At most ``MAX_SHUTDOWN_GRACE_SECONDS``: longer is a mistake, and the pod's
    termination grace (this plus a margin) would keep a node drain waiting that long."""
    if seconds > MAX_SHUTDOWN_GRACE_SECONDS:
        most = format_duration(MAX_SHUTDOWN_GRACE_SECONDS)
        raise ValueError(f"{what} {text} is longer than the maximum {most}")
