"""The runtime's failure paths against a real redis-server: crashes, refused writes, lost
replies, stopping mid-acquire, and shutdown while Redis is down."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from tests.support.aio import until
from tests.support.processes import (
    RedisServer,
    free_port,
    http_get,
    metric,
    read_events,
    start_tickwork,
    wait_until,
)
from worker_runtime import LeaseTiming, ManagerOptions, Metrics, PeriodicWorker, TickContext
from worker_runtime.keys import WorkerKeys
from worker_runtime.leases import LeaseBackend, SlotClaim
from worker_runtime.manager import WorkerManager
from worker_runtime.redis_leases import RedisLeases

pytestmark = pytest.mark.integration


class Counting(PeriodicWorker):
    period = 0.2
    mode = "rate"
    starts: list[float]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.starts = []

    async def do_work(self, ctx: TickContext) -> None:
        self.starts.append(time.monotonic())


def _manager(leases: RedisLeases, *, ttl: float = 3.0, grace: float = 2.0) -> WorkerManager:
    return WorkerManager(
        options=ManagerOptions(
            replica_id="r1", shutdown_grace_seconds=grace, lease=LeaseTiming(ttl_seconds=ttl)
        ),
        leases=leases,
        metrics=Metrics(CollectorRegistry()),
    )


def _sample(manager: WorkerManager, name: str, **labels: str) -> float:
    value = manager.metrics.registry.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} is not exported"
    return value


async def test_a_runner_that_crashed_ticks_again_after_its_restart(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import worker_runtime.running as running

    real_plan = running.plan_next
    crashes = [1]

    def plan_that_crashes_once(*args: Any, **kwargs: Any) -> Any:
        if crashes[0]:
            crashes[0] -= 1
            raise RuntimeError("injected bug")
        return real_plan(*args, **kwargs)

    leases = RedisLeases.from_url(redis_server.url, timing=LeaseTiming(ttl_seconds=3))
    manager = _manager(leases)
    worker = Counting()
    await manager.add(worker)
    monkeypatch.setattr(running, "plan_next", plan_that_crashes_once)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(manager.run())
        try:
            # The crash happens at once; the manager restarts the runner after 1 s.
            await until(lambda: len(worker.starts) >= 5, within=6, what="ticks after a crash")
        finally:
            manager.stop()
    assert crashes == [0]
    assert _sample(manager, "tickwork_ticks_total", worker="Counting", outcome="success") >= 5


@pytest.mark.parametrize(
    ("refusal", "refuse", "allow"),
    [
        ("READONLY", ["REPLICAOF", "127.0.0.1", "{dead_port}"], ["REPLICAOF", "NO", "ONE"]),
        ("OOM", ["CONFIG", "SET", "maxmemory", "1"], ["CONFIG", "SET", "maxmemory", "0"]),
    ],
)
async def test_a_redis_that_refuses_writes_is_retried_with_backoff_and_each_slot_counted_once(
    redis_server: RedisServer, raw: Redis, refusal: str, refuse: list[str], allow: list[str]
) -> None:
    leases = RedisLeases.from_url(redis_server.url, timing=LeaseTiming(ttl_seconds=5))
    manager = _manager(leases, ttl=5.0)
    worker = Counting()
    await manager.add(worker)
    dead = str(free_port())
    async with asyncio.TaskGroup() as tg:
        tg.create_task(manager.run())
        try:
            await until(lambda: len(worker.starts) >= 3, within=10, what="the first ticks")
            errors_before = _sample(manager, "tickwork_redis_errors_total", op="claim")
            await raw.execute_command(*[a.replace("{dead_port}", dead) for a in refuse])
            refused_at = time.monotonic()
            await asyncio.sleep(2.0)
            ticks_while_refused = [s for s in worker.starts if s > refused_at + 0.05]
            failed_claims = (
                _sample(manager, "tickwork_redis_errors_total", op="claim") - errors_before
            )
            misfires = _sample(
                manager, "tickwork_ticks_skipped_total", worker="Counting", reason="misfire"
            )
            await raw.execute_command(*allow)
            count = len(worker.starts)
            await until(
                lambda: len(worker.starts) >= count + 3, within=10, what=f"ticks after {refusal}"
            )
        finally:
            manager.stop()
    print(f"{refusal}: {failed_claims:.0f} failed claims and {misfires:.0f} misfires in 2 s")
    assert ticks_while_refused == []
    # 2 s of a 200 ms grid is 10 slots: a few attempts each (backoff), each slot counted once.
    assert 1 <= failed_claims <= 60, f"{failed_claims:.0f} failed claims in 2 s"
    assert misfires <= 12, f"{misfires:.0f} misfires counted for about 10 slots"


async def test_a_claim_sent_again_after_a_lost_reply_counts_as_claimed_by_its_holder(
    redis_server: RedisServer,
) -> None:
    leases = RedisLeases.from_url(redis_server.url, timing=LeaseTiming(ttl_seconds=2))
    try:
        lease: LeaseBackend = leases.for_worker("w")
        token = await lease.acquire("a", 2)
        assert token is not None
        claim = SlotClaim(slot=110.0, anchor=100.0, token=token, replica_id="r", started_at=110.0)
        assert await lease.claim_slot("a", claim) is True
        # The first reply was lost; the same holder sends the same claim again.
        assert await lease.claim_slot("a", claim) is True
        # A later holder (a new token) may not claim that slot again.
        await lease.release("a")
        newer = await lease.acquire("b", 2)
        assert newer is not None and newer > token
        again = SlotClaim(slot=110.0, anchor=100.0, token=newer, replica_id="r", started_at=111.0)
        assert await lease.claim_slot("b", again) is False
    finally:
        await leases.aclose()


class _LostReplyLeases(RedisLeases):
    """The first claim's script runs in Redis, but its reply is lost (a connection reset)."""

    lose_next_claim_reply = True

    def __init__(self, client: Redis, **options: Any) -> None:
        super().__init__(client, **options)
        script = self.claim_script

        async def claim_script(**kwargs: Any) -> Any:
            result = await script(**kwargs)
            if self.lose_next_claim_reply:
                self.lose_next_claim_reply = False
                raise redis.ConnectionError("Connection reset by peer (injected)")
            return result

        self.claim_script = claim_script  # type: ignore[assignment]


