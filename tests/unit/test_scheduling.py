"""Pure slot planning: delay, rate, cron, overlaps and misfires."""

from datetime import UTC, datetime, timedelta, tzinfo

import pytest

from worker_runtime.cron import CronExpression
from worker_runtime.scheduling import Schedule, ScheduleState, SkipReason, plan_next

T0 = 1_800_000_000.0


def test_rate_mode_starts_one_period_after_the_anchor_and_stays_on_the_grid() -> None:
    s = Schedule.build(period="10s", mode="rate")
    plan = plan_next(s, ScheduleState(), now=T0, resumed=True)
    assert (plan.slot, plan.anchor) == (T0 + 10, T0)
    # A run that ended 3 s into its slot does not shift the grid.
    state = ScheduleState(anchor=T0, last_slot=T0 + 10, last_end=T0 + 13)
    assert plan_next(s, state, now=T0 + 13, resumed=False).slot == T0 + 20


def test_run_on_start_makes_the_first_slot_immediate() -> None:
    assert (
        plan_next(
            Schedule.build(period=5, mode="rate", run_on_start=True),
            ScheduleState(),
            now=T0,
            resumed=True,
        ).slot
        == T0
    )
    assert (
        plan_next(
            Schedule.build(period=5, run_on_start=True), ScheduleState(), now=T0, resumed=True
        ).slot
        == T0
    )


def test_rate_mode_skips_slots_that_pass_while_the_previous_run_is_going_and_counts_them() -> None:
    s = Schedule.build(period=1, mode="rate")
    state = ScheduleState(anchor=T0, last_slot=T0 + 1, last_end=T0 + 4.5)
    plan = plan_next(s, state, now=T0 + 4.5, resumed=False)
    assert plan.slot == T0 + 5
    assert (plan.skipped, plan.skip_reason) == (3, SkipReason.OVERLAP)  # slots 2, 3 and 4


def test_delay_mode_waits_one_period_after_the_previous_run_ended() -> None:
    s = Schedule.build(period=timedelta(seconds=10))
    state = ScheduleState(anchor=T0, last_slot=T0 + 10, last_end=T0 + 17)
    assert plan_next(s, state, now=T0 + 17, resumed=False).slot == T0 + 27


def test_missed_rate_slots_are_skipped_by_default_after_a_takeover() -> None:
    s = Schedule.build(period=2, mode="rate")
    state = ScheduleState(anchor=T0, last_slot=T0 + 2, last_end=T0 + 2.1)
    plan = plan_next(s, state, now=T0 + 9.5, resumed=True)  # slots 4, 6, 8 were missed
    assert plan.slot == T0 + 10
    assert (plan.skipped, plan.skip_reason) == (3, SkipReason.MISFIRE)


def test_catch_up_runs_the_latest_missed_slot_once_within_the_grace_window() -> None:
    s = Schedule.build(period=2, mode="rate", misfire="catch_up", misfire_grace="5s")
    state = ScheduleState(anchor=T0, last_slot=T0 + 2, last_end=T0 + 2.1)
    plan = plan_next(s, state, now=T0 + 9.5, resumed=True)
    assert plan.slot == T0 + 8
    assert (plan.skipped, plan.skip_reason) == (2, SkipReason.MISFIRE)


def test_catch_up_outside_the_grace_window_skips_like_skip() -> None:
    s = Schedule.build(period=2, mode="rate", misfire="catch_up", misfire_grace="1s")
    state = ScheduleState(anchor=T0, last_slot=T0 + 2, last_end=T0 + 2.1)
    plan = plan_next(s, state, now=T0 + 9.5, resumed=True)
    assert plan.slot == T0 + 10 and plan.skipped == 3


def test_a_slightly_late_takeover_runs_the_due_slot_instead_of_calling_it_missed() -> None:
    s = Schedule.build(period=1, mode="rate")
    state = ScheduleState(anchor=T0, last_slot=T0 + 1, last_end=T0 + 1.01)
    plan = plan_next(s, state, now=T0 + 2.2, resumed=True)
    assert (plan.slot, plan.skipped) == (T0 + 2, 0)


def test_cron_slots_follow_the_expression_and_misfires_count_every_missed_minute() -> None:
    s = Schedule.build(cron="* * * * *")
    first = plan_next(s, ScheduleState(), now=T0 + 30, resumed=True)
    assert first.slot == T0 + 60
    state = ScheduleState(anchor=T0, last_slot=T0 + 60, last_end=T0 + 61)
    plan = plan_next(s, state, now=T0 + 60 * 5 + 10, resumed=True)
    assert plan.slot == T0 + 360
    assert (plan.skipped, plan.skip_reason) == (4, SkipReason.MISFIRE)


