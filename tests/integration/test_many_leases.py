"""Many workers in one process against a real redis-server: their leases cost Redis a few
calls per renew interval, not one per worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from tests.support.aio import until
from tests.support.processes import RedisServer
from worker_runtime import LeaseTiming, ManagerOptions, Metrics, PeriodicWorker, TickContext
from worker_runtime.keys import WorkerKeys
from worker_runtime.manager import WorkerManager
from worker_runtime.redis_leases import RedisLeases

pytestmark = pytest.mark.integration
TIMING = LeaseTiming(ttl_seconds=1.0)


class Idle(PeriodicWorker):
    period = 3600.0

    async def do_work(self, ctx: TickContext) -> None:
        return None


@pytest.fixture
async def leases(redis_server: RedisServer) -> AsyncIterator[RedisLeases]:
    provider = RedisLeases.from_url(redis_server.url, timing=TIMING)
    try:
        yield provider
    finally:
        await provider.aclose()


async def _script_calls(raw: Redis) -> int:
    stats = await raw.info("commandstats")
    return sum(
        int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")
    )


async def test_renewals_asked_for_in_one_loop_turn_go_to_redis_as_one_script_call(
    leases: RedisLeases, raw: Redis
) -> None:
    backends = [leases.for_worker(f"w{i:03d}") for i in range(100)]
    for backend in backends:
        assert await backend.acquire("a", 1.0) is not None
    assert await backends[1].renew("a", 1.0)  # the server learns the script (SCRIPT LOAD)
    await raw.config_resetstat()
    # w000 is renewed by an owner that does not hold it; all others by their holder.
    owners = ["b"] + ["a"] * 99
    renewed = await asyncio.gather(
        *(b.renew(o, 1.0) for b, o in zip(backends, owners, strict=True))
    )
    assert renewed == [False] + [True] * 99
    assert await _script_calls(raw) == 1
    assert await raw.pttl(WorkerKeys("w000").lease) <= 1000
    assert await raw.hget(WorkerKeys("w000").lease, "owner") == b"a"


async def test_keepers_that_acquired_at_different_moments_renew_together(
    leases: RedisLeases, raw: Redis
) -> None:
    workers = 50
    manager = WorkerManager(
        options=ManagerOptions(replica_id="r1", shutdown_grace_seconds=2.0, lease=TIMING),
        leases=leases,
        metrics=Metrics(CollectorRegistry()),
    )

    def held() -> int:
        registry = manager.metrics.registry
        return sum(
            int(registry.get_sample_value("tickwork_lease_held", {"worker": f"Idle{i:03d}"}) or 0)
            for i in range(workers)
        )

    async with asyncio.TaskGroup() as tg:
        tg.create_task(manager.run())
        try:
            for i in range(workers):  # added one by one: each acquires at its own moment
                await manager.add(type(f"Idle{i:03d}", (Idle,), {})())
                await asyncio.sleep(0.01)
            await until(lambda: held() == workers, within=10, what="every lease held")
            await raw.config_resetstat()
            window = 3.0
            await asyncio.sleep(window)
            calls = await _script_calls(raw)
            assert held() == workers
        finally:
            manager.stop()
    # Each renew interval one call renews all 50 leases (one per worker would be ~450).
    intervals = window / TIMING.renew
    assert calls <= 2 * (intervals + 1), f"{calls} script calls in {window}s for {workers} leases"
