"""A holder stalled past its lease (SIGSTOP) cannot corrupt the fenced store when it wakes."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.support.processes import RedisServer, read_events, start_tickwork, stop, wait_until

pytestmark = pytest.mark.integration
W = "tests.workers.fenced:FencedWorker"


def test_a_stalled_holder_s_late_write_is_rejected_by_the_fenced_store(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    db = tmp_path / "users.sqlite3"
    common = ["run", W, "--redis-url", redis_server.url, "--lease-ttl", "1s", "--metrics-port", "0"]
    env = {"TICKWORK_TEST_LOG": str(log), "TICKWORK_EXAMPLE_DB": str(db)}
    from examples.passive_users import UserRepository

    seeded = UserRepository(str(db))
    seeded.seed()
    seeded.close()
    stalled = start_tickwork(
        [*common, "--replica-id", "a"],
        env={**env, "TICKWORK_TEST_WRITE_DELAY": "1.0"},
        log_path=tmp_path / "a.log",
    )
    other = None
    resumed_at = float("inf")
    try:
        first = wait_until(
            lambda: [e for e in read_events(log) if e["event"] == "write_begin"],
            timeout=15,
            what="a's first write",
        )[0]
        stalled.send_signal(signal.SIGSTOP)  # mid-write: the thread sleeps before writing
        stopped_at = time.time()
        other = start_tickwork([*common, "--replica-id", "b"], env=env, log_path=tmp_path / "b.log")
        wait_until(
            lambda: [
                e
                for e in read_events(log)
                if e["event"] == "write_accepted" and e["pid"] == other.pid
            ],
            timeout=15,
            what="b's first accepted write",
        )
        time.sleep(max(0.0, stopped_at + 1.5 - time.time()))  # the stall outlasts the 1 s TTL
        stalled.send_signal(signal.SIGCONT)
        resumed_at = time.time()
        rejected = wait_until(
            lambda: [e for e in read_events(log) if e["event"] == "write_rejected"],
            timeout=10,
            what="a's stale write to be rejected",
        )
        assert rejected[0]["pid"] == stalled.pid
        assert rejected[0]["token"] == first["token"]
        time.sleep(1.0)
    finally:
        stalled.send_signal(signal.SIGCONT)
        stop(stalled)
        if other is not None:
            stop(other)
    events = read_events(log)
    accepted = [e["token"] for e in events if e["event"] == "write_accepted"]
    assert accepted == sorted(accepted), "the store never accepted an older token after a newer one"
    b_tokens = {e["token"] for e in events if e["event"] == "start" and e["replica"] == "b"}
    assert min(b_tokens) > first["token"]
    # closing(): a connection's own `with` only commits; Python 3.13 warns about the unclosed one.
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (fence,) = conn.execute("SELECT token FROM fence").fetchone()
    assert fence == max(accepted) and fence > first["token"]
    # The woken replica saw its lease had expired and started nothing while b held it.
    assert (
        "no longer holds the lease of worker 'FencedWorker' (expired)"
        in (tmp_path / "a.log").read_text()
    )
    assert not [
        e
        for e in events
        if e["event"] == "start" and e["replica"] == "a" and e["time"] > resumed_at
    ]
