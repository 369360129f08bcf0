"""Five-field cron expressions evaluated in an IANA time zone, correct across DST changes.

Pure functions, no I/O. Semantics (Debian cron's, which most operators expect):

* The expression matches local wall-clock minutes.
* A *fixed-time* expression (neither the minute nor the hour field starts with ``*``, e.g.
  ``30 2 * * *``) runs once per matching wall-clock time: a time skipped by a spring-forward
  gap runs at the first valid minute after the gap; a time repeated by a fall-back overlap runs
  only at its first occurrence.
* Any other expression (``*/10 * * * *``, ``0 * * * *``) follows real time: minutes inside a
  gap do not exist, and minutes repeated by an overlap run at both occurrences.
* When both day-of-month and day-of-week are restricted (neither starts with ``*``), either
  may match (cron's OR rule); otherwise both must.
* Syntax is Debian cron's: ASCII digits and names, ``*``, ranges, lists and steps; an empty
  step (``*/``, ``0-10/``) is refused. The macros ``@yearly``, ``@annually``, ``@monthly``,
  ``@weekly``, ``@daily``, ``@midnight`` and ``@hourly`` are accepted.

There is no search horizon: the Gregorian calendar repeats every 400 years and every valid
month/day falls on every weekday within that cycle, so an expression either matches some day
(and ``parse`` accepts it) or matches none (and ``parse`` refuses it). ``next_after`` jumps
field by field (month, day, hour, minute) instead of walking time, so its cost does not grow
with the distance to the next slot or the time of day.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from calendar import monthrange
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from worker_runtime.rules import load_timezone

__all__ = ["MACROS", "CronExpression", "check_zone", "load_timezone"]

#: The ``@`` macros and the five fields each stands for.
MACROS = {
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
# The longest each month can be (February in a leap year).
_MAX_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# Only spaces and tabs separate fields, as in a crontab; anything else is not ASCII cron.
_SEPARATORS = re.compile(r"[ \t]+")
_NUMBER = re.compile(r"[0-9]+")
_MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)
# Walls inside a daylight-saving gap are skipped one by one. A zone whose gaps swallow every
# match of an expression for a whole 400-year calendar cycle never runs it.
_GAP_SEARCH_YEARS = 400


def check_zone(tz: tzinfo) -> tzinfo:
    """The zones cron can evaluate correctly: ``ZoneInfo`` or a fixed ``datetime.timezone``.

    Other ``tzinfo`` implementations (pytz, dateutil) do not all follow PEP 495's ``fold``,
    which the DST rules above depend on, so they are refused instead of guessed at.
    """
    if isinstance(tz, ZoneInfo | timezone):
        return tz
    raise TypeError(
        f"cron needs a zoneinfo.ZoneInfo or a datetime.timezone, not {type(tz).__name__} "
        f"({tz!r}); use worker_runtime.rules.load_timezone(name)"
    )


@lru_cache(maxsize=1024)
def _month(year: int, month: int) -> tuple[int, int]:
    """(weekday of the 1st with Sunday = 0, number of days)."""
    first, days = monthrange(year, month)
    return (first + 1) % 7, days


def _parse_value(token: str, names: dict[str, int], field: str, expr: str) -> int:
    upper = token.upper()
    if upper in names:
        return names[upper]
    if not _NUMBER.fullmatch(token):
        raise ValueError(f"cron {expr!r}: {field} value {token!r} is not a number")
    return int(token)


def _parse_field(
    text: str, field: str, low: int, high: int, names: dict[str, int], expr: str
) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ValueError(f"cron {expr!r}: empty item in the {field} field")
        rng, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _NUMBER.fullmatch(step_text) or int(step_text) == 0:
                raise ValueError(
                    f"cron {expr!r}: {field} step {step_text!r} must be a positive number "
                    f"(in {item!r})"
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
            end = high if slash else start
        if not (low <= start <= high and low <= end <= high):
            raise ValueError(f"cron {expr!r}: {field} {item!r} is outside {low}-{high}")
        if start > end:
            raise ValueError(f"cron {expr!r}: {field} range {item!r} runs backwards")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _fields(text: str) -> list[str]:
    stripped = text.strip(" \t\r\n")
    expr = MACROS.get(stripped.lower(), stripped)
    if not expr.isascii() or not all(ch.isprintable() or ch == "\t" for ch in expr):
        raise ValueError(
            f"cron {text!r} may contain only ASCII digits, names, '*', ',', '-', '/' and spaces"
        )
    if expr.startswith("@"):
        raise ValueError(f"cron {text!r} is not a known macro; expected one of {', '.join(MACROS)}")
    parts = _SEPARATORS.split(expr) if expr else []
    if len(parts) != 5:
        raise ValueError(
            f"cron {text!r} has {len(parts)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week)"
        )
    return parts


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
    # Sorted copies for bisecting, worked out once in parse().
    _minutes: tuple[int, ...] = field(default=(), repr=False, compare=False)
    _hours: tuple[int, ...] = field(default=(), repr=False, compare=False)
    _days: tuple[int, ...] = field(default=(), repr=False, compare=False)
    _months: tuple[int, ...] = field(default=(), repr=False, compare=False)
    # For each weekday (Sunday = 0): how many days until the next matching weekday.
    _to_weekday: tuple[int, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        """Parse ``text`` or raise ``ValueError`` with one line naming it."""
        if not isinstance(text, str):
            raise TypeError(f"cron {text!r} must be a string")
        parts = _fields(text)
        parsed = [
            _parse_field(part, name, low, high, names, text)
            for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True)
        ]
        weekdays = frozenset(d % 7 for d in parsed[4])
        to_weekday = tuple(
            min((w - day) % 7 for w in weekdays) for day in range(7)
        )  # weekdays is never empty
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
            _minutes=tuple(sorted(parsed[0])),
            _hours=tuple(sorted(parsed[1])),
            _days=tuple(sorted(parsed[2])),
            _months=tuple(sorted(parsed[3])),
            _to_weekday=to_weekday,
        )
        if not cron._matches_some_day():
            raise ValueError(f"cron {text!r} never matches a date")
        return cron

    @property
    def _or_rule(self) -> bool:
        return self.days_restricted and self.weekdays_restricted

    def _matches_some_day(self) -> bool:
        """Exact: every valid month/day (29 February too) falls on every weekday within the
        400-year Gregorian cycle, so only an impossible day-of-month can make it never match."""
        if self._or_rule:
            return True  # every month holds every weekday
        return any(day <= _MAX_MONTH_DAYS[month - 1] for month in self.months for day in self.days)

    # ------------------------------------------------------------------ wall-clock search

    def _first_day(self, year: int, month: int, day: int) -> int:
        """The first matching day of ``year-month`` at or after ``day``; 0 when none."""
        first_weekday, last = _month(year, month)
        if day > last:
            return 0
        days = self._days
        weekday = (first_weekday + day - 1) % 7
        if self._or_rule:
            by_weekday = day + self._to_weekday[weekday]
            i = bisect_left(days, day)
            by_day = days[i] if i < len(days) else 99
            best = min(by_weekday, by_day)
            return best if best <= last else 0
        if len(days) == 31:  # only the weekdays restrict
            candidate = day + self._to_weekday[weekday]
            return candidate if candidate <= last else 0
        weekdays = self.weekdays
        for candidate in days[bisect_left(days, day) :]:
            if candidate > last:
                return 0
            if (first_weekday + candidate - 1) % 7 in weekdays:
                return candidate
        return 0

    def _next_wall(self, year: int, month: int, day: int, hour: int, minute: int) -> _Wall:
        """The first matching wall-clock minute at or after the given one (``minute`` may be
        60). Terminates for every expression ``parse`` accepts (see the module docstring)."""
        months, hours, minutes = self._months, self._hours, self._minutes
        while True:
            if month not in self.months:
                i = bisect_left(months, month)
                if i == len(months):
                    year, month = year + 1, months[0]
                else:
                    month = months[i]
                day, hour, minute = 1, 0, 0
            found = self._first_day(year, month, day)
            if found == 0:
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                day, hour, minute = 1, 0, 0
                continue
            if found != day:
                day, hour, minute = found, 0, 0
            if minute > 59:
                hour, minute = hour + 1, 0
            i = bisect_left(hours, hour)
            if i == len(hours):
                day, hour, minute = day + 1, 0, 0
                continue
            if hours[i] != hour:
                hour, minute = hours[i], 0
            j = bisect_left(minutes, minute)
            if j == len(minutes):
                hour, minute = hour + 1, 0
                if hour > 23:
                    day, hour = day + 1, 0
                continue
            return year, month, day, hour, minutes[j]

    def next_wall(self, wall: datetime) -> datetime:
        """The first matching naive wall-clock minute at or after ``wall`` (no time zone)."""
        carry = 1 if wall.second or wall.microsecond else 0
        return datetime(
            *self._next_wall(wall.year, wall.month, wall.day, wall.hour, wall.minute + carry)
        )

    def _count_walls(self, year: int, month: int, day: int, low: int, high: int) -> int:
        """How many matching wall minutes of one day have a minute-of-day in [low, high]."""
        if low > high or self._first_day(year, month, day) != day:
            return 0
        minutes = self._minutes
        count = 0
        for hour in self._hours:
            base = hour * 60
            if base + 59 < low:
                continue
            if base > high:
                break
            count += bisect_right(minutes, min(high - base, 59)) - bisect_left(
                minutes, max(low - base, 0)
            )
        return count

    def count_between(self, start: float, end: float, tz: tzinfo) -> int:
        """How many slots lie strictly after ``start`` and strictly before ``end`` (POSIX
        timestamps) in ``tz``.

        Each day is counted by arithmetic on its hours and minutes; only a day with a
        daylight-saving change is walked slot by slot. The cost grows with the number of days
        between the two instants, not with the number of slots.
        """
        zone = check_zone(tz)
        if end <= start:
            return 0
        first = datetime.fromtimestamp(start, zone)
        last = datetime.fromtimestamp(end, zone)
        first_day, last_day = first.date(), last.date()
        total = 0
        day = first_day
        while day <= last_day:
            low, high = 0, 1439
            if day == first_day:
                low = first.hour * 60 + first.minute + 1
            if day == last_day:
                high = last.hour * 60 + last.minute
                if not (last.second or last.microsecond):
                    high -= 1
            if _steady(day, zone):
                total += self._count_walls(day.year, day.month, day.day, low, high)
            else:
                # Wall bounds may even cross here (a repeated hour): count by instants.
                total += self._count_changing_day(day, zone, start, end, low, high)
            day += _DAY
        return total

    def _count_changing_day(
        self, day: date, zone: tzinfo, start: float, end: float, low: int, high: int
    ) -> int:
        """Slots strictly inside (start, end) on a day whose UTC offset changes.

        The hours before and after the change are counted by arithmetic; only the hours
        around it (a gap or a repeated hour) are walked slot by slot.
        """
        changing = [h for h in range(24) if not _steady_span(day, zone, time(h, 0), time(h, 59))]
        first, last = changing[0], changing[-1] + 1  # never empty: the day is not steady
        if self.fixed_time:
            # A fixed time inside a gap fires at the first minute after it: walk that hour too.
            last = min(24, last + 1)
        y, m, d = day.year, day.month, day.day
        total = self._count_walls(y, m, d, low, min(high, first * 60 - 1))
        total += self._count_walls(y, m, d, max(low, last * 60), high)
        # The walked span, in real time: from one minute after the last wall before the
        # change to the first wall after it (both happen exactly once).
        if first == 0:
            begin = datetime.combine(day, time(), tzinfo=zone).timestamp()
        else:
            begin = datetime.combine(day, time(first - 1, 59), tzinfo=zone).timestamp() + 60
        if last == 24:
            stop = datetime.combine(day + _DAY, time(), tzinfo=zone).timestamp()
        else:
            stop = datetime.combine(day, time(last, 0), tzinfo=zone).timestamp()
        stop = min(stop, end)
        moment = datetime.fromtimestamp(max(start, begin - 1e-6), zone)
        while True:
            nxt = self.next_after(moment, zone)
            if nxt is None or nxt.timestamp() >= stop:
                return total
            total += 1
            moment = nxt

    # ------------------------------------------------------------------ real instants

    def next_after(self, instant: datetime, tz: tzinfo) -> datetime | None:
        """The first instant strictly after ``instant`` that the expression matches in ``tz``.

        ``instant`` must be timezone-aware; ``tz`` a ``ZoneInfo`` or a fixed
        ``datetime.timezone`` (anything else raises ``TypeError``). The result is in ``tz``.
        ``None`` only when daylight-saving gaps in ``tz`` swallow every match for 400 years
        (``Schedule.build`` refuses such a schedule), or past the year 9999.
        """
        if instant.tzinfo is None:
            raise ValueError("next_after() needs a timezone-aware datetime")
        zone = check_zone(tz)
        local = instant.astimezone(zone)
        # Walls are whole minutes: the first candidate is the next whole minute.
        wall = (local.year, local.month, local.day, local.hour, local.minute + 1)
        try:
            if not isinstance(zone, ZoneInfo):
                return datetime(*self._next_wall(*wall), tzinfo=zone)
            best = self._next_zoned(wall, zone, instant)
            if not self.fixed_time and local.fold == 0:
                other = zone.utcoffset(_other_fold(local))
                offset = local.utcoffset()
                if other is not None and offset is not None and other < offset:
                    # ``instant`` is in the first pass of a repeated hour: walls up to
                    # ``local`` come round again in the second pass, before anything later.
                    return self._second_pass(local, offset - other, zone, best)
            return best
        except (OverflowError, ValueError):
            return None  # beyond datetime's year 9999

    # A wall that happens once and comes after ``instant``'s wall also comes after it in
    # real time (only a repeated wall can have happened before a smaller one). So only
    # repeated and skipped walls need their instants compared.

    def _next_zoned(self, wall: _Wall, zone: ZoneInfo, instant: datetime) -> datetime | None:
        """The first matching wall at or after ``wall`` that fires after ``instant``."""
        limit = wall[0] + _GAP_SEARCH_YEARS
        while wall[0] <= limit:
            wall = self._next_wall(*wall)
            naive = datetime(*wall)
            times = _happens(zone, naive)
            if times == 1:
                return datetime(*wall, tzinfo=zone)
            candidates: list[datetime] = []
            if times == 2:
                # A repeated wall: a fixed time runs at its first pass only, others at both.
                folds = (0,) if self.fixed_time else (0, 1)
                candidates = [datetime(*wall, tzinfo=zone, fold=fold) for fold in folds]
            elif self.fixed_time:
                # Inside a gap. Debian cron: a fixed-time job runs at the first minute after;
                # other minutes inside a gap do not exist.
                moved = naive + _MINUTE
                while _happens(zone, moved) == 0:
                    moved += _MINUTE
                candidates = [moved.replace(tzinfo=zone)]
            for result in candidates:
                if result.timestamp() > instant.timestamp():
                    return result
            wall = (*wall[:4], wall[4] + 1)
        return None

    def _second_pass(
        self, local: datetime, repeated: timedelta, zone: ZoneInfo, best: datetime | None
    ) -> datetime | None:
        """The earliest wall at or before ``local`` that repeats after it, if before ``best``."""
        # A wall W repeats after ``local`` when W > local - repeated (in wall time).
        start = local.replace(tzinfo=None) - repeated
        wall = (start.year, start.month, start.day, start.hour, start.minute + 1)
        naive = (local.year, local.month, local.day, local.hour, local.minute)
        while True:
            wall = self._next_wall(*wall)
            if wall > naive:
                return best
            if _happens(zone, datetime(*wall)) == 2:
                repeat = datetime(*wall, tzinfo=zone, fold=1)
                if best is None or repeat.timestamp() < best.timestamp():
                    return repeat
                return best
            wall = (*wall[:4], wall[4] + 1)


_Wall = tuple[int, int, int, int, int]


def _steady(day: date, zone: tzinfo) -> bool:
    """True when ``day`` has one UTC offset from 00:00 to 23:59 (no daylight-saving change)."""
    return _steady_span(day, zone, time(0, 0), time(23, 59), time(12, 0))


def _steady_span(day: date, zone: tzinfo, *moments: time) -> bool:
    """True when every wall time of ``moments`` on ``day`` happens once, at one UTC offset."""
    if not isinstance(zone, ZoneInfo):
        return True
    offsets = set()
    for moment in moments:
        wall = datetime.combine(day, moment)
        offsets.add(zone.utcoffset(wall))
        offsets.add(zone.utcoffset(_other_fold(wall)))
    return len(offsets) == 1


def _happens(zone: ZoneInfo, wall: datetime) -> int:
    """How often a naive wall time happens in ``zone``: 1, 2 (an overlap) or 0 (a gap)."""
    first = zone.utcoffset(wall)
    second = zone.utcoffset(_other_fold(wall))
    if first == second:
        return 1
    return 2 if first is not None and second is not None and first > second else 0


def _other_fold(moment: datetime) -> datetime:
    """The same naive wall time with the other ``fold``."""
    return datetime(
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond,
        fold=1 - moment.fold,
    )
