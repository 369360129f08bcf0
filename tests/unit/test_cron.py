"""Cron evaluation, including DST changes in two time zones.

Differences are taken between timestamps: Python subtracts aware datetimes that share a
tzinfo by wall time, which is exactly what DST makes wrong.
"""

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from worker_runtime.cron import CronExpression, load_timezone

BERLIN = ZoneInfo("Europe/Berlin")  # 2026: spring 03-29 02:00→03:00, fall 10-25 03:00→02:00
NEW_YORK = ZoneInfo("America/New_York")  # 2026: spring 03-08 02:00→03:00, fall 11-01 02:00→01:00


def _run(expr: str, start: datetime, zone: ZoneInfo, count: int) -> list[datetime]:
    cron = CronExpression.parse(expr)
    out = []
    moment = start
    for _ in range(count):
        nxt = cron.next_after(moment, zone)
        assert nxt is not None
        out.append(nxt)
        moment = nxt
    return out


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_every_ten_minutes_keeps_real_time_cadence_through_the_fall_back_hour_in_berlin() -> None:
    slots = _run("*/10 * * * *", _utc(2026, 10, 25, 0, 35), BERLIN, 14)
    gaps = {b.timestamp() - a.timestamp() for a, b in itertools.pairwise(slots)}
    assert gaps == {600.0}, "the repeated hour must run at both of its occurrences"
    walls = [s.strftime("%H:%M%z") for s in slots]
    assert "02:50+0200" in walls
    assert "02:00+0100" in walls


def test_every_ten_minutes_skips_the_minutes_that_do_not_exist_in_spring() -> None:
    slots = _run("*/10 * * * *", _utc(2026, 3, 29, 0, 45), BERLIN, 3)
    assert [s.astimezone(BERLIN).strftime("%H:%M%z") for s in slots] == [
        "01:50+0100",
        "03:00+0200",
        "03:10+0200",
    ]
    assert slots[1].timestamp() - slots[0].timestamp() == 600


def test_a_fixed_time_in_the_spring_gap_runs_once_right_after_the_gap_in_new_york() -> None:
    slots = _run("30 2 * * *", _utc(2026, 3, 7, 12), NEW_YORK, 3)
    local = [s.astimezone(NEW_YORK) for s in slots]
    assert [(d.day, d.strftime("%H:%M")) for d in local] == [
        (8, "03:00"),
        (9, "02:30"),
        (10, "02:30"),
    ]


def test_a_fixed_time_in_the_repeated_hour_runs_only_once_in_new_york() -> None:
    slots = _run("30 1 * * *", _utc(2026, 10, 31, 12), NEW_YORK, 2)
    first = slots[0].astimezone(NEW_YORK)
    assert (first.day, first.strftime("%H:%M%z")) == (1, "01:30-0400")
    assert slots[1].astimezone(NEW_YORK).day == 2


def test_an_hourly_job_runs_each_real_hour_across_the_fall_back_in_new_york() -> None:
    slots = _run("0 * * * *", _utc(2026, 11, 1, 4, 30), NEW_YORK, 3)
    stamps = [s.timestamp() for s in slots]
    assert [b - a for a, b in itertools.pairwise(stamps)] == [3600, 3600]


def test_day_of_month_and_day_of_week_follow_the_cron_or_rule() -> None:
    # The 13th or any Friday.
    slots = _run("0 12 13 * FRI", _utc(2026, 2, 1), ZoneInfo("UTC"), 4)
    assert [(s.day, s.strftime("%a")) for s in slots] == [
        (6, "Fri"),
        (13, "Fri"),
        (20, "Fri"),
        (27, "Fri"),
    ]
    slots = _run("0 12 13 * 1", _utc(2026, 4, 10), ZoneInfo("UTC"), 2)
    assert [s.day for s in slots] == [13, 20]


def test_names_ranges_steps_and_macros_parse() -> None:
    cron = CronExpression.parse("0-30/15 9-17 * JAN-MAR MON-FRI")
    assert cron.minutes == frozenset({0, 15, 30})
    assert cron.months == frozenset({1, 2, 3})
    assert cron.weekdays == frozenset({1, 2, 3, 4, 5})
    assert CronExpression.parse("@hourly").minutes == frozenset({0})
    assert CronExpression.parse("0 0 * * 7").weekdays == frozenset({0})


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * *", "has 3 fields; expected 5"),
        ("61 * * * *", "minute '61' is outside 0-59"),
        ("* 24 * * *", "hour '24' is outside 0-23"),
        ("*/0 * * * *", "step '0' must be a positive number"),
        ("5-1 * * * *", "runs backwards"),
        ("x * * * *", "minute value 'x' is not a number"),
        ("0 0 31 2 *", "never matches a date"),
        ("0 0 * * 8", "outside 0-7"),
    ],
)
def test_a_bad_cron_expression_gets_a_one_line_error_naming_it(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        CronExpression.parse(expr)
    assert repr(expr) in str(info.value)


def test_an_unknown_time_zone_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'Mars/Olympus'"):
        load_timezone("Mars/Olympus")
