"""The Redis lease against a real redis-server, in the spirit of redis-py's lock tests."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.support.processes import RedisServer
from worker_runtime.keys import WorkerKeys
from worker_runtime.leases import LeaseBackend, RunRecord, SlotClaim
from worker_runtime.leasing import LeaseTiming
from worker_runtime.outcomes import ClaimResult
from worker_runtime.redis_leases import RedisLeases

pytestmark = pytest.mark.integration
W = "billing.invoices"


@pytest.fixture
async def leases(redis_server: RedisServer) -> AsyncIterator[RedisLeases]:
    provider = RedisLeases.from_url(redis_server.url, timing=LeaseTiming(ttl_seconds=2))
    try:
        yield provider
    finally:
        await provider.aclose()


async def test_only_one_of_two_competing_owners_acquires(leases: RedisLeases) -> None:
    lease = leases.for_worker(W)
    results = await asyncio.gather(lease.acquire("a", 2), lease.acquire("b", 2))
    assert sorted(r is None for r in results) == [False, True]


async def test_renew_and_release_by_a_non_owner_are_refused(
    leases: RedisLeases, raw: Redis
) -> None:
    lease = leases.for_worker(W)
    assert await lease.acquire("a", 2) is not None
    assert await lease.renew("b", 2) is False
    assert await lease.release("b") is False
    assert (await raw.hget(WorkerKeys(W).lease, "owner")) == b"a"
    assert await lease.renew("a", 2) is True
    assert await lease.release("a") is True
    assert await raw.exists(WorkerKeys(W).lease) == 0


async def test_an_acquire_whose_reply_was_lost_is_recovered_by_retrying(
    leases: RedisLeases,
) -> None:
    lease = leases.for_worker(W)
    # The first reply is "lost": the caller never saw the token.
    lost = await lease.acquire("a", 2)
    again = await lease.acquire("a", 2)
    assert again == lost
    assert await lease.acquire("b", 2) is None


async def test_the_ttl_is_never_above_its_bound(leases: RedisLeases, raw: Redis) -> None:
    lease = leases.for_worker(W)
    key = WorkerKeys(W).lease
    await lease.acquire("a", 1.5)
    for _ in range(5):
        ttl = await raw.pttl(key)
        assert 0 < ttl <= 1500
        await lease.renew("a", 1.5)
        await lease.acquire("a", 1.5)
    assert await raw.pttl(key) <= 1500


async def test_fencing_tokens_strictly_increase_across_holders(leases: RedisLeases) -> None:
    lease = leases.for_worker(W)
    tokens = []
    for owner in ["a", "b", "a", "c", "b"]:
        token = await lease.acquire(owner, 0.3)
        assert token is not None
        tokens.append(token)
        if owner == "c":
            await asyncio.sleep(0.35)  # let it expire instead of releasing
        else:
            await lease.release(owner)
    assert all(b > a for a, b in itertools.pairwise(tokens)), tokens


async def test_fencing_tokens_keep_growing_even_if_redis_loses_its_data(
    leases: RedisLeases, raw: Redis
) -> None:
    lease = leases.for_worker(W)
    before = await lease.acquire("a", 2)
    assert before is not None
    await raw.flushall()
    after = await lease.acquire("b", 2)
    assert after is not None and after > before


async def test_a_slot_is_claimed_only_by_the_holder_and_only_once(leases: RedisLeases) -> None:
    lease: LeaseBackend = leases.for_worker(W)
    token = await lease.acquire("a", 2)
    assert token is not None

    def claim(slot: float) -> SlotClaim:
        return SlotClaim(slot=slot, anchor=100.0, token=token, replica_id="r-a", started_at=slot)

    assert await lease.claim_slot("b", claim(110.0)) is False
    assert await lease.claim_slot("a", claim(110.0)) is True
    assert (
        await lease.claim(
            "a",
            SlotClaim(slot=110.0, anchor=100.0, token=token + 1, replica_id="r-a", started_at=1),
        )
        is ClaimResult.ALREADY_CLAIMED
    )
    assert await lease.claim("a", claim(105.0)) is ClaimResult.ALREADY_CLAIMED
    assert await lease.claim("b", claim(120.0)) is ClaimResult.NOT_HOLDER
    state = await lease.load_state()
    assert (state.anchor, state.last_slot, state.last_end) == (100.0, 110.0, None)


async def test_the_status_record_keeps_the_last_success_and_only_the_holder_writes(
    leases: RedisLeases, raw: Redis
) -> None:
    lease = leases.for_worker(W)
    token = await lease.acquire("a", 2)
    assert token is not None

    def record(outcome: str, end: float) -> RunRecord:
        return RunRecord(
            slot=end - 1,
            started_at=end - 0.5,
            ended_at=end,
            outcome=outcome,
            replica_id="r-a",
            fencing_token=token,
        )

    assert await lease.record_run("a", record("success", 200.0)) is True
    assert await lease.record_run("a", record("failure", 300.0)) is True
    assert await lease.record_run("b", record("success", 400.0)) is False
    status = {k.decode(): v.decode() for k, v in (await raw.hgetall(WorkerKeys(W).status)).items()}
    assert status["outcome"] == "failure"
    assert float(status["last_success_at"]) == 200.0
    assert float(status["ended_at"]) == 300.0
    assert status["replica_id"] == "r-a" and int(status["fencing_token"]) == token
    assert (await lease.load_state()).last_end == 300.0


async def test_every_key_of_a_worker_shares_one_hash_tag(leases: RedisLeases, raw: Redis) -> None:
    lease = leases.for_worker(W)
    token = await lease.acquire("a", 2)
    assert token is not None
    await lease.claim_slot(
        "a", SlotClaim(slot=1.0, anchor=0.0, token=token, replica_id="r", started_at=1.0)
    )
    keys = sorted(k.decode() for k in await raw.keys("*"))
    assert keys == [f"tickwork:{{{W}}}:{s}" for s in ("fence", "lease", "schedule", "status")]
