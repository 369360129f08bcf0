"""Cron evaluation, including DST changes in two time zones.

Differences are taken between timestamps: Python subtracts aware datetimes that share a
tzinfo by wall time, which is exactly what DST makes wrong.
"""

import itertools
from datetime import UTC, datetime, timedelta, timezone, tzinfo
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


@pytest.mark.parametrize("expr", ["*/ * * * *", "2/ * * * *", "0-10/ * * * *", "* */ * * *"])
def test_an_empty_step_is_refused_as_debian_cron_refuses_it(expr: str) -> None:
    with pytest.raises(ValueError, match="step '' must be a positive number") as info:
        CronExpression.parse(expr)
    assert repr(expr) in str(info.value)


@pytest.mark.parametrize(
    "expr",
    [
        "\u0663 * * * *",  # ARABIC-INDIC DIGIT THREE
        "*/\uff15 * * * *",  # FULLWIDTH DIGIT FIVE
        "0\u00a00 * * *",  # NO-BREAK SPACE between fields
        "0 0 * * *\u2003",
        "0\n0 * * *",
    ],
)
def test_non_ascii_digits_spaces_and_control_characters_are_refused(expr: str) -> None:
    with pytest.raises(ValueError, match="cron") as info:
        CronExpression.parse(expr)
    assert "\n" not in str(info.value)


def test_an_unknown_macro_is_refused_and_every_known_macro_parses() -> None:
    with pytest.raises(ValueError, match="'@reboot' is not a known macro"):
        CronExpression.parse("@reboot")
    hourly = CronExpression.parse("@HOURLY")
    assert (hourly.minutes, len(hourly.hours)) == (frozenset({0}), 24)
    for macro in ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight"):
        cron = CronExpression.parse(macro)
        assert (cron.minutes, cron.hours) == (frozenset({0}), frozenset({0}))


def test_the_first_of_november_on_a_sunday_is_found_years_ahead() -> None:
    # ``*/7`` starts with ``*``: cron's AND rule, so only a 1 November that is a Sunday.
    slot = CronExpression.parse("0 0 1 11 */7").next_after(_utc(2026, 1, 1), UTC)
    assert slot is not None
    assert (slot.year, slot.month, slot.day, slot.strftime("%a")) == (2026, 11, 1, "Sun")
    after = CronExpression.parse("0 0 1 11 */7").next_after(slot, UTC)
    assert after is not None and (after.year, after.strftime("%a")) == (2037, "Sun")


def test_the_29th_of_february_on_a_sunday_is_found_decades_ahead() -> None:
    cron = CronExpression.parse("0 0 29 2 */7")
    slot = cron.next_after(_utc(2021, 1, 1), UTC)
    assert slot is not None and slot.date().isoformat() == "2032-02-29"
    later = cron.next_after(slot, UTC)
    assert later is not None and later.date().isoformat() == "2060-02-29"


def test_an_april_tuesday_on_a_seventh_day_in_berlin_never_runs_out_of_slots() -> None:
    cron = CronExpression.parse("* * */7 Apr 2")
    moment = datetime(1988, 3, 27, tzinfo=BERLIN)
    for _ in range(5):
        nxt = cron.next_after(moment, BERLIN)
        assert nxt is not None and nxt > moment
        local = nxt.astimezone(BERLIN)
        assert (local.month, local.day % 7, local.strftime("%a")) == (4, 1, "Tue")
        moment = nxt.replace(hour=23, minute=59)  # on to the next matching day
    assert moment.year >= 1994


@pytest.mark.parametrize(
    "tz",
    [
        timezone(timedelta(hours=5, minutes=30)),
        timezone(timedelta(hours=-3)),
        UTC,
    ],
)
def test_a_fixed_offset_timezone_is_evaluated_in_that_offset(tz: timezone) -> None:
    slot = CronExpression.parse("0 9 * * *").next_after(_utc(2026, 6, 1), tz)
    assert slot is not None and slot.utcoffset() == tz.utcoffset(None)
    assert slot.timestamp() == datetime(2026, 6, 1, 9, 0, tzinfo=tz).timestamp()


class _BerlinLookalike(tzinfo):
    """A tzinfo that is not a ZoneInfo (as pytz and dateutil zones are not)."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=1)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return "CET"


def test_a_tzinfo_that_is_not_a_zoneinfo_is_refused_instead_of_read_as_utc() -> None:
    with pytest.raises(TypeError, match=r"needs a zoneinfo\.ZoneInfo or a datetime\.timezone"):
        CronExpression.parse("0 9 * * *").next_after(_utc(2026, 6, 1), _BerlinLookalike())


def test_a_bad_value_never_surfaces_as_a_bare_assertion() -> None:
    # Build-time checks that used to be ``assert`` statements.
    for expr in ("0 0 29 2 */7", "0 0 1 11 */7", "* * */7 Apr 2"):
        assert CronExpression.parse(expr).next_after(_utc(2026, 1, 1), BERLIN) is not None


@pytest.mark.parametrize("expr", ["30 2 * * *", "0 2 * * *", "*/10 * * * *", "15,45 1-3 * * *"])
@pytest.mark.parametrize(
    ("start", "end"),
    [
        (_utc(2026, 3, 27, 12), _utc(2026, 3, 30, 12)),  # Berlin: 02:00 -> 03:00
        (_utc(2026, 10, 24, 12), _utc(2026, 10, 27, 12)),  # Berlin: 03:00 -> 02:00
        (_utc(2026, 3, 29, 0, 15), _utc(2026, 3, 29, 1, 45)),  # inside the changing night
        (_utc(2026, 10, 25, 0, 20), _utc(2026, 10, 25, 1, 10)),  # first pass to second pass
        (_utc(2026, 10, 25, 0, 5), _utc(2026, 10, 25, 0, 55)),  # within the first pass
    ],
)
def test_counting_slots_day_by_day_matches_walking_them_across_dst(
    expr: str, start: datetime, end: datetime
) -> None:
    cron = CronExpression.parse(expr)
    walked = 0
    moment = start
    while (nxt := cron.next_after(moment, BERLIN)) is not None and nxt < end:
        walked += 1
        moment = nxt
    assert cron.count_between(start.timestamp(), end.timestamp(), BERLIN) == walked