async def test_a_lost_claim_reply_is_retried_and_neither_ends_the_lease_nor_skips_the_slot(
    redis_server: RedisServer,
) -> None:
    leases = _LostReplyLeases.from_url(redis_server.url, timing=LeaseTiming(ttl_seconds=3))
    manager = _manager(leases)
    worker = Counting()
    await manager.add(worker)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(manager.run())
        try:
            await until(lambda: len(worker.starts) >= 3, within=10, what="three ticks")
        finally:
            manager.stop()
    assert not leases.lose_next_claim_reply
    w = {"worker": "Counting"}
    assert _sample(manager, "tickwork_lease_losses_total", reason="stolen", **w) == 0
    assert _sample(manager, "tickwork_lease_acquisitions_total", **w) == 1
    assert _sample(manager, "tickwork_ticks_skipped_total", reason="misfire", **w) == 0


class _SlowReplyLeases(RedisLeases):
    """Acquire replies arrive late: the script has run in Redis, the caller still waits."""

    reply_delay = 0.0
    script_ran: asyncio.Event

    def for_worker(self, worker: str) -> LeaseBackend:
        backend = super().for_worker(worker)
        provider = self
        original = backend.acquire_or_wait

        async def acquire_or_wait(
            owner: str, ttl_seconds: float
        ) -> tuple[int | None, float | None]:
            token, left = await original(owner, ttl_seconds)
            if token is not None and provider.reply_delay:
                provider.script_ran.set()
                await asyncio.sleep(provider.reply_delay)
            return token, left

        backend.acquire_or_wait = acquire_or_wait  # type: ignore[method-assign]
        return backend


async def test_stopping_during_an_acquire_whose_script_ran_still_releases_the_lease(
    redis_server: RedisServer, raw: Redis
) -> None:
    leases = _SlowReplyLeases.from_url(redis_server.url, timing=LeaseTiming(ttl_seconds=10))
    leases.script_ran = asyncio.Event()
    leases.reply_delay = 0.15
    manager = _manager(leases, ttl=10.0)
    await manager.add(Counting())
    async with asyncio.TaskGroup() as tg:
        tg.create_task(manager.run())
        await asyncio.wait_for(leases.script_ran.wait(), timeout=5)
        manager.stop()
    assert await raw.exists(WorkerKeys("Counting").lease) == 0, "the lease was left behind"


