"""When does a worker run next?  Pure scheduling maths, no I/O and no clock reads.

Times are POSIX timestamps (float seconds): slots are shared by replicas on different hosts,
so they are wall-clock instants; the run loop converts them to monotonic sleeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TypeVar
from zoneinfo import ZoneInfo

from worker_runtime.cron import CronExpression
from worker_runtime.durations import format_duration, to_seconds
from worker_runtime.rules import MIN_PERIOD_SECONDS, check_jitter, check_period, load_timezone

__all__ = [
    "MIN_PERIOD_SECONDS",
    "SCHEDULE_OPTIONS",
    "Misfire",
    "Mode",
    "Plan",
    "Schedule",
    "ScheduleState",
    "SkipReason",
    "plan_next",
]

#: The schedule options, as worker class attributes, ``Schedule.build`` keywords and (with
#: dashes) ``tickwork run`` flags.
SCHEDULE_OPTIONS = (
    "period",
    "mode",
    "cron",
    "timezone",
    "run_on_start",
    "timeout",
    "jitter",
    "misfire",
    "misfire_grace",
)


class Mode(StrEnum):
    DELAY = "delay"  # ABP: the next run starts one period after the previous run ended
    RATE = "rate"  # runs at anchor + k * period, without drift


class Misfire(StrEnum):
    SKIP = "skip"  # slots missed while nothing could run are dropped
    CATCH_UP = "catch_up"  # the latest missed slot runs once, if within the grace window


class SkipReason(StrEnum):
    OVERLAP = "overlap"
    MISFIRE = "misfire"
    NOT_LEADER = "not_leader"


_E = TypeVar("_E", bound=StrEnum)


def _choice(enum: type[_E], value: str | _E, what: str) -> _E:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise ValueError(f"{what} {value!r} is not one of: {allowed}") from None


@dataclass(frozen=True, slots=True)
class Schedule:
    """A validated schedule: either ``period`` (+ ``mode``) or ``cron`` (+ ``timezone``)."""

    period_seconds: float | None = None
    mode: Mode = Mode.DELAY
    cron: CronExpression | None = None
    timezone: str = "UTC"
    run_on_start: bool = False
    timeout_seconds: float | None = None
    jitter_seconds: float = 0.0
    misfire: Misfire = Misfire.SKIP
    misfire_grace_seconds: float | None = None
    _zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"), repr=False, compare=False)
    # Worked out once in build(): plan_next reads it for every slot.
    _interval: float = field(default=0.0, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        *,
        period: float | int | timedelta | str | None = None,
        mode: str | Mode = Mode.DELAY,
        cron: str | None = None,
        timezone: str | None = None,
        run_on_start: bool = False,
        timeout: float | int | timedelta | str | None = None,
        jitter: float | int | timedelta | str | None = None,
        misfire: str | Misfire = Misfire.SKIP,
        misfire_grace: float | int | timedelta | str | None = None,
    ) -> Schedule:
        """Validate everything and return a schedule, or raise ``ValueError`` naming the value."""
        if (period is None) == (cron is None):
            raise ValueError("a schedule needs exactly one of period and cron")
        mode_value = _choice(Mode, mode, "mode")
        misfire_value = _choice(Misfire, misfire, "misfire policy")
        period_seconds: float | None = None
        cron_expr: CronExpression | None = None
        if period is not None:
            period_seconds = to_seconds(period, what="period")
            check_period(period_seconds, text=repr(period))
            if timezone not in (None, "", "UTC"):
                raise ValueError(f"timezone {timezone!r} applies only to a cron schedule")
        elif cron is not None:
            cron_expr = CronExpression.parse(cron)
            if mode_value is Mode.RATE:
                raise ValueError(f"mode {mode!r} applies only to a period schedule")
        zone_name = timezone or "UTC"
        zone = load_timezone(zone_name)
        timeout_seconds = None
        if timeout is not None:
            timeout_seconds = to_seconds(timeout, what="timeout")
            if timeout_seconds <= 0:
                raise ValueError(f"timeout {timeout!r} must be greater than zero")
        jitter_seconds = 0.0 if jitter is None else to_seconds(jitter, what="jitter")
        check_jitter(
            jitter_seconds,
            period_seconds if period_seconds is not None else math.inf,
            rate_mode=mode_value is Mode.RATE,
        )
        grace = None
        if misfire_grace is not None:
            grace = to_seconds(misfire_grace, what="misfire grace")
            if grace <= 0:
                raise ValueError(f"misfire grace {misfire_grace!r} must be greater than zero")
            if misfire_value is not Misfire.CATCH_UP:
                # as spec.schedule.misfireGrace: with skip no missed slot runs, late or not
                raise ValueError(
                    f"misfire grace {misfire_grace!r} applies only with misfire catch_up"
                )
        if cron_expr is not None:
            interval = _typical_cron_interval(cron_expr, zone, timezone=zone_name)
        else:
            interval = period_seconds or MIN_PERIOD_SECONDS
        return cls(
            period_seconds=period_seconds,
            mode=mode_value,
            cron=cron_expr,
            timezone=zone_name,
            run_on_start=bool(run_on_start),
            timeout_seconds=timeout_seconds,
            jitter_seconds=jitter_seconds,
            misfire=misfire_value,
            misfire_grace_seconds=grace,
            _zone=zone,
            _interval=interval,
        )

    def with_overrides(self, **changes: object) -> Schedule:
        """A new validated schedule with some options replaced (used by CLI overrides)."""
        current: dict[str, object] = {
            "period": self.period_seconds,
            "mode": self.mode,
            "cron": self.cron.text if self.cron else None,
            "timezone": self.timezone,
            "run_on_start": self.run_on_start,
            "timeout": self.timeout_seconds,
            "jitter": self.jitter_seconds,
            "misfire": self.misfire,
            "misfire_grace": self.misfire_grace_seconds,
        }
        if changes.get("cron") is not None:
            current["period"] = None
            current["mode"] = Mode.DELAY
        if changes.get("period") is not None:
            current["cron"] = None
            current["timezone"] = None
        if changes.get("misfire") not in (None, Misfire.CATCH_UP, Misfire.CATCH_UP.value):
            current["misfire_grace"] = None  # the class's grace went with its catch_up
        current.update({k: v for k, v in changes.items() if v is not None})
        return Schedule.build(**current)  # type: ignore[arg-type]

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    @property
    def interval_seconds(self) -> float:
        """The period, or a cron schedule's typical gap between slots (for sizing timers)."""
        return self._interval

    @property
    def grace_seconds(self) -> float:
        """How late a missed slot may still run under the catch-up policy."""
        if self.misfire_grace_seconds is not None:
            return self.misfire_grace_seconds
        return self.interval_seconds

    @property
    def late_tolerance_seconds(self) -> float:
        """A slot this late or less is simply late, not missed."""
        return min(1.0, self.interval_seconds / 2)

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron.text!r} in {self.timezone}"
        assert self.period_seconds is not None
        return f"every {format_duration(self.period_seconds)} ({self.mode.value})"

    def slot_after(self, after: float, *, anchor: float) -> float:
        """The first slot strictly after ``after`` (rate and cron schedules)."""
        if self.cron is not None:
            moment = datetime.fromtimestamp(after, UTC)
            nxt = self.cron.next_after(moment, self._zone)
            if nxt is None:
                raise ValueError(f"cron {self.cron.text!r} has no further slot")
            return nxt.timestamp()
        assert self.period_seconds is not None
        k = math.floor((after - anchor) / self.period_seconds) + 1
        slot = anchor + k * self.period_seconds
        # Guard against float rounding placing the slot at or before ``after``.
        while slot <= after:
            k += 1
            slot = anchor + k * self.period_seconds
        return slot

    def count_slots(self, start: float, end: float, *, anchor: float) -> int:
        """How many slots lie strictly after ``start`` and strictly before ``end``."""
        if end <= start:
            return 0
        if self.period_seconds is not None:
            count = 0
            slot = self.slot_after(start, anchor=anchor)
            if slot >= end:
                return 0
            last_k = math.ceil((end - anchor) / self.period_seconds) - 1
            first_k = round((slot - anchor) / self.period_seconds)
            count = max(0, last_k - first_k + 1)
            return count
        assert self.cron is not None
        return self.cron.count_between(start, end, self._zone)


