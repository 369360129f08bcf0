"""``tickwork trigger``: one extra slot, exactly once, on real replicas and a real Redis."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.processes import (
    TICKWORK,
    RedisServer,
    free_port,
    metric,
    read_events,
    start_tickwork,
    stop,
    wait_until,
)
from worker_runtime.keys import WorkerKeys
from worker_runtime.triggering import request_trigger

pytestmark = pytest.mark.integration
NAME = "shop.trigger"
PERIOD = 6.0


def _replicas(
    server: RedisServer, tmp_path: Path, log: Path, count: int = 2, ttl: str = "1500ms"
) -> list[Any]:
    return [
        start_tickwork(
            [
                "run",
                "tests.workers.sample:Ticker",
                "--name",
                NAME,
                "--period",
                f"{PERIOD:g}s",
                "--mode",
                "rate",
                "--redis-url",
                server.url,
                "--lease-ttl",
                "1500ms",
                "--replica-id",
                f"pod-{i}",
                "--metrics-port",
                str(port),
            ],
            env={"TICKWORK_TEST_LOG": str(log)},
            log_path=tmp_path / f"pod-{i}.log",
        )
        for i, port in enumerate(_ports(count))
    ]


_PORTS: list[int] = []


def _ports(count: int) -> list[int]:
    _PORTS[:] = [free_port() for _ in range(count)]
    return list(_PORTS)


def trigger(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TICKWORK, "trigger", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        check=False,
    )


def _starts(log: Path) -> list[dict[str, Any]]:
    return [e for e in read_events(log) if e["event"] == "start"]


def _holder(client: redis.Redis) -> str | None:
    owner = client.hget(WorkerKeys(NAME).lease, "owner")
    return owner.decode().rsplit(":", 1)[0] if owner else None


def test_a_trigger_runs_one_extra_slot_exactly_once_on_the_holder_fenced_and_counted(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    procs = _replicas(redis_server, tmp_path, log)
    ports = list(_PORTS)
    client = redis.Redis.from_url(redis_server.url)
    try:
        holder = wait_until(lambda: _holder(client), timeout=20, what="a lease holder")
        # Right after a regular run, so that the next regular slot is seconds away.
        wait_until(lambda: _starts(log), timeout=PERIOD + 10, what="a first regular run")
        before = _starts(log)
        requested = time.time()
        result = trigger(NAME, "--redis-url", redis_server.url, "--wait", "20s")
        ran_within = time.time() - requested
        time.sleep(0.5)
        starts = _starts(log)
        holder_port = ports[int(holder.rsplit("-", 1)[1])]
        manual_success = metric(
            holder_port,
            f'tickwork_triggered_ticks_total{{outcome="success",trigger="manual",worker="{NAME}"}}',
        )
        status = {
            k.decode(): v.decode() for k, v in client.hgetall(WorkerKeys(NAME).status).items()
        }
        pending = client.exists(WorkerKeys(NAME).trigger)
    finally:
        for proc in procs:
            assert stop(proc) == 0
        client.close()

    assert result.returncode == 0, result.stderr
    assert "ended with success" in result.stdout, result.stdout
    print(f"{result.stdout.strip()} ({ran_within:.2f} s after the request)")
    extra = [e for e in starts if e not in before]
    manual = [e for e in extra if abs((e["slot"] - before[0]["slot"]) / PERIOD % 1) > 1e-3]
    assert len(manual) == 1, extra  # one run off the rate grid: the triggered one, once
    (run,) = manual
    assert run["replica"] == holder
    assert run["token"] == int(status["fencing_token"]) or run["token"] > before[-1]["token"] - 1
    assert abs(float(status["triggered_slot"]) - run["slot"]) < 1e-3
    assert status["trigger_id"] and status["triggered_outcome"] == "success"
    assert pending == 0
    assert manual_success == 1.0
    # Claimed within one renew interval (TTL/3) of the request, on the Redis server's clock
    # (the CLI's own start-up, seconds on a loaded machine, is not the runtime's delay), and
    # run before the next regular slot.
    picked_up = float(status["triggered_slot"]) - float(status["trigger_requested_at"])
    assert 0 <= picked_up < 0.5 + 0.5, picked_up
    assert run["slot"] < before[-1]["slot"] + 2 * PERIOD


async def test_a_request_made_while_one_is_pending_joins_it_one_run_per_distinct_request(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    procs = _replicas(redis_server, tmp_path, log, count=1, ttl="9s")
    client = redis.Redis.from_url(redis_server.url)
    try:
        wait_until(lambda: _holder(client), timeout=20, what="a lease holder")
        wait_until(lambda: _starts(log), timeout=PERIOD + 10, what="a first regular run")
        before = _starts(log)
        # Back to back (the holder notices once per renew interval, 3 s here).
        requests = [
            await request_trigger(redis_server.url, password=None, worker=NAME) for _ in range(2)
        ]
        wait_until(
            lambda: not client.exists(WorkerKeys(NAME).trigger), timeout=8, what="the pickup"
        )
        await asyncio.sleep(1.0)
        extra = [e for e in _starts(log) if e not in before]
    finally:
        for proc in procs:
            assert stop(proc) == 0
        client.close()
    print(f"requests: {requests}")
    assert not requests[0].joined
    assert requests[1].joined == (requests[1].id == requests[0].id)
    assert len(extra) == len({r.id for r in requests}), extra


async def test_a_request_records_when_it_was_made_on_the_servers_clock(
    redis_server: RedisServer,
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.hset(WorkerKeys(NAME).lease, "owner", "pod-0:x")  # a holder, so it is taken
        # Every 60 ms for 1.2 s: some requests fall in the first 100 ms of a second, where the
        # server's microseconds have fewer than six digits.
        for _ in range(20):
            await asyncio.sleep(0.06)
            client.delete(WorkerKeys(NAME).trigger)
            await request_trigger(redis_server.url, password=None, worker=NAME)
            seconds, micros = client.time()
            stored = client.hget(WorkerKeys(NAME).trigger, "requested_at")
            assert stored is not None
            assert 0 <= seconds + micros / 1e6 - float(stored) < 0.5, (stored, seconds, micros)
    finally:
        client.delete(WorkerKeys(NAME).trigger, WorkerKeys(NAME).lease)
        client.close()


def test_a_trigger_is_refused_in_one_line_while_no_replica_runs_the_worker(
    redis_server: RedisServer,
) -> None:
    result = trigger(NAME, "--redis-url", redis_server.url)

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "no replica of worker 'shop.trigger' holds its lease" in result.stderr
    assert "suspended" in result.stderr
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.exists(WorkerKeys(NAME).trigger) == 0  # nothing left behind
    finally:
        client.close()


def test_a_trigger_with_a_bad_url_or_wait_exits_2_naming_the_value() -> None:
    bad_url = trigger(NAME, "--redis-url", "http://localhost:6379")
    bad_wait = trigger(NAME, "--redis-url", "redis://localhost:1", "--wait", "soon")

    assert bad_url.returncode == 2 and "http://localhost:6379" in bad_url.stderr
    assert bad_wait.returncode == 2 and "'soon'" in bad_wait.stderr
    assert bad_url.stderr.count("\n") == bad_wait.stderr.count("\n") == 1
