"""What durable writes (``WAIT 1`` after acquire and claim) cost per tick, on real servers.

A local primary with one replica (``redis-server --replicaof``, AOF ``appendfsync
everysec``). A tick makes one durable call (its slot claim) and one that is not (its run
record); the lease's renewals are not durable either. Prints the median time of a claim with
and without durable writes, one at a time and in bursts of 100 workers claiming together
(one pipeline, one ``WAIT``), so the number says what a tick pays for the replica's
acknowledgement.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from tests.support.processes import RedisServer, wait_until
from worker_runtime.leases import SlotClaim
from worker_runtime.leasing import LeaseTiming
from worker_runtime.redis_leases import RedisLeases

ROUNDS = 1000
BURST = 100
REPEATS = 10


async def _compare(url: str, *, workers: int) -> tuple[float, float]:
    """Median µs per claim, plain and durable: ``workers`` claims at once, the two kinds
    alternating round by round so that a busy moment of the machine weighs on both alike."""
    timing = LeaseTiming(ttl_seconds=15)
    kinds = {}
    for durable in (False, True):
        leases = RedisLeases.from_url(url, password=None, timing=timing, durable_writes=durable)
        backends = [leases.for_worker(f"bench-{durable}-{i}") for i in range(workers)]
        tokens = [await b.acquire("owner", 15) or 0 for b in backends]
        kinds[durable] = (leases, backends, tokens)
    times: dict[bool, list[float]] = {False: [], True: []}
    slot = 1000.0
    for _ in range(REPEATS * ROUNDS // workers):
        slot += 1
        for durable, (_, backends, tokens) in kinds.items():
            start = time.perf_counter()
            await asyncio.gather(
                *(
                    b.claim("owner", SlotClaim(slot=slot, anchor=0.0, token=t,
                                               replica_id="r", started_at=slot))
                    for b, t in zip(backends, tokens, strict=True)
                )
            )  # fmt: skip
            times[durable].append((time.perf_counter() - start) / workers * 1e6)
    for leases, _, _ in kinds.values():
        await leases.aclose()
    return statistics.median(times[False]), statistics.median(times[True])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        primary = RedisServer(Path(tmp) / "primary", appendfsync="everysec")
        primary.start()
        replica = RedisServer(
            Path(tmp) / "replica",
            appendfsync="everysec",
            extra_args=("--replicaof", "127.0.0.1", str(primary.port)),
        )
        replica.start()
        try:
            with redis.Redis(port=replica.port) as client:
                wait_until(
                    lambda: client.info("replication").get("master_link_status") == "up",
                    timeout=20,
                    what="the replica to sync",
                )
            url = primary.url
            for workers in (1, BURST):
                plain, durable = asyncio.run(_compare(url, workers=workers))
                print(
                    f"claim, {workers:>3} at once: {plain:7.1f} µs plain, {durable:7.1f} µs "
                    f"durable (+{durable - plain:.1f} µs per tick, {durable / plain:.2f}x)"
                )
        finally:
            replica.stop()
            primary.stop()


if __name__ == "__main__":
    main()