# Where build() starts looking for a cron schedule's first slots.
_CRON_REFERENCE = datetime(2024, 1, 1, tzinfo=UTC)


def _typical_cron_interval(cron: CronExpression, zone: ZoneInfo, *, timezone: str) -> float:
    """The gap between a cron schedule's first two slots of 2024 (a DST-free day in most zones).

    ``CronExpression.parse`` has already refused an expression that matches no date; this
    refuses one whose every matching minute falls in a daylight-saving gap of ``zone``.
    """
    first = cron.next_after(_CRON_REFERENCE, zone)
    second = cron.next_after(first, zone) if first is not None else None
    if first is None or second is None:
        raise ValueError(
            f"cron {cron.text!r} never runs in time zone {timezone}: every matching minute "
            "falls in a daylight-saving gap"
        )
    return second.timestamp() - first.timestamp()


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What a worker's schedule remembers across runs and across lease holders."""

    anchor: float | None = None  # rate mode's grid origin
    last_slot: float | None = None  # the last slot claimed for a run
    last_end: float | None = None  # when the last run ended


@dataclass(frozen=True, slots=True)
class Plan:
    """The next slot to run, and the slots passed over to get there."""

    slot: float
    anchor: float
    skipped: int = 0
    skip_reason: SkipReason | None = None


