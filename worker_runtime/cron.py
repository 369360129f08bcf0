"""Five-field cron expressions evaluated in an IANA time zone, correct across DST changes.

Pure functions, no I/O. Semantics (Debian cron's, which most operators expect):

* The expression matches local wall-clock minutes.
* A *fixed-time* expression (neither the minute nor the hour field starts with ``*``, e.g.
  ``30 2 * * *``) runs once per matching wall-clock time: a time skipped by a spring-forward
  gap runs at the first valid minute after the gap; a time repeated by a fall-back overlap runs
  only at its first occurrence.
* Any other expression (``*/10 * * * *``, ``0 * * * *``) follows real time: minutes inside a
  gap do not exist, and minutes repeated by an overlap run at both occurrences.
* When both day-of-month and day-of-week are restricted, either may match (cron's OR rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["CronExpression", "load_timezone"]

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)
# A schedule that matches nothing for this long is refused (e.g. ``0 0 31 2 *``).
_SEARCH_YEARS = 8


def load_timezone(name: str) -> ZoneInfo:
    """An IANA zone, or ``ValueError`` naming the bad value."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"time zone {name!r} is not an IANA time zone name (e.g. UTC, Europe/Berlin)"
        ) from None


def _parse_value(token: str, names: dict[str, int], field: str, expr: str) -> int:
    upper = token.upper()
    if upper in names:
        return names[upper]
    if not token.isdigit():
        raise ValueError(f"cron {expr!r}: {field} value {token!r} is not a number")
    return int(token)


def _parse_field(
    text: str, field: str, low: int, high: int, names: dict[str, int], expr: str
) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ValueError(f"cron {expr!r}: empty item in the {field} field")
        rng, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(
                    f"cron {expr!r}: {field} step {step_text!r} must be a positive number"
                )
            step = int(step_text)
        if rng == "*":
            start, end = low, high
        elif "-" in rng:
            a, _, b = rng.partition("-")
            start = _parse_value(a, names, field, expr)
            end = _parse_value(b, names, field, expr)
        else:
            start = _parse_value(rng, names, field, expr)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high):
            raise ValueError(f"cron {expr!r}: {field} {item!r} is outside {low}-{high}")
        if start > end:
            raise ValueError(f"cron {expr!r}: {field} range {item!r} runs backwards")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class CronExpression:
    """A parsed five-field cron expression (minute hour day-of-month month day-of-week)."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool
    fixed_time: bool

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        expr = _MACROS.get(text.strip().lower(), text.strip())
        parts = expr.split()
        if len(parts) != 5:
            raise ValueError(
                f"cron {text!r} has {len(parts)} fields; expected 5 "
                "(minute hour day-of-month month day-of-week)"
            )
        parsed = [
            _parse_field(part, name, low, high, names, text)
            for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True)
        ]
        weekdays = frozenset(d % 7 for d in parsed[4])
        cron = cls(
            text=text.strip(),
            minutes=parsed[0],
            hours=parsed[1],
            days=parsed[2],
            months=parsed[3],
            weekdays=weekdays,
            days_restricted=not parts[2].startswith("*"),
            weekdays_restricted=not parts[4].startswith("*"),
            fixed_time=not parts[0].startswith("*") and not parts[1].startswith("*"),
        )
        if cron.next_after(datetime(2000, 1, 1, tzinfo=UTC), UTC) is None:
            raise ValueError(f"cron {text!r} never matches a date")
        return cron

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def next_after(self, instant: datetime, tz: tzinfo) -> datetime | None:
        """The first instant strictly after ``instant`` that the expression matches in ``tz``.

        ``instant`` must be timezone-aware; the result is in ``tz``. ``None`` when nothing
        matches within the search horizon.
        """
        if instant.tzinfo is None:
            raise ValueError("next_after() needs a timezone-aware datetime")
        zone = tz if isinstance(tz, ZoneInfo) else UTC
        local = instant.astimezone(zone)
        after = instant.timestamp()
        day = local.date()
        last_day = day + timedelta(days=366 * _SEARCH_YEARS)
        hours = sorted(self.hours)
        minutes = sorted(self.minutes)
        while day <= last_day:
            if self._day_matches(day):
                best: datetime | None = None
                found_hour = -1
                for hour in hours:
                    # An overlap repeats at most a couple of wall hours, so once a match is
                    # found only the next two hours can still hold an earlier instant.
                    if best is not None and hour > found_hour + 2:
                        break
                    for minute in minutes:
                        for candidate in self._instants(day, hour, minute, zone):
                            # Compare as timestamps: aware datetimes sharing a tzinfo compare
                            # by wall time and would ignore ``fold``.
                            stamp = candidate.timestamp()
                            if stamp > after and (best is None or stamp < best.timestamp()):
                                if best is None:
                                    found_hour = hour
                                best = candidate
                if best is not None:
                    return best
            day += timedelta(days=1)
        return None

    def _instants(self, day: date, hour: int, minute: int, zone: object) -> list[datetime]:
        """The real instants at which wall time ``day hour:minute`` fires in ``zone``."""
        wall = datetime.combine(day, time(hour, minute))
        if zone is UTC:
            return [wall.replace(tzinfo=UTC)]
        assert isinstance(zone, ZoneInfo)
        first = wall.replace(tzinfo=zone, fold=0)
        second = wall.replace(tzinfo=zone, fold=1)
        if _is_imaginary(first):
            if not self.fixed_time:
                return []
            # Debian cron: a fixed-time job in a gap runs at the first minute after it.
            moved = wall
            while _is_imaginary(moved.replace(tzinfo=zone)):
                moved += timedelta(minutes=1)
            return [moved.replace(tzinfo=zone)]
        if first.utcoffset() != second.utcoffset() and not self.fixed_time:
            return [first, second]  # an ambiguous wall time happens twice in real time
        return [first]


def _is_imaginary(moment: datetime) -> bool:
    """True when a wall time does not exist in its zone (inside a spring-forward gap)."""
    round_trip = moment.astimezone(UTC).astimezone(moment.tzinfo)
    return round_trip.replace(tzinfo=None) != moment.replace(tzinfo=None)
