"""Cron's next fire time: ``CronExpression.next_after`` against cronsim, side by side.

Run: ``make bench`` (or ``.venv/bin/python bench/bench_cron.py``; ``--quick`` for a short
run). cronsim is a dev dependency only, installed for this comparison.

For each expression, time zone and start instant (midday, and one minute before midnight,
where walking the day from midnight used to cost the most) both libraries answer "the first
fire time strictly after this instant" in the same loop, alternating, so machine load hits
both alike:

* tickwork: ``cron.next_after(instant, zone)`` on an expression parsed once (what the
  scheduler does);
* cronsim: ``next(CronSim(expr, instant))``, cronsim's way to ask for the next fire time after
  an arbitrary instant.

A second table times successive fire times (tickwork: ``next_after`` of the previous result;
cronsim: ``next()`` on one iterator). Both answers are compared; any difference fails the run.
Printed: the median over all cases of each case's median time per call, the worst case
(the slowest case's median), and the ratio cronsim/tickwork (above 1: tickwork is faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from cronsim import CronSim

from worker_runtime.cron import CronExpression

EXPRESSIONS = (
    "* * * * *",
    "*/10 * * * *",
    "0 * * * *",
    "30 2 * * *",
    "15,45 9-17 * * MON-FRI",
    "0 0 1 * *",
    "0 12 13 * FRI",
    "0 0 29 2 *",
)
ZONES = ("UTC", "Europe/Berlin", "America/New_York")
STARTS = (
    (2026, 6, 10, 12, 0),
    (2026, 6, 10, 23, 59),
    (2026, 3, 28, 23, 59),
    (2026, 10, 31, 23, 59),
)


@dataclass(frozen=True)
class Row:
    case: str
    ours_us: float
    cronsim_us: float


def _timed(call: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1e6


Factory = Callable[[], Callable[[], object]]


def _median_pair(
    ours: Factory, theirs: Factory, *, calls: int, repeats: int
) -> tuple[float, float]:
    """Each repeat times a fresh call from each factory (successive runs restart)."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeats):  # alternate, so load spikes hit both
        a.append(_timed(ours(), calls))
        b.append(_timed(theirs(), calls))
    return statistics.median(a), statistics.median(b)


def next_fire_rows(*, calls: int, repeats: int) -> list[Row]:
    rows = []
    for expr in EXPRESSIONS:
        cron = CronExpression.parse(expr)
        for zone_name in ZONES:
            zone = ZoneInfo(zone_name)
            for start in STARTS:
                instant = datetime(*start, tzinfo=zone)
                ours = cron.next_after(instant, zone)
                theirs = next(CronSim(expr, instant))
                if ours is None or ours.timestamp() != theirs.timestamp():
                    raise SystemExit(f"{expr!r} {zone_name} {instant}: {ours} != {theirs}")
                a, b = _median_pair(
                    lambda c=cron, i=instant, z=zone: lambda: c.next_after(i, z),
                    lambda e=expr, i=instant: lambda: next(CronSim(e, i)),
                    calls=calls,
                    repeats=repeats,
                )
                rows.append(Row(f"{expr} | {zone_name} | {instant:%m-%d %H:%M}", a, b))
    return rows


def _successive(cron: CronExpression, zone: ZoneInfo, start: datetime) -> Callable[[], object]:
    moment = [start]

    def step() -> object:
        nxt = cron.next_after(moment[0], zone)
        assert nxt is not None
        moment[0] = nxt
        return nxt

    return step


def successive_rows(*, calls: int, repeats: int) -> list[Row]:
    rows = []
    for expr in EXPRESSIONS:
        cron = CronExpression.parse(expr)
        for zone_name in ZONES:
            zone = ZoneInfo(zone_name)
            start = datetime(*STARTS[0], tzinfo=zone)
            iterator = CronSim(expr, start)
            moment = start
            for _ in range(min(calls, 50)):  # the same sequence from both
                moment_next = cron.next_after(moment, zone)
                theirs = next(iterator)
                if moment_next is None or moment_next.timestamp() != theirs.timestamp():
                    raise SystemExit(f"{expr!r} {zone_name}: {moment_next} != {theirs}")
                moment = moment_next
            a, b = _median_pair(
                lambda c=cron, z=zone, s=start: _successive(c, z, s),
                lambda e=expr, s=start: CronSim(e, s).__next__,
                calls=calls,
                repeats=repeats,
            )
            rows.append(Row(f"{expr} | {zone_name}", a, b))
    return rows


def summary(rows: list[Row]) -> dict[str, float]:
    ours = [r.ours_us for r in rows]
    theirs = [r.cronsim_us for r in rows]
    return {
        "ours_median_us": statistics.median(ours),
        "cronsim_median_us": statistics.median(theirs),
        "ours_worst_us": max(ours),
        "cronsim_worst_us": max(theirs),
    }


def _print(title: str, rows: list[Row], *, verbose: bool) -> dict[str, float]:
    print(f"-- {title}")
    if verbose:
        for r in rows:
            print(f"  {r.case:48} tickwork {r.ours_us:8.2f} µs   cronsim {r.cronsim_us:8.2f} µs")
    s = summary(rows)
    print(
        f"  median: tickwork {s['ours_median_us']:.2f} µs,"
        f" cronsim {s['cronsim_median_us']:.2f} µs"
        f" ({s['cronsim_median_us'] / s['ours_median_us']:.2f}x)"
    )
    print(
        f"  worst case: tickwork {s['ours_worst_us']:.2f} µs,"
        f" cronsim {s['cronsim_worst_us']:.2f} µs"
        f" ({s['cronsim_worst_us'] / s['ours_worst_us']:.2f}x)"
    )
    return s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few calls (a smoke run)")
    parser.add_argument("--verbose", action="store_true", help="print every case")
    args = parser.parse_args(argv)
    # 29 February: 300 successive slots stay within datetime's year 9999.
    calls, repeats = (20, 3) if args.quick else (300, 7)
    print(f"cron next fire time, {calls} calls x {repeats} repeats per case, alternating")
    _print(
        "next fire time after an arbitrary instant",
        next_fire_rows(calls=calls, repeats=repeats),
        verbose=args.verbose,
    )
    _print(
        "successive fire times", successive_rows(calls=calls, repeats=repeats), verbose=args.verbose
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