def test_sigterm_while_redis_is_down_exits_promptly_without_a_log_storm(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    stderr = tmp_path / "stderr.log"
    proc = start_tickwork(
        ["run", "tests.workers.sample:Ticker", "--period", "200ms", "--redis-url",
         redis_server.url, "--lease-ttl", "10s", "--metrics-port", "0"],
        env={"TICKWORK_TEST_LOG": str(log)},
        log_path=stderr,
    )  # fmt: skip
    try:
        wait_until(lambda: len(read_events(log)) >= 4, timeout=15, what="ticks")
        redis_server.stop()
        time.sleep(1.0)
        sent = time.monotonic()
        proc.terminate()
        code = proc.wait(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = stderr.read_text().splitlines()
    assert code == 0
    assert elapsed < 4.0, f"took {elapsed:.1f}s to exit (the lease TTL is 10 s)"
    assert len(lines) < 60, f"{len(lines)} log lines; last: {lines[-3:]}"


def test_a_tick_that_blocks_the_event_loop_past_its_lease_is_reported_not_a_success(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    stderr = tmp_path / "stderr.log"
    port = free_port()
    proc = start_tickwork(
        ["run", "tests.workers.sample:Blocker", "--redis-url", redis_server.url,
         "--lease-ttl", "1s", "--metrics-port", str(port), "--metrics-host", "127.0.0.1"],
        env={"TICKWORK_TEST_LOG": str(log), "TICKWORK_TEST_BLOCK": "4"},
        log_path=stderr,
    )  # fmt: skip
    try:
        wait_until(lambda: read_events(log), timeout=15, what="the blocking tick to start")
        asked = time.monotonic()
        code, body = http_get(port, "/healthz")  # asked while the loop is blocked
        took = time.monotonic() - asked
        wait_until(
            lambda: any(e["event"] == "end" for e in read_events(log)), timeout=15, what="its end"
        )
        outcome = 'tickwork_ticks_total{outcome="lease_lost",worker="Blocker"}'
        wait_until(lambda: metric(port, outcome) == 1, timeout=5, what="the outcome")
        assert metric(port, 'tickwork_ticks_total{outcome="success",worker="Blocker"}') == 0
        assert metric(port, "tickwork_event_loop_stalls_total") >= 1
        assert http_get(port, "/healthz")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert code == 503 and "blocked" in body, (code, body)
    assert took < 3.5, f"/healthz took {took:.1f}s to answer while the loop was blocked"
    # The run's status says how it ended, though its record could no longer be stored.
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        status = client.hgetall(WorkerKeys("Blocker").status)
    finally:
        client.close()
    assert status["outcome"] == "lease_lost", status
    assert float(status["ended_at"]) > float(status["started_at"]), status
    text = stderr.read_text()
    assert "past the lease's deadline" in text
    assert "event loop was blocked for" in text


async def test_more_workers_than_connections_wait_their_turn_and_all_leases_are_released(
    redis_server: RedisServer, raw: Redis
) -> None:
    from tests.workers import fleet

    leases = RedisLeases.from_url(redis_server.url, timing=LeaseTiming(ttl_seconds=5))
    manager = _manager(leases, ttl=5.0)
    count = 150  # well over the old fixed pool of 64 connections
    for i in range(count):
        await manager.add(getattr(fleet, f"Fleet{i:04d}")())

    def held() -> float:
        registry = manager.metrics.registry
        return sum(
            sample.value
            for family in registry.collect()
            if family.name == "tickwork_lease_held"
            for sample in family.samples
        )

    async with asyncio.TaskGroup() as tg:
        tg.create_task(manager.run())
        try:
            await until(lambda: held() == count, within=30, what=f"{count} leases held")
            await asyncio.sleep(2.5)
        finally:
            manager.stop()
    errors = {
        op: _sample(manager, "tickwork_redis_errors_total", op=op)
        for op in ("acquire", "renew", "claim", "record", "release")
    }
    assert errors == dict.fromkeys(errors, 0.0), errors
    left = [key async for key in raw.scan_iter(match="tickwork:{*}:lease")]
    assert left == [], f"{len(left)} of {count} leases were not released"
