"""Lease operation cost against a real local redis-server, next to a plain PING as the peer.

Prints medians (µs) of each operation over several repeats and the ratio to PING measured in
the same run, so the number says what the Lua scripts cost beyond one round trip. Run twice:
with AOF fsync every second (the usual production setting) and on every write (what the tests
use), which shows what durability costs each write (acquire, renew, claim).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.processes import RedisServer
from worker_runtime.leases import SlotClaim
from worker_runtime.leasing import LeaseTiming
from worker_runtime.outcomes import ClaimResult
from worker_runtime.redis_leases import RedisLeases

ROUNDS = 2000
REPEATS = 7
FSYNC_MODES = ("everysec", "always")


async def _time(op: object, rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        await op()  # type: ignore[operator]
    return (time.perf_counter() - start) / rounds * 1e6


async def main(url: str) -> None:
    leases = RedisLeases.from_url(url, timing=LeaseTiming(ttl_seconds=15))
    lease = leases.for_worker("bench")
    token = await lease.acquire("owner", 15)
    assert token is not None
    slot = [1000.0]

    async def claim() -> None:
        slot[0] += 1
        claim = SlotClaim(slot=slot[0], anchor=0.0, token=token, replica_id="r", started_at=slot[0])
        result = await lease.claim("owner", claim)
        assert result is ClaimResult.CLAIMED, result

    ops = {
        "PING (peer)": leases.client.ping,
        "acquire (held, re-entrant)": lambda: lease.acquire("owner", 15),
        "acquire (refused)": lambda: lease.acquire("other", 15),
        "renew": lambda: lease.renew("owner", 15),
        "claim slot": claim,
        "load state": lease.load_state,
    }
    results: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(REPEATS):
        for name, op in ops.items():
            results[name].append(await _time(op, ROUNDS))
    await leases.aclose()
    ping = statistics.median(results["PING (peer)"])
    print(f"lease operations, {REPEATS} repeats x {ROUNDS} sequential calls, one connection")
    print(f"{'operation':<28} {'median µs':>10} {'min µs':>8} {'vs PING':>8}")
    for name, samples in results.items():
        med = statistics.median(samples)
        print(f"{name:<28} {med:>10.1f} {min(samples):>8.1f} {med / ping:>7.2f}x")


def run() -> None:
    for fsync in FSYNC_MODES:
        print(f"\nredis-server with appendonly yes, appendfsync {fsync}")
        with tempfile.TemporaryDirectory() as tmp:
            server = RedisServer(Path(tmp) / "redis", appendfsync=fsync)
            server.start()
            try:
                asyncio.run(main(server.url))
            finally:
                server.stop()


if __name__ == "__main__":
    run()
