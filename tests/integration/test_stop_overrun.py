"""A shutdown ends in bounded time whatever do_work does: ``tickwork run`` exits 1
``STOP_OVERRUN_SECONDS`` after the grace (or after a second signal) when a tick keeps
catching its cancellation or blocks the event loop, without releasing its lease."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.support.processes import RedisServer, start_tickwork, wait_until
from worker_runtime.keys import WorkerKeys
from worker_runtime.process import EXIT_STOP_OVERRUN
from worker_runtime.rules import STOP_OVERRUN_SECONDS

SLACK = 4.0  # interpreter start, the first tick, a loaded machine


def _run(tmp_path: Path, worker: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    started, log = tmp_path / "started", tmp_path / "tickwork.log"
    proc = start_tickwork(
        ["run", f"tests.workers.stubborn:{worker}", "--metrics-port", "0", *args],
        env={"TICKWORK_TEST_STARTED": str(started)},
        log_path=log,
    )
    wait_until(started.exists, timeout=30, what=f"{worker}'s first tick")
    return proc, log


@pytest.mark.parametrize("worker", ["Stubborn", "Blocking"])
def test_a_tick_that_does_not_stop_ends_the_process_after_the_grace_and_its_overrun(
    tmp_path: Path, redis_server: RedisServer, worker: str
) -> None:
    proc, log = _run(
        tmp_path, worker, "--shutdown-grace", "1s", "--redis-url", redis_server.url,
        "--lease-ttl", "30s",
    )  # fmt: skip
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=1.0 + STOP_OVERRUN_SECONDS + SLACK + 20)
    took = time.monotonic() - sent
    text = log.read_text()
    assert code == EXIT_STOP_OVERRUN, text
    assert 1.0 + STOP_OVERRUN_SECONDS - 0.5 <= took <= 1.0 + STOP_OVERRUN_SECONDS + SLACK, text
    assert "the shutdown did not end 5s after its grace ran out" in text
    assert f"tick:{worker}:1" in text
    # The work may still have been running: the lease is left to expire, not released.
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.pttl(WorkerKeys(worker).lease) > 10_000
    finally:
        client.close()


def test_a_second_signal_ends_a_stubborn_tick_after_the_overrun_not_the_grace(
    tmp_path: Path,
) -> None:
    proc, log = _run(tmp_path, "Stubborn", "--shutdown-grace", "10m")
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=STOP_OVERRUN_SECONDS + SLACK + 20)
    took = time.monotonic() - sent
    text = log.read_text()
    assert code == EXIT_STOP_OVERRUN, text
    assert STOP_OVERRUN_SECONDS - 0.5 <= took <= STOP_OVERRUN_SECONDS + SLACK, text
    assert "SIGINT received again: cancelling in-flight ticks now" in text
    assert "still runs after 1 cancellation(s)" in text
