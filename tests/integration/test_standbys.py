"""Standby replicas against a real redis-server: they cost Redis almost nothing while the
holder renews, take over at once when it releases the lease, and as soon as the lease runs
out when it is killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
import redis

from tests.support.processes import RedisServer, read_events, start_tickwork, stop, wait_until
from worker_runtime.leasing import LeaseTiming
from worker_runtime.redis_leases import RedisLeases

pytestmark = pytest.mark.integration
W = "tests.workers.sample:Ticker"


def _replica(
    server: RedisServer, tmp_path: Path, name: str, *extra: str
) -> tuple[subprocess.Popen[bytes], Path]:
    stderr = tmp_path / f"{name}-{time.monotonic_ns()}.log"  # one per process
    proc = start_tickwork(
        ["run", W, "--redis-url", server.url, "--replica-id", name, "--metrics-port", "0",
         "--log-format", "json", *extra],
        env={"TICKWORK_TEST_LOG": str(tmp_path / "events.jsonl")},
        log_path=stderr,
    )  # fmt: skip
    return proc, stderr


def _acquisitions(stderr: Path) -> list[float]:
    """When the replica logged taking the lease (Unix time)."""
    times = []
    for line in stderr.read_text(errors="replace").splitlines():
        if line.startswith("{") and "acquired the lease" in line:
            stamp = json.loads(line)["timestamp"].replace("Z", "+00:00")
            times.append(datetime.fromisoformat(stamp).timestamp())
    return times


def _holder(client: redis.Redis) -> str | None:
    owner = client.hget("tickwork:{Ticker}:lease", "owner")
    return None if owner is None else owner.decode().rsplit(":", 1)[0]


def _commands(client: redis.Redis) -> int:
    """Every command the server ran (those called inside scripts too), minus our own."""
    stats = client.info("commandstats")
    ours = ("cmdstat_info", "cmdstat_config|resetstat", "cmdstat_config")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ours)


def test_three_replicas_together_send_fewer_commands_per_tick_than_redbeat(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    procs = [_replica(redis_server, tmp_path, f"r{i}", "--period", "1s")[0] for i in range(3)]
    client = redis.Redis.from_url(redis_server.url)
    try:
        log = tmp_path / "events.jsonl"
        wait_until(lambda: len(read_events(log)) >= 6, timeout=20, what="three ticks")
        client.config_resetstat()
        starts = len([e for e in read_events(log) if e["event"] == "start"])
        time.sleep(10.0)
        commands = _commands(client)
        ticks = len([e for e in read_events(log) if e["event"] == "start"]) - starts
    finally:
        for proc in procs:
            stop(proc)
        client.close()
    print(f"{commands} commands for {ticks} ticks: {commands / ticks:.1f} per tick")
    assert ticks >= 9
    # RedBeat (Celery beat's Redis scheduler) sends 18 per tick at 1 s; the standbys used to
    # poll every quarter period (8 of the 27.5 per tick).
    assert commands / ticks <= 18, f"{commands} commands for {ticks} ticks"


def test_a_standby_takes_over_within_50ms_of_a_sigterm_to_the_holder_whatever_the_period(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # An hour's period and the default 15 s TTL: only the release can make this quick.
    replicas = {n: _replica(redis_server, tmp_path, n, "--period", "1h") for n in ("a", "b")}
    client = redis.Redis.from_url(redis_server.url)
    takeovers = []
    try:
        for _ in range(3):
            wait_until(lambda: _holder(client) is not None, timeout=20, what="a holder")
            time.sleep(0.3)  # the standby has asked and is waiting
            holder = _holder(client)
            assert holder is not None
            standby = "b" if holder == "a" else "a"
            before = len(_acquisitions(replicas[standby][1]))
            sent = time.time()
            stop(replicas[holder][0])
            wait_until(
                lambda s=standby, n=before: len(_acquisitions(replicas[s][1])) > n,
                timeout=20,
                what="the standby's takeover",
            )
            takeovers.append(_acquisitions(replicas[standby][1])[-1] - sent)
            # Back as the standby of the next round, once it runs (and so has asked).
            replicas[holder] = _replica(redis_server, tmp_path, holder, "--period", "1h")
            wait_until(
                lambda h=holder: "running 1 worker" in replicas[h][1].read_text(errors="replace"),
                timeout=20,
                what="the restarted replica",
            )
    finally:
        for proc, _ in replicas.values():
            stop(proc)
        client.close()
    print("takeovers after SIGTERM (s):", [round(t, 3) for t in takeovers])
    assert statistics.median(takeovers) <= 0.05, f"takeovers after SIGTERM: {takeovers}"


def test_a_standby_takes_over_within_100ms_of_the_end_of_a_killed_holders_lease(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    ttl = 2.0
    extra = ("--period", "1h", "--lease-ttl", f"{ttl:g}s")
    replicas = {n: _replica(redis_server, tmp_path, n, *extra) for n in ("a", "b")}
    client = redis.Redis.from_url(redis_server.url)
    try:
        wait_until(lambda: _holder(client) is not None, timeout=20, what="a holder")
        time.sleep(1.0)
        holder = _holder(client)
        assert holder is not None
        standby = "b" if holder == "a" else "a"
        killed = time.time()
        stop(replicas[holder][0], sig=signal.SIGKILL)
        wait_until(lambda: _acquisitions(replicas[standby][1]), timeout=10, what="the takeover")
        takeover = _acquisitions(replicas[standby][1])[-1] - killed
    finally:
        for proc, _ in replicas.values():
            stop(proc)
        client.close()
    # The lease was renewed at most one renew interval before the kill, so it ran out
    # within the TTL after it.
    assert takeover <= ttl + 0.1, f"took over {takeover:.3f}s after the kill (TTL {ttl:g}s)"


@pytest.mark.parametrize("outage", ["stopped", "paused"])
async def test_closing_the_leases_while_redis_is_unreachable_ends_the_release_subscription(
    redis_server: RedisServer, outage: str
) -> None:
    leases = RedisLeases.from_url(redis_server.url, timing=LeaseTiming(ttl_seconds=1.0))
    assert redis_server.proc is not None
    pid = redis_server.proc.pid
    try:
        leases.for_worker("w").release_signal()  # starts the subscription
        await asyncio.sleep(0.3)
        if outage == "paused":
            os.kill(pid, signal.SIGSTOP)  # connections hang instead of failing
        else:
            redis_server.stop()
        await asyncio.sleep(2.5)  # the subscription is failing and retrying
        started = time.monotonic()
        await asyncio.wait_for(leases.aclose(), timeout=10)
        assert time.monotonic() - started < 5
    finally:
        if outage == "paused":
            os.kill(pid, signal.SIGCONT)
