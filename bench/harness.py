"""`make bench`: Tickwork next to its peers, same Redis, same machine, back to back, repeated.

Measures (issue 14): start lateness inside the job at 1 s and 100 ms (3 Tickwork replicas on
Redis, APScheduler 3 and 4 in one process, Celery beat + RedBeat, arq), Redis commands per
tick over all processes (``INFO commandstats``, which counts the commands Lua scripts call),
runs per slot (what each peer guarantees), the holder's SIGTERM and SIGKILL → the next run,
1,000 workers in one process (CPU, RSS, lateness, runs/s; a py-spy profile of Tickwork's),
and the operator next to a Go controller-runtime baseline (bench/bench_operator.py). Writes
bench/RESULTS.md.

    python bench/harness.py [--repeats N] [--only lateness,failover,many,operator] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from bench import recording, systems
from bench.measuring import cpu_seconds, median, percentile, rss_mib
from bench.systems import Process, Settings
from tests.support.processes import RedisServer

RESULTS = systems.REPO / "bench" / "RESULTS.md"
# The harness's own commands, left out of the per-tick counts.
_OWN_COMMANDS = {"info", "config", "ping", "client", "hello"}


class Bench:
    """One Redis server, one record file and the processes of one system at a time."""

    def __init__(self, base: Path, *, lease_ttl_seconds: float = 5.0) -> None:
        self.base = base
        self.server = RedisServer(base / "redis", appendfsync="everysec")
        self.server.start()
        self.client = redis.Redis.from_url(self.server.url)
        self.lease_ttl_seconds = lease_ttl_seconds
        self._runs = 0

    def close(self) -> None:
        self.client.close()
        self.server.stop()

    @contextmanager
    def system(self, name: str) -> Iterator[Settings]:
        """Fresh Redis contents, a fresh record file and log folder for one system's run."""
        self._runs += 1
        run_dir = self.base / f"{self._runs:03d}-{name}"
        run_dir.mkdir(parents=True)
        self.client.flushall()
        settings = Settings(
            redis_url=self.server.url, record=run_dir / "runs.txt", logs=run_dir,
            lease_ttl_seconds=self.lease_ttl_seconds,
        )  # fmt: skip
        yield settings

    def command_calls(self) -> dict[str, int]:
        stats = self.client.info("commandstats")
        return {
            key.removeprefix("cmdstat_"): int(value["calls"])
            for key, value in stats.items()
            if key.removeprefix("cmdstat_").split("|")[0] not in _OWN_COMMANDS
        }


def stop_all(processes: list[Process]) -> None:
    for proc in processes:
        proc.signal(signal.SIGTERM)
    for proc in processes:
        proc.stop(timeout=30)


# ---------------------------------------------------------------- steady state (lateness)


@dataclass
class Steady:
    """One system's steady-state window: lateness, runs per slot, Redis commands per run."""

    system: str
    period: float
    processes: int
    window_seconds: float
    lateness: list[float]
    runs: int
    slots: int  # distinct slots run
    max_runs_per_slot: int
    commands: dict[str, int]
    cpu_share: float = math.nan
    rss_mib: float = math.nan

    @property
    def expected_slots(self) -> int:
        return round(self.window_seconds / self.period)

    @property
    def p50(self) -> float:
        return percentile(self.lateness, 0.50)

    @property
    def p99(self) -> float:
        return percentile(self.lateness, 0.99)

    @property
    def commands_per_run(self) -> float:
        total = sum(self.commands.values())
        return total / self.slots if self.slots else math.nan

    @property
    def runs_per_second(self) -> float:
        return self.runs / self.window_seconds


def _wait_for_runs(settings: Settings, *, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(recording.read(settings.record)) >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"no {count} runs within {timeout:g}s; logs in {settings.logs}")


