"""Replicas whose wall clocks are wrong (Debian ``faketime``) against one real redis-server:
slots follow the Redis server's clock, so no replica waits for, skips or repeats a slot."""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

import pytest

from tests.support.processes import (
    RedisServer,
    faketime,
    free_port,
    http_get,
    metric,
    read_events,
    start_tickwork,
    stop,
    wait_until,
)

pytestmark = pytest.mark.integration
W = "tests.workers.sample:Ticker"
PERIOD = 0.2


def _replica(
    server: RedisServer, tmp_path: Path, name: str, *, offset: str | None, port: int = 0
) -> object:
    return start_tickwork(
        ["run", W, "--period", f"{PERIOD}s", "--mode", "rate", "--redis-url", server.url,
         "--lease-ttl", "1s", "--replica-id", name, "--metrics-port", str(port),
         "--metrics-host", "127.0.0.1"],
        env={"TICKWORK_TEST_LOG": str(tmp_path / "events.jsonl"),
             **(faketime(offset) if offset else {})},
        log_path=tmp_path / f"{name}.log",
    )  # fmt: skip


def _starts(tmp_path: Path, replica: str | None = None) -> list[dict[str, object]]:
    return [
        e
        for e in read_events(tmp_path / "events.jsonl")
        if e["event"] == "start" and (replica is None or e["replica"] == replica)
    ]


def _check_one_grid_no_repeats(starts: list[dict[str, object]]) -> None:
    slots = sorted(float(e["slot"]) for e in starts)  # type: ignore[arg-type]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    steps = [b - a for a, b in itertools.pairwise(slots)]
    # One grid for everyone: every step is a whole number of periods.
    assert all(abs(s / PERIOD - round(s / PERIOD)) < 0.01 for s in steps), steps


@pytest.mark.parametrize("offset", ["+1h", "-1h"])
def test_a_replica_with_a_wrong_clock_makes_no_replica_wait_skip_or_repeat_a_slot(
    redis_server: RedisServer, tmp_path: Path, offset: str
) -> None:
    port = free_port()
    skewed = _replica(redis_server, tmp_path, "skewed", offset=offset, port=port)
    right = None
    try:
        wait_until(lambda: len(_starts(tmp_path, "skewed")) >= 5, timeout=20, what="ticks")
        seconds = 3600.0 if offset == "+1h" else -3600.0
        exported = http_get(port, "/metrics")[1]
        right = _replica(redis_server, tmp_path, "right", offset=None)
        time.sleep(1.0)
        assert stop(skewed) == 0  # SIGTERM: the replica with the right clock takes over
        handover = time.time()
        wait_until(
            lambda: len(_starts(tmp_path, "right")) >= 5,
            timeout=10,
            what="ticks of the replica with the right clock after the takeover",
        )
    finally:
        for proc in (skewed, right):
            if proc is not None:
                stop(proc)  # type: ignore[arg-type]
    starts = _starts(tmp_path)
    _check_one_grid_no_repeats(starts)
    for e in starts:
        # Each slot is the Redis server's time (this test's clock), not the replica's.
        on_time = float(e["time"]) - (seconds if e["replica"] == "skewed" else 0.0)  # type: ignore[arg-type]
        assert abs(on_time - float(e["slot"])) < 0.5, e  # type: ignore[arg-type]
    first_after = min(float(e["slot"]) for e in _starts(tmp_path, "right"))  # type: ignore[arg-type]
    assert first_after - handover < 2.0, "the replica with the right clock waited"
    offset_line = re.search(r"^tickwork_clock_offset_seconds (\S+)$", exported, re.M)
    assert offset_line, "tickwork_clock_offset_seconds is not exported"
    assert float(offset_line.group(1)) == pytest.approx(-seconds, abs=1)
    side = "ahead of" if offset == "+1h" else "behind"
    pattern = rf"clock is 3(599|600)\.\d+s {side} the Redis server's"
    assert re.search(pattern, (tmp_path / "skewed.log").read_text())


def test_a_slot_recorded_an_hour_ahead_is_corrected_and_ticking_goes_on(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    import redis

    from worker_runtime.keys import WorkerKeys

    client = redis.Redis.from_url(redis_server.url)
    ahead = time.time() + 3600
    client.hset(WorkerKeys("Ticker").schedule, mapping={"anchor": ahead, "last_slot": ahead})
    client.close()
    port = free_port()
    proc = _replica(redis_server, tmp_path, "right", offset=None, port=port)
    try:
        wait_until(lambda: len(_starts(tmp_path)) >= 3, timeout=15, what="ticks")
        corrections = metric(port, 'tickwork_clock_corrections_total{worker="Ticker"}')
    finally:
        stop(proc)  # type: ignore[arg-type]
    assert corrections >= 1
    _check_one_grid_no_repeats(_starts(tmp_path))
    assert "ahead of the lease server's clock" in (tmp_path / "right.log").read_text()


def test_a_clock_step_on_the_holder_mid_run_changes_neither_its_cadence_nor_its_slots(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    clock_file = tmp_path / "faketime"
    clock_file.write_text("+0\n")
    env = {
        **{k: v for k, v in faketime("+0").items() if k != "FAKETIME"},  # read from the file
        "FAKETIME_TIMESTAMP_FILE": str(clock_file),
        "FAKETIME_NO_CACHE": "1",
        "TICKWORK_TEST_LOG": str(tmp_path / "events.jsonl"),
    }
    proc = start_tickwork(
        ["run", W, "--period", f"{PERIOD}s", "--mode", "rate", "--redis-url", redis_server.url,
         "--lease-ttl", "1s", "--replica-id", "stepped", "--metrics-port", "0"],
        env=env,
        log_path=tmp_path / "stepped.log",
    )  # fmt: skip
    try:
        wait_until(lambda: len(_starts(tmp_path)) >= 5, timeout=20, what="ticks before the step")
        clock_file.write_text("-1h\n")  # the host's clock jumps back an hour
        stepped_at = time.time()
        count = len(_starts(tmp_path))
        wait_until(
            lambda: len(_starts(tmp_path)) >= count + 10, timeout=10, what="ticks after the step"
        )
    finally:
        stop(proc)
    starts = _starts(tmp_path)
    _check_one_grid_no_repeats(starts)
    after = [float(e["slot"]) for e in starts[count:]]  # type: ignore[arg-type]
    # The slots stay on the Redis server's clock (this test's), one period apart.
    assert all(abs(slot - stepped_at) < 5.0 for slot in after), after[:3]
