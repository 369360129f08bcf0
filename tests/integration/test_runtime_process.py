"""``tickwork run`` as a real process: real time, real signals."""

from __future__ import annotations

import itertools
import signal
import socket
import statistics
import time
from pathlib import Path

import pytest

from tests.support.processes import free_port, read_events, start_tickwork, stop, wait_until

pytestmark = pytest.mark.integration
W = "tests.workers.sample:Ticker"


def _starts(path: Path) -> list[dict[str, object]]:
    return [e for e in read_events(path) if e["event"] == "start"]


def test_rate_mode_makes_25_ticks_in_5_seconds_each_on_its_grid_point(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    proc = start_tickwork(
        ["run", W, "--period", "200ms", "--mode", "rate", "--metrics-port", "0"],
        env={"TICKWORK_TEST_LOG": str(log)},
        log_path=tmp_path / "stderr.log",
    )
    try:
        first = wait_until(lambda: _starts(log), timeout=10, what="the first tick")[0]
        time.sleep(5.3)
    finally:
        assert stop(proc) == 0
    starts = _starts(log)
    window = [e for e in starts if e["time"] < first["time"] + 5.0]  # type: ignore[operator]
    assert 24 <= len(window) <= 26, f"{len(window)} ticks in 5 s"
    slots = [float(e["slot"]) for e in starts]  # type: ignore[arg-type]
    steps = [b - a for a, b in itertools.pairwise(slots)]
    # scheduled_at is a datetime: microsecond resolution.
    assert all(abs(step - 0.2) < 2e-6 for step in steps), steps
    lateness = [float(e["time"]) - float(e["slot"]) for e in starts]  # type: ignore[arg-type]
    print(
        f"lateness: median {statistics.median(lateness) * 1000:.2f} ms,"
        f" max {max(lateness) * 1000:.2f} ms"
    )
    assert statistics.median(lateness) < 0.005
    assert max(lateness) < 0.025
    # No drift: the last start is as close to its grid point as the first.
    assert abs(lateness[-1]) < 0.025


def test_delay_mode_waits_one_period_between_a_run_s_end_and_the_next_start(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    proc = start_tickwork(
        ["run", W, "--period", "300ms", "--mode", "delay", "--metrics-port", "0"],
        env={"TICKWORK_TEST_LOG": str(log), "TICKWORK_TEST_WORK": "0.1"},
    )
    try:
        wait_until(lambda: len(_starts(log)) >= 6, timeout=10, what="six ticks")
    finally:
        assert stop(proc) == 0
    events = read_events(log)
    ends = [e["mono"] for e in events if e["event"] == "end"]
    starts = [e["mono"] for e in events if e["event"] == "start"]
    gaps = [float(s) - float(e) for e, s in zip(ends, starts[1:], strict=False)]  # type: ignore[arg-type]
    assert len(gaps) >= 5
    assert all(0.299 <= g < 0.33 for g in gaps), gaps


def _sigterm_during_a_tick(
    tmp_path: Path, *, work: str, grace: str
) -> tuple[int, float, list[object]]:
    """Start a tick of ``work`` seconds, SIGTERM it; exit code, seconds to exit, outcomes."""
    log = tmp_path / "events.jsonl"
    proc = start_tickwork(
        ["run", W, "--period", "10s", "--run-on-start", "--shutdown-grace", grace,
         "--metrics-port", "0"],
        env={"TICKWORK_TEST_LOG": str(log), "TICKWORK_TEST_WORK": work},
    )  # fmt: skip
    wait_until(lambda: _starts(log), timeout=10, what="the tick to start")
    sent = time.monotonic()
    code = stop(proc)
    elapsed = time.monotonic() - sent
    return code, elapsed, [e["outcome"] for e in read_events(log) if e["event"] == "end"]


def test_sigterm_lets_the_in_flight_tick_finish_and_exits_0(tmp_path: Path) -> None:
    code, elapsed, outcomes = _sigterm_during_a_tick(tmp_path, work="1.5", grace="5s")
    assert (code, outcomes) == (0, ["done"])
    assert 1.0 < elapsed < 4.0


def test_a_tick_longer_than_the_shutdown_grace_is_cancelled_and_the_exit_is_still_0(
    tmp_path: Path,
) -> None:
    code, elapsed, outcomes = _sigterm_during_a_tick(tmp_path, work="30", grace="1s")
    assert (code, outcomes) == (0, ["cancelled"])
    assert 0.9 < elapsed < 3.0


def test_a_metrics_port_in_use_is_a_one_line_error_and_exit_2(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        err = tmp_path / "stderr.log"
        proc = start_tickwork(
            ["run", W, "--metrics-port", str(port), "--metrics-host", "127.0.0.1"], log_path=err
        )
        assert proc.wait(timeout=20) == 2
    text = err.read_text()
    error_lines = [line for line in text.splitlines() if "error" in line]
    assert error_lines == [error_lines[0]]
    assert f"127.0.0.1:{port}" in error_lines[0]
    assert "address already in use" in error_lines[0].lower()


def test_sigint_also_stops_gracefully(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    proc = start_tickwork(
        ["run", W, "--period", "200ms", "--metrics-port", "0"], env={"TICKWORK_TEST_LOG": str(log)}
    )
    wait_until(lambda: _starts(log), timeout=10, what="a tick")
    assert stop(proc, sig=signal.SIGINT) == 0


def test_the_objects_made_at_start_are_frozen_out_of_the_garbage_collectors_sight(
    tmp_path: Path,
) -> None:
    from worker_runtime.process import GC_THRESHOLDS

    log = tmp_path / "events.jsonl"
    proc = start_tickwork(
        ["run", "tests.workers.sample:CollectorProbe", "--metrics-port", "0"],
        env={"TICKWORK_TEST_LOG": str(log)},
    )
    try:
        wait_until(lambda: len(read_events(log)) >= 1, timeout=15, what="a tick")
    finally:
        stop(proc)
    event = read_events(log)[0]
    # Modules, the worker, its runner: thousands of objects no full collection walks again.
    assert int(event["frozen"]) > 10_000  # type: ignore[call-overload]
    assert tuple(event["thresholds"]) == GC_THRESHOLDS  # type: ignore[arg-type]