def plan_next(schedule: Schedule, state: ScheduleState, *, now: float, resumed: bool) -> Plan:
    """Choose the next slot.

    ``resumed`` is true when this process did not run the previous slot itself (it has just
    acquired the lease, or has just come back from an outage): slots that passed meanwhile are
    *misfires* and the misfire policy applies. Otherwise slots that passed while the previous
    run was still going are *overlaps* and are always skipped.
    """
    anchor = state.anchor if state.anchor is not None else now
    if schedule.cron is None and schedule.mode is Mode.DELAY:
        return _plan_delay(schedule, state, now=now, anchor=anchor)
    if state.last_slot is None:
        if schedule.run_on_start:
            return Plan(slot=now if schedule.cron is not None else anchor, anchor=anchor)
        return Plan(slot=schedule.slot_after(anchor, anchor=anchor), anchor=anchor)
    candidate = schedule.slot_after(state.last_slot, anchor=anchor)
    if not resumed:
        run_end = state.last_end if state.last_end is not None else now
        if candidate >= run_end:
            return Plan(slot=candidate, anchor=anchor)
        skipped = schedule.count_slots(state.last_slot, run_end, anchor=anchor)
        slot = schedule.slot_after(run_end - 1e-9, anchor=anchor)
        return Plan(slot=slot, anchor=anchor, skipped=skipped, skip_reason=SkipReason.OVERLAP)
    cutoff = now - schedule.late_tolerance_seconds
    if candidate > cutoff:
        return Plan(slot=candidate, anchor=anchor)
    # Every slot in (last_slot, cutoff] was missed while nothing ran it.
    missed = schedule.count_slots(state.last_slot, cutoff + 1e-9, anchor=anchor)
    latest_missed = _latest_slot_at_or_before(
        schedule, cutoff, anchor=anchor, floor=state.last_slot
    )
    if schedule.misfire is Misfire.CATCH_UP and now - latest_missed <= schedule.grace_seconds:
        return Plan(
            slot=latest_missed,
            anchor=anchor,
            skipped=missed - 1,
            skip_reason=SkipReason.MISFIRE if missed > 1 else None,
        )
    return Plan(
        slot=schedule.slot_after(cutoff, anchor=anchor),
        anchor=anchor,
        skipped=missed,
        skip_reason=SkipReason.MISFIRE,
    )


def _plan_delay(schedule: Schedule, state: ScheduleState, *, now: float, anchor: float) -> Plan:
    assert schedule.period_seconds is not None
    period = schedule.period_seconds
    if state.last_slot is None and state.last_end is None:
        return Plan(slot=now if schedule.run_on_start else now + period, anchor=anchor)
    # A run that never recorded its end (its holder died) counts from its start.
    previous = max(t for t in (state.last_slot, state.last_end) if t is not None)
    due = previous + period
    if due > now - schedule.late_tolerance_seconds:
        return Plan(slot=due, anchor=anchor)
    if schedule.misfire is Misfire.CATCH_UP and now - due <= schedule.grace_seconds:
        return Plan(slot=due, anchor=anchor)
    return Plan(slot=now + period, anchor=anchor, skipped=1, skip_reason=SkipReason.MISFIRE)


def _latest_slot_at_or_before(
    schedule: Schedule, moment: float, *, anchor: float, floor: float
) -> float:
    """The last slot at or before ``moment``; the first slot after ``floor`` is known to be."""
    if schedule.period_seconds is not None:
        k = math.floor((moment - anchor) / schedule.period_seconds)
        return anchor + k * schedule.period_seconds
    slot = schedule.slot_after(floor, anchor=anchor)
    # However long the outage, look back from ``moment`` in widening windows instead of
    # walking every missed slot: the walk below then covers at most about two windows.
    window = 2 * schedule.interval_seconds
    while moment - window > slot:
        jumped = schedule.slot_after(moment - window, anchor=anchor)
        if jumped <= moment:
            slot = jumped
            break
        window *= 2
    while True:
        nxt = schedule.slot_after(slot, anchor=anchor)
        if nxt > moment:
            return slot
        slot = nxt
