"""The chaos run's checker: pure functions over the execution log and the fault log."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Execution:
    slot: float
    replica: str
    token: int
    start: float
    end: float | None  # None: the replica died during the run


@dataclass(frozen=True)
class Fault:
    kind: str  # "kill", "term", "redis"
    at: float
    until: float  # when the fault was over (a Redis restart takes a moment)
    replica: str = ""


@dataclass
class Verdict:
    executions: int
    slots_expected: int
    missed: list[float] = field(default_factory=list)
    overlapped: list[float] = field(default_factory=list)
    unexplained_misses: list[float] = field(default_factory=list)
    overlaps: list[tuple[Execution, Execution]] = field(default_factory=list)
    duplicates: list[float] = field(default_factory=list)
    token_regressions: list[tuple[Execution, Execution]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.unexplained_misses or self.overlaps or self.duplicates or self.token_regressions
        )

    def summary(self) -> str:
        return (
            f"{self.executions} executions of {self.slots_expected} slots; "
            f"{len(self.missed)} missed ({len(self.overlapped)} while the previous run was still "
            f"going, {len(self.unexplained_misses)} outside failover windows), "
            f"{len(self.overlaps)} overlaps, {len(self.duplicates)} duplicate slots, "
            f"{len(self.token_regressions)} fencing-token regressions"
        )


def check(
    executions: list[Execution],
    faults: list[Fault],
    *,
    period: float,
    anchor: float,
    ttl: float,
    end_of_run: float,
    slack: float = 0.25,
    kill_times: dict[str, list[float]] | None = None,
) -> Verdict:
    """No overlap in time, no slot twice, tokens never go back, and every missed slot is explained.

    A missed slot is explained by a failover window — a kill (or Redis restart) allows
    [fault - period, fault over + TTL + period]; a SIGTERM allows [fault - period,
    fault + 2*period] (release, then the next slot) — or by rate mode's overlap rule: an
    earlier slot's run was still going when it came (a run made late or long by a busy machine).
    """
    ordered = sorted(executions, key=lambda e: e.start)
    kill_times = kill_times or {}

    def end_of(e: Execution) -> float:
        if e.end is not None:
            return e.end
        deaths = [t for t in kill_times.get(e.replica, []) if t >= e.start]
        return min(deaths) if deaths else end_of_run

    verdict = Verdict(executions=len(ordered), slots_expected=0)
    seen: dict[float, Execution] = {}
    for ex in ordered:
        key = round(ex.slot, 6)
        if key in seen:
            verdict.duplicates.append(ex.slot)
        seen[key] = ex
    for a, b in itertools.pairwise(ordered):
        if b.start < end_of(a):
            verdict.overlaps.append((a, b))
        if b.token < a.token:
            verdict.token_regressions.append((a, b))
    if not ordered:
        return verdict
    first, last = ordered[0].slot, ordered[-1].slot
    k_first = round((first - anchor) / period)
    k_last = round((last - anchor) / period)
    verdict.slots_expected = k_last - k_first + 1
    windows = []
    for f in faults:
        if f.kind == "term":
            windows.append((f.at - period, f.until + 2 * period + slack))
        else:
            windows.append((f.at - period, f.until + ttl + period + slack))
    for k in range(k_first, k_last + 1):
        slot = anchor + k * period
        if round(slot, 6) in seen:
            continue
        verdict.missed.append(slot)
        if any(lo <= slot <= hi for lo, hi in windows):
            continue
        # The runtime's run ends when the tick's scope is closed and the task is reaped, a
        # little after the worker logs its own end; on a busy machine that can pass a slot.
        if any(ex.slot < slot < end_of(ex) + period / 2 for ex in ordered):
            verdict.overlapped.append(slot)
            continue
        verdict.unexplained_misses.append(slot)
    return verdict


def executions_from(
    events: list[dict[str, object]], *, worker: str | None = None
) -> list[Execution]:
    """The runs in a test worker's event log (``start``/``end`` lines), of one worker or all."""
    mine = [e for e in events if worker is None or e.get("worker") == worker]
    ends = {(e["replica"], e["slot"]): e for e in mine if e["event"] == "end"}
    return [
        Execution(
            slot=float(str(e["slot"])),
            replica=str(e["replica"]),
            token=int(str(e["token"])),
            start=float(str(e["time"])),
            end=float(str(ends[(e["replica"], e["slot"])]["time"]))
            if (e["replica"], e["slot"]) in ends
            else None,
        )
        for e in mine
        if e["event"] == "start"
    ]