def test_a_delay_schedule_that_missed_its_run_during_a_takeover_is_skipped_once() -> None:
    s = Schedule.build(period=5)
    state = ScheduleState(anchor=T0, last_slot=T0, last_end=T0 + 1)
    plan = plan_next(s, state, now=T0 + 30, resumed=True)
    assert (plan.slot, plan.skipped, plan.skip_reason) == (T0 + 35, 1, SkipReason.MISFIRE)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of period and cron"),
        ({"period": 1, "cron": "* * * * *"}, "exactly one of period and cron"),
        ({"period": "50ms"}, "shorter than the minimum 100ms"),
        ({"period": "soon"}, "period 'soon' is not a duration"),
        ({"period": 1, "mode": "fast"}, "mode 'fast' is not one of: delay, rate"),
        ({"cron": "* * * * *", "mode": "rate"}, "mode 'rate' applies only to a period schedule"),
        ({"period": 1, "timezone": "Europe/Berlin"}, "applies only to a cron schedule"),
        ({"cron": "* * * * *", "timezone": "Nowhere/Land"}, "'Nowhere/Land' is not an IANA"),
        ({"period": 1, "timeout": 0}, "timeout 0 must be greater than zero"),
        ({"period": 1, "misfire": "later"}, "misfire policy 'later' is not one of"),
        (
            {"period": 1, "misfire_grace": "1s"},
            "misfire grace '1s' applies only with misfire catch_up",
        ),
        ({"period": 1, "mode": "rate", "jitter": "2s"}, "must be shorter than the period"),
        (
            {"cron": "* 2 25-31 3 */7", "timezone": "Europe/Berlin"},
            "never runs in time zone Europe/Berlin: every matching minute falls in a "
            "daylight-saving gap",
        ),
    ],
)
def test_an_invalid_schedule_is_refused_with_a_clear_message(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Schedule.build(**options)  # type: ignore[arg-type]


def test_overrides_replace_a_period_with_a_cron_and_revalidate() -> None:
    s = Schedule.build(period=10, mode="rate")
    c = s.with_overrides(cron="*/5 * * * *", timezone="Europe/Berlin")
    assert c.cron is not None and c.period_seconds is None and c.timezone == "Europe/Berlin"
    p = c.with_overrides(period="1m")
    assert p.period_seconds == 60 and p.cron is None
    with pytest.raises(ValueError, match="shorter than the minimum"):
        s.with_overrides(period="1ms")


def test_a_cron_schedule_that_matches_once_in_28_years_builds_without_an_assertion() -> None:
    s = Schedule.build(cron="0 0 29 2 */7")  # 29 February on a Sunday
    assert round(s.interval_seconds / 86400) == 28 * 365 + 7
    plan = plan_next(s, ScheduleState(), now=T0, resumed=True)  # T0 is 2027-01-15
    assert datetime.fromtimestamp(plan.slot, UTC).date().isoformat() == "2032-02-29"


def test_a_cron_schedule_in_berlin_keeps_planning_past_the_old_eight_year_horizon() -> None:
    s = Schedule.build(cron="* * */7 Apr 2", timezone="Europe/Berlin")
    after_1988 = datetime(1988, 3, 27, tzinfo=UTC).timestamp()
    plan = plan_next(s, ScheduleState(anchor=after_1988), now=after_1988, resumed=True)
    slot = datetime.fromtimestamp(plan.slot, s.zone)
    # The next April whose 1st, 8th, ... is a Tuesday is 1997: nine years later.
    assert (slot.year, slot.month, slot.day, slot.strftime("%a")) == (1997, 4, 1, "Tue")


def _count_cron_evaluations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = CronExpression.next_after

    def counting(self: CronExpression, instant: datetime, tz: tzinfo) -> datetime | None:
        calls[0] += 1
        return original(self, instant, tz)

    monkeypatch.setattr(CronExpression, "next_after", counting)
    return calls


@pytest.mark.parametrize("misfire", ["catch_up", "skip"])
def test_planning_after_a_24_hour_outage_costs_no_more_than_after_a_5_minute_one(
    misfire: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    grace = "1h" if misfire == "catch_up" else None
    s = Schedule.build(cron="* * * * *", misfire=misfire, misfire_grace=grace)
    calls = _count_cron_evaluations(monkeypatch)
    costs = {}
    for outage in (300, 86400, 30 * 86400):
        calls[0] = 0
        state = ScheduleState(anchor=T0, last_slot=T0, last_end=T0 + 1)
        plan = plan_next(s, state, now=T0 + outage + 10, resumed=True)
        costs[outage] = calls[0]
        missed = outage // 60
        if misfire == "catch_up":
            assert (plan.slot, plan.skipped) == (T0 + outage, missed - 1)
        else:
            assert (plan.slot, plan.skipped) == (T0 + outage + 60, missed)
    # A handful of cron evaluations, the same for a day as for a month (1,440 and 43,200
    # missed slots).
    assert costs[86400] == costs[30 * 86400] <= 10, costs


def test_an_outage_over_a_daylight_saving_change_counts_every_real_missed_minute() -> None:
    s = Schedule.build(cron="*/10 * * * *", timezone="Europe/Berlin")
    start = datetime(2026, 3, 28, 12, tzinfo=UTC).timestamp()  # the night 02:00 -> 03:00
    state = ScheduleState(anchor=start, last_slot=start, last_end=start)
    plan = plan_next(s, state, now=start + 86400 + 5, resumed=True)
    # 24 real hours hold 144 ten-minute slots whatever the wall clock does.
    assert (plan.skipped, plan.slot) == (144, start + 86400 + 600)


def test_overriding_catch_up_with_skip_drops_the_classs_misfire_grace() -> None:
    base = Schedule.build(period=60, misfire="catch_up", misfire_grace="5m")
    assert base.with_overrides(misfire="skip").misfire_grace_seconds is None
    assert base.with_overrides(misfire_grace="1m").misfire_grace_seconds == 60
    with pytest.raises(ValueError, match="applies only with misfire catch_up"):
        base.with_overrides(misfire="skip", misfire_grace="1m")