def _wait_for_rate(settings: Settings, *, per_second: float, timeout: float) -> bool:
    """Until the last second saw at least 90 % of ``per_second`` runs (every worker going);
    False if that never happened within ``timeout`` (the window then measures what it does)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.time()
        recent = sum(1 for r in recording.read(settings.record) if now - 1.0 <= r.start < now)
        if recent >= 0.9 * per_second:
            return True
        time.sleep(0.5)
    print(f"   runs never reached 90 % of {per_second:g}/s within {timeout:g}s", flush=True)
    return False


def steady(
    bench: Bench,
    system: str,
    start: Callable[[Settings], list[Process]],
    *,
    period: float,
    seconds: float,
    per_second: float | None = None,
    warmup_timeout: float = 60,
    on_window: Callable[[list[Process], float], None] | None = None,
) -> Steady:
    """Start a system, let it settle, then measure a window of ``seconds``."""
    with bench.system(system) as settings:
        processes = start(settings)
        try:
            _wait_for_runs(settings, count=2, timeout=warmup_timeout)
            if per_second:
                _wait_for_rate(settings, per_second=per_second, timeout=warmup_timeout)
            time.sleep(max(2 * period, 1.0))
            bench.client.config_resetstat()
            pid = processes[0].pid
            cpu0, t0 = cpu_seconds(pid), time.time()
            rss = rss_mib(pid)
            if on_window:
                on_window(processes, seconds)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
                rss = max(rss, rss_mib(pid))
            cpu1, t1 = cpu_seconds(pid), time.time()
            commands = bench.command_calls()
        finally:
            stop_all(processes)
        runs = [r for r in recording.read(settings.record) if t0 <= r.slot < t1]
        per_slot = Counter((r.job, round(r.slot / period)) for r in runs)
        return Steady(
            system=system, period=period, processes=len(processes), window_seconds=t1 - t0,
            lateness=[r.lateness for r in runs], runs=len(runs), slots=len(per_slot),
            max_runs_per_slot=max(per_slot.values(), default=0), commands=commands,
            cpu_share=(cpu1 - cpu0) / (t1 - t0), rss_mib=rss,
        )  # fmt: skip


def lateness_systems(period: float) -> dict[str, Callable[[Settings], list[Process]]]:
    """The systems of the lateness table, each as its users deploy it for high availability
    (APScheduler has none: one process; its three-process variant shows what that costs)."""

    def staggered(make: Callable[[int], Process], count: int) -> list[Process]:
        started = []
        for index in range(count):
            started.append(make(index).start())
            time.sleep(0.3)  # the first one started is the first holder
        return started

    table: dict[str, Callable[[Settings], list[Process]]] = {
        "tickwork x3 (Redis)": lambda s: staggered(
            lambda i: systems.tickwork(s, f"r{i + 1}", period=period), 3
        ),
        "apscheduler3 x1": lambda s: [systems.apscheduler3(s, "p1", period=period).start()],
        "apscheduler3 x3": lambda s: staggered(
            lambda i: systems.apscheduler3(s, f"p{i + 1}", period=period), 3
        ),
        "apscheduler4 x1": lambda s: [systems.apscheduler4(s, "p1", period=period).start()],
        "redbeat (2 beats + worker)": lambda s: [
            systems.redbeat_worker(s, period=period).start(),
            *staggered(lambda i: systems.redbeat_beat(s, f"beat{i + 1}", period=period), 2),
        ],
    }
    if period >= 1.0:  # arq's cron has one-second resolution
        table["arq x3"] = lambda s: staggered(lambda i: systems.arq_worker(s, f"a{i + 1}"), 3)
    return table


# ---------------------------------------------------------------- failover


@dataclass
class Takeover:
    system: str
    sig: str
    seconds: float  # signal → the next run's start
    past_due: float  # the next run's start - when the first slot after the signal was due
    slots_missed: int
    other_replica: bool


def _last_run(settings: Settings) -> recording.Run | None:
    runs = recording.read(settings.record)
    return runs[-1] if runs else None


def failover(
    bench: Bench, system: str, *, sig: int, samples: int, period: float = 1.0
) -> list[Takeover]:
    """``samples`` times: signal the holder at a random phase of the period, time the next run
    (any process), start the signalled process again as a standby."""
    results: list[Takeover] = []
    with bench.system(f"failover-{system}") as settings:
        if system == "tickwork":
            make = lambda i: systems.tickwork(settings, f"r{i}", period=period)  # noqa: E731
            processes = {i: make(i).start() for i in (1, 2, 3)}
            extra: list[Process] = []
        else:
            make = lambda i: systems.redbeat_beat(settings, f"beat{i}", period=period)  # noqa: E731
            extra = [systems.redbeat_worker(settings, period=period).start()]
            processes = {}
            for i in (1, 2):
                processes[i] = make(i).start()
                time.sleep(1.0)
        holder = 1  # RedBeat: the beat started first holds the lock; then it alternates
        try:
            _wait_for_runs(settings, count=3, timeout=60)
            for _ in range(samples):
                before = _last_run(settings)
                assert before is not None
                if system == "tickwork":
                    holder = int(before.replica.removeprefix("r"))
                # a random phase within the period, after the last run
                time.sleep(random.uniform(0.05, 0.95) * period)
                before = _last_run(settings)
                assert before is not None
                sent = time.time()
                processes[holder].signal(sig)
                deadline = time.monotonic() + bench.lease_ttl_seconds + 10 * period + 10
                after = None
                while time.monotonic() < deadline:
                    runs = [r for r in recording.read(settings.record) if r.start > sent]
                    if runs:
                        after = runs[0]
                        break
                    time.sleep(0.002)
                if after is None:
                    raise RuntimeError(f"{system}: no run after {signal.Signals(sig).name}")
                missed = max(0, round((after.slot - before.slot) / period) - 1)
                due = before.slot + period
                while due < sent:
                    due += period
                results.append(
                    Takeover(
                        system, signal.Signals(sig).name, after.start - sent, after.start - due,
                        missed,
                        other_replica=after.replica != before.replica or system != "tickwork",
                    )
                )  # fmt: skip
                processes[holder].stop(timeout=30)
                processes[holder] = make(holder).start()
                if system != "tickwork":
                    holder = 2 if holder == 1 else 1
                time.sleep(1.0 + period)  # the restarted one is a standby again
        finally:
            stop_all([*processes.values(), *extra])
    return results


# ---------------------------------------------------------------- many workers in one process


def py_spy_profile(pid: int, seconds: float, out: Path) -> list[tuple[str, float]]:
    """The functions where a process spends its time (py-spy, own samples; top 12)."""
    py_spy = systems.venv_bin("py-spy", "py-spy")
    raw = out.with_suffix(".txt")
    subprocess.run(
        [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(seconds)),
         "--format", "raw", "--output", str(raw), "--rate", "100", "--nonblocking"],
        check=False, capture_output=True, timeout=seconds + 60,
    )  # fmt: skip
    own: Counter[str] = Counter()
    total = 0
    if raw.exists():
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = stack.split(";")
            total += int(count)
            own[frames[-1].strip()] += int(count)
    return [(frame, n / total) for frame, n in own.most_common(12)] if total else []


def many_systems(workers: int) -> dict[str, Callable[[Settings], list[Process]]]:
    return {
        "tickwork (in-process lease)": lambda s: [
            systems.tickwork(s, "m1", period=1.0, workers=workers, redis=False).start()
        ],
        "tickwork (Redis leases)": lambda s: [
            systems.tickwork(s, "m1", period=1.0, workers=workers).start()
        ],
        "apscheduler3": lambda s: [systems.apscheduler3(s, "m1", period=1.0, jobs=workers).start()],
        "apscheduler4": lambda s: [systems.apscheduler4(s, "m1", period=1.0, jobs=workers).start()],
    }


# ---------------------------------------------------------------- the run and its report


@dataclass
class Report:
    started: datetime
    args: argparse.Namespace
    load_before: str = ""
    load_after: str = ""
    lateness: dict[float, dict[str, list[Steady]]] = field(default_factory=dict)
    takeovers: list[Takeover] = field(default_factory=list)
    many: dict[str, list[Steady]] = field(default_factory=dict)
    profile: list[tuple[str, float]] = field(default_factory=list)
    operator: dict[str, Any] | None = None
    operator_error: str = ""
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 1000:.1f}"


def _ratio(a: float, b: float) -> str:
    return "-" if math.isnan(a) or math.isnan(b) or b == 0 else f"{a / b:.2f}x"


def versions() -> dict[str, str]:
    tickwork = subprocess.run(
        [str(systems.TICKWORK), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[2]
    return {
        "tickwork": tickwork or "?",
        "Tickwork's runtime dependencies": ", ".join(
            line.split(" ", 1)[0]
            for line in systems.RUNTIME_LOCK.read_text().splitlines()
            if line and not line.startswith((" ", "#"))
        ),
        "APScheduler 3": systems.VERSIONS["APSCHEDULER3_VERSION"],
        "APScheduler 4": systems.VERSIONS["APSCHEDULER4_VERSION"],
        "Celery / celery-redbeat": f"{systems.VERSIONS['CELERY_VERSION']} / "
        f"{systems.VERSIONS['REDBEAT_VERSION']}",
        "arq": systems.VERSIONS["ARQ_VERSION"],
        "Redis": redis_version.removeprefix("v="),
        "Python": platform.python_version(),
    }


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split()[1]
    return f"{os.cpu_count()} CPUs ({cpu}), {int(mem) // 1024} MiB RAM, {platform.platform()}"


def _lateness_table(period: float, runs: dict[str, list[Steady]]) -> list[str]:
    base = runs.get("apscheduler3 x1", [])
    base_p50, base_p99 = median([r.p50 for r in base]), median([r.p99 for r in base])
    lines = [
        f"### Start lateness at {period * 1000:g} ms, measured inside the job",
        "",
        "| system | processes | p50 ms | p99 ms | p50 / APS3 | p99 / APS3 | runs / slots due "
        "| most runs of one slot | Redis commands per run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for system, samples in runs.items():
        p50, p99 = median([r.p50 for r in samples]), median([r.p99 for r in samples])
        runs_ratio = median([r.runs / max(1, r.expected_slots) for r in samples])
        commands = median([r.commands_per_run for r in samples])
        most = max(r.max_runs_per_slot for r in samples)
        lines.append(
            f"| {system} | {samples[0].processes} | {_ms(p50)} | {_ms(p99)} "
            f"| {_ratio(p50, base_p50)} | {_ratio(p99, base_p99)} | {runs_ratio:.2f} | {most} "
            f"| {'-' if math.isnan(commands) or commands == 0 else f'{commands:.1f}'} |"
        )
    return lines


def _commands_breakdown(runs: dict[str, list[Steady]]) -> list[str]:
    lines = ["", "Redis commands in the window, by command (first repeat):", ""]
    for system, samples in runs.items():
        calls = samples[0].commands
        if not calls:
            continue
        top = ", ".join(f"{k} {v}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:8])
        lines.append(f"- {system}, {samples[0].slots} runs: {top}")
    return lines


def _med(samples: list[Steady], what: Callable[[Steady], float]) -> float:
    return median([what(r) for r in samples])


def goals(report: Report) -> list[tuple[str, str, bool | None]]:
    """Issue 14's (and 18's) goals against this run: (goal, measured, met; None: not run)."""
    rows: list[tuple[str, str, bool | None]] = []
    a = report.args
    for period, runs in report.lateness.items():
        tw, aps = runs.get("tickwork x3 (Redis)"), runs.get("apscheduler3 x1")
        if not tw or not aps:
            continue
        p99 = _med(tw, lambda r: r.p99) / _med(aps, lambda r: r.p99)
        p50 = _med(tw, lambda r: r.p50) / _med(aps, lambda r: r.p50)
        at = f"{period * 1000:g} ms"
        rows.append((f"lateness p99 at {at}, 3 replicas: <= 1.5x APScheduler 3", f"{p99:.2f}x",
                     p99 <= 1.5))  # fmt: skip
        rows.append((f"lateness p50 and p99 at {at}: <= 1.1x APScheduler 3 (issue 18)",
                     f"{p50:.2f}x / {p99:.2f}x", p50 <= 1.1 and p99 <= 1.1))  # fmt: skip
        beat = runs.get("redbeat (2 beats + worker)")
        if period == 1.0 and beat:
            ours, theirs = (_med(tw, lambda r: r.commands_per_run),
                            _med(beat, lambda r: r.commands_per_run))  # fmt: skip
            rows.append(("Redis commands per tick, all replicas, at 1 s: <= RedBeat's",
                         f"{ours:.1f} vs {theirs:.1f}", ours <= theirs))  # fmt: skip
    tw_takeovers = [t for t in report.takeovers if t.system == "tickwork"]
    term = [t.past_due for t in tw_takeovers if t.sig == "SIGTERM"]
    kill = [t.seconds for t in tw_takeovers if t.sig == "SIGKILL"]
    if term:
        rows.append(("SIGTERM of the holder: the next slot starts <= 50 ms late (median)",
                     f"{median(term) * 1000:.0f} ms", median(term) <= 0.05))  # fmt: skip
    if kill:
        rows.append((f"SIGKILL of the holder: the next run <= TTL + 100 ms ({a.ttl:g} s TTL)",
                     f"{median(kill):.2f} s median, {max(kill):.2f} s max",
                     max(kill) <= a.ttl + 0.1))  # fmt: skip
    local = report.many.get("tickwork (in-process lease)")
    leased = report.many.get("tickwork (Redis leases)")
    aps = report.many.get("apscheduler3")
    if local and aps:
        cpu = _med(local, lambda r: r.cpu_share) / _med(aps, lambda r: r.cpu_share)
        rss = _med(local, lambda r: r.rss_mib) / _med(aps, lambda r: r.rss_mib)
        p99 = _med(local, lambda r: r.p99) / _med(aps, lambda r: r.p99)
        n = f"{a.workers:,} workers"
        rows.append((f"{n}, one process: CPU <= 2x APScheduler 3's", f"{cpu:.2f}x", cpu <= 2))
        rows.append((f"{n}, one process: RSS <= 2x APScheduler 3's", f"{rss:.2f}x", rss <= 2))
        rows.append((f"{n}, one process: lateness p99 <= APScheduler 3's", f"{p99:.2f}x",
                     p99 <= 1))  # fmt: skip
    if leased:
        rate = _med(leased, lambda r: r.runs_per_second)
        rows.append((f"{a.workers:,} workers on Redis leases: every slot run",
                     f"{rate:.0f} of {a.workers} runs/s", rate >= 0.99 * a.workers))  # fmt: skip
    if report.operator:
        from bench import bench_operator

        rows += bench_operator.goals(report.operator)
    return rows


def render(report: Report) -> str:
    a = report.args
    lines = [
        "# Benchmark results (`make bench`)",
        "",
        "Written by `bench/harness.py`; do not edit by hand. Every number below comes from the",
        "run described here; ratios compare systems measured in this same run.",
        "",
        f"- date: {report.started:%Y-%m-%d %H:%M} UTC; the run took {report.seconds / 60:.1f} min",
        f"- machine: {machine()}",
        f"- load (/proc/loadavg) before: {report.load_before}; after: {report.load_after}",
        "- versions: " + "; ".join(f"{k} {v}" for k, v in versions().items()),
        f"- settings: Tickwork `--lease-ttl {a.ttl:g}s` (renewal the default TTL/3), "
        f"RedBeat `redbeat_lock_timeout = {a.ttl:g}` and `beat_max_loop_interval = min(1 s, "
        "period)`, arq defaults (poll delay 0.5 s), APScheduler `coalesce`, "
        "`misfire_grace_time` one period; one redis-server (AOF, `appendfsync everysec`) "
        "shared by all, flushed between systems; each system runs from a venv of its own, "
        "Tickwork's with just what its worker image installs (`images/locks/worker.txt`) "
        "and this tree's code",
        f"- repeats: {a.repeats} (steady windows of {a.seconds:g} s at 1 s, "
        f"{a.fast_seconds:g} s at 100 ms), back to back, systems interleaved; each figure is "
        "the median over repeats of that repeat's percentile",
        "",
        "## What each system guarantees (counted in the lateness runs)",
        "",
        "- **Tickwork x3**: each slot runs once across the three replicas (`most runs of one "
        "slot` = 1); a SIGTERM'd holder releases its lease, a killed one's lease expires "
        "after the TTL.",
        "- **APScheduler 3 / 4 (memory store)**: coordinate nothing between processes. One "
        "process: no failover. Three processes (`apscheduler3 x3`): every slot runs three "
        "times (`most runs of one slot` = 3).",
        "- **Celery beat + RedBeat**: one beat holds `redbeat::lock`, the other waits; the "
        "schedule is relative (each run is due one period after the previous one was sent), "
        "so the slot here is RedBeat's own due time; a Celery worker runs the task.",
        "- **arq**: every worker schedules the cron job; `unique` job ids make each slot run "
        "once; a job starts when a worker polls (0.5 s).",
        "",
    ]
    rows = goals(report)
    if rows:
        lines += ["## The goals of issue 14 in this run", "", "| goal | measured | met |",
                  "|---|---|---|"]  # fmt: skip
        from bench.bench_operator import goal_row

        lines += [goal_row(*row) for row in rows]
        lines.append("")
    for period, runs in report.lateness.items():
        lines += _lateness_table(period, runs)
        lines += _commands_breakdown(runs)
        lines.append("")
    if report.takeovers:
        lines += [
            "## The holder stopped → the next run (period 1 s)",
            "",
            "Signal sent at a random phase of the period; time from the signal to the start of "
            "the next run in any process (it includes the wait for the next slot); how late "
            "that run started past the first slot due after the signal (0 when a standby "
            "took over before that slot); slots missed between the last run before and the "
            "first after.",
            "",
            "| system | signal | samples | signal → next run, median s | max s "
            "| past the due slot, median s | max s | slots missed (median) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        groups: dict[tuple[str, str], list[Takeover]] = {}
        for t in report.takeovers:
            groups.setdefault((t.system, t.sig), []).append(t)
        for (system, sig), items in groups.items():
            secs, late = [t.seconds for t in items], [t.past_due for t in items]
            lines.append(
                f"| {system} | {sig} | {len(items)} | {median(secs):.2f} | {max(secs):.2f} "
                f"| {median(late):.3f} | {max(late):.3f} "
                f"| {median([t.slots_missed for t in items]):g} |"
            )
        lines.append("")
    if report.many:
        lines += [
            f"## {a.workers:,} workers (jobs) at 1 s in one process",
            "",
            "CPU share of one core and peak RSS of the process over the window; lateness "
            "inside the job; runs/s against the slots due.",
            "",
            "| system | CPU % | RSS MiB | p50 ms | p99 ms | runs/s | most runs of one slot "
            "| Redis commands per run | CPU / APS3 | RSS / APS3 | p99 / APS3 |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        base = report.many.get("apscheduler3", [])
        b_cpu = median([r.cpu_share for r in base])
        b_rss = median([r.rss_mib for r in base])
        b_p99 = median([r.p99 for r in base])
        for system, samples in report.many.items():
            cpu = median([r.cpu_share for r in samples])
            rss = median([r.rss_mib for r in samples])
            p50, p99 = median([r.p50 for r in samples]), median([r.p99 for r in samples])
            rate = median([r.runs_per_second for r in samples])
            cmds = median([sum(r.commands.values()) / max(1, r.runs) for r in samples])
            lines.append(
                f"| {system} | {cpu * 100:.1f} | {rss:.0f} | {_ms(p50)} | {_ms(p99)} "
                f"| {rate:.0f} | {max(r.max_runs_per_slot for r in samples)} "
                f"| {'-' if cmds == 0 else f'{cmds:.2f}'} | {_ratio(cpu, b_cpu)} "
                f"| {_ratio(rss, b_rss)} | {_ratio(p99, b_p99)} |"
            )
        lines.append("")
        if report.profile:
            lines += [
                "Where Tickwork's process spends its time with Redis leases (py-spy, share of "
                "samples by innermost frame):",
                "",
                *[f"- {share * 100:.1f} % `{frame}`" for frame, share in report.profile],
                "",
            ]
    if report.errors:
        lines += ["## Measurements that failed in this run", ""]
        lines += [f"- {error}" for error in report.errors] + [""]
    if report.operator is not None:
        from bench import bench_operator

        lines += bench_operator.render(report.operator)
    elif report.operator_error:
        lines += ["## Operator", "", f"Not measured in this run: {report.operator_error}", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="window at 1 s")
    parser.add_argument("--fast-seconds", type=float, default=12.0, help="window at 100 ms")
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--many-seconds", type=float, default=20.0)
    parser.add_argument("--takeovers", type=int, default=5, help="samples per signal")
    parser.add_argument("--ttl", type=float, default=5.0, help="lease TTL / RedBeat lock (s)")
    parser.add_argument("--operator-resources", type=int, default=100)
    parser.add_argument("--operator-burst", type=int, default=1000)
    parser.add_argument("--operator-ready", type=int, default=None,
                        help="resources of one replica for the operator's time to Ready "
                             "(default: bench_operator.READY_RESOURCES)")  # fmt: skip
    parser.add_argument("--only", default="lateness,failover,many,operator")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers")
    args = parser.parse_args(argv)
    only = {part.strip() for part in args.only.split(",") if part.strip()}
    unknown = only - {"lateness", "failover", "many", "operator"}
    if unknown:
        print(f"bench: unknown --only part {sorted(unknown)}; expected lateness, failover, "
              "many, operator", file=sys.stderr)  # fmt: skip
        return 2
    missing = systems.missing_peers()
    if missing:
        print(f"bench: peers not installed: {missing}; run `make bench-peers`", file=sys.stderr)
        return 2
    report = Report(started=datetime.now(UTC), args=args)
    report.load_before = Path("/proc/loadavg").read_text().strip()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tickwork-bench-") as tmp:
        bench = Bench(Path(tmp), lease_ttl_seconds=args.ttl)
        try:
            run_parts(bench, report, only)
        finally:
            bench.close()
    report.seconds = time.monotonic() - began
    report.load_after = Path("/proc/loadavg").read_text().strip()
    text = render(report)
    args.results.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(_raw(report), indent=1, default=str))
    print(text)
    return 0


def _attempt(report: Report, label: str, measure: Callable[[], Any]) -> Any:
    """One measurement; a system that fails is reported as failed and the run goes on."""
    print(f"== {label}", flush=True)
    try:
        return measure()
    except Exception as exc:  # one system's failure must not lose every other number
        report.errors.append(f"{label}: {type(exc).__name__}: {exc}")
        print(f"   failed: {exc}", flush=True)
        return None


def run_parts(bench: Bench, report: Report, only: set[str]) -> None:
    a = report.args
    if "lateness" in only:
        for period, seconds in ((1.0, a.seconds), (0.1, a.fast_seconds)):
            runs: dict[str, list[Steady]] = {}
            for repeat in range(a.repeats):
                for system, start in lateness_systems(period).items():
                    result = _attempt(
                        report, f"lateness {period:g}s, {system}, repeat {repeat + 1}",
                        partial(steady, bench, system, start, period=period, seconds=seconds),
                    )  # fmt: skip
                    if result is not None:
                        runs.setdefault(system, []).append(result)
            report.lateness[period] = runs
    if "failover" in only:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for system in ("tickwork", "redbeat"):
                takeovers = _attempt(
                    report, f"failover {system} {sig.name}",
                    partial(failover, bench, system, sig=sig, samples=a.takeovers),
                )  # fmt: skip
                report.takeovers += takeovers or []
    if "many" in only:
        for repeat in range(max(1, a.repeats - 1)):
            for system, start in many_systems(a.workers).items():
                profile_here = repeat == 0 and system == "tickwork (Redis leases)"

                def on_window(processes: list[Process], seconds: float, p: bool = profile_here):
                    if p:
                        report.profile = py_spy_profile(
                            processes[0].pid, min(10.0, seconds), bench.base / "profile"
                        )

                result = _attempt(
                    report, f"{a.workers} workers, {system}, repeat {repeat + 1}",
                    partial(steady, bench, system, start, period=1.0, seconds=a.many_seconds,
                            per_second=a.workers, warmup_timeout=60, on_window=on_window),
                )  # fmt: skip
                if result is not None:
                    report.many.setdefault(system, []).append(result)
    if "operator" in only:
        from bench import bench_operator

        ready = bench_operator.READY_RESOURCES if a.operator_ready is None else a.operator_ready
        try:
            report.operator = _attempt(
                report, "operator next to the Go baseline",
                lambda: bench_operator.run(
                    resources=a.operator_resources, burst=a.operator_burst, ready=ready,
                    base=bench.base,
                ),
            )  # fmt: skip
        except bench_operator.NotAvailable as exc:
            report.operator_error = str(exc)


def _raw(report: Report) -> dict[str, Any]:
    def steady_raw(s: Steady) -> dict[str, Any]:
        return {
            "p50": s.p50, "p99": s.p99, "runs": s.runs, "slots": s.slots,
            "expected_slots": s.expected_slots, "max_runs_per_slot": s.max_runs_per_slot,
            "commands_per_run": s.commands_per_run, "cpu_share": s.cpu_share,
            "rss_mib": s.rss_mib,
        }  # fmt: skip

    return {
        "lateness": {
            str(p): {k: [steady_raw(s) for s in v] for k, v in runs.items()}
            for p, runs in report.lateness.items()
        },
        "takeovers": [t.__dict__ for t in report.takeovers],
        "many": {k: [steady_raw(s) for s in v] for k, v in report.many.items()},
        "profile": report.profile,
        "operator": report.operator,
    }


if __name__ == "__main__":
    sys.exit(main())
