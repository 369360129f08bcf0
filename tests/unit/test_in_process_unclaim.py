"""In-process leases give an early claim back like Redis does (the runner relies on it)."""

from __future__ import annotations

from worker_runtime.leases import InProcessLeases, RunRecord, SlotClaim
from worker_runtime.outcomes import ClaimResult, Outcome


def _claim(slot: float, token: int, *, lead: float = 0.0) -> SlotClaim:
    return SlotClaim(
        slot=slot, anchor=0.0, token=token, replica_id="r", started_at=slot, lead_seconds=lead
    )


async def test_an_early_claim_given_back_leaves_the_state_and_record_of_before_it() -> None:
    leases = InProcessLeases()
    lease = leases.for_worker("w")
    token = await lease.acquire("a", 10)
    assert token is not None
    assert await lease.claim("a", _claim(1.0, token)) is ClaimResult.CLAIMED
    done = RunRecord(
        slot=1.0, started_at=1.0, ended_at=1.5, outcome=Outcome.SUCCESS, replica_id="r",
        fencing_token=token,
    )  # fmt: skip
    assert await lease.record_run("a", done)
    state, record = await lease.load_state(), leases.record("w")
    early = _claim(2.0, token, lead=0.01)
    assert await lease.claim("a", early) is ClaimResult.CLAIMED
    assert leases.record("w") is not None and leases.record("w").outcome == Outcome.RUNNING
    assert await lease.unclaim(_claim(2.0, token + 1, lead=0.01)) is False
    assert await lease.unclaim(early) is True
    assert (await lease.load_state(), leases.record("w")) == (state, record)
    assert await lease.unclaim(early) is False
    # Given back, the slot can be claimed again (by this holder or the next).
    assert await lease.claim("a", early) is ClaimResult.CLAIMED


async def test_a_claim_made_at_the_start_cannot_be_given_back() -> None:
    leases = InProcessLeases()
    lease = leases.for_worker("w")
    token = await lease.acquire("a", 10)
    assert token is not None
    at_start = _claim(1.0, token)
    assert await lease.claim("a", at_start) is ClaimResult.CLAIMED
    assert await lease.unclaim(at_start) is False
    assert (await lease.load_state()).last_slot == 1.0


async def test_a_run_whose_lease_ended_still_closes_its_own_status_and_nothing_else() -> None:
    leases = InProcessLeases()
    lease = leases.for_worker("w")
    token = await lease.acquire("a", 10)
    assert token is not None
    assert await lease.claim("a", _claim(1.0, token)) is ClaimResult.CLAIMED
    assert await lease.release("a")
    state = await lease.load_state()
    lost = RunRecord(
        slot=1.0, started_at=1.0, ended_at=4.0, outcome=Outcome.LEASE_LOST, replica_id="r",
        fencing_token=token,
    )  # fmt: skip
    assert await lease.record_run("a", lost) is False
    record = leases.record("w")
    assert record is not None
    assert (record.outcome, record.ended_at) == (Outcome.LEASE_LOST, 4.0)
    assert await lease.load_state() == state  # the schedule stays the holder's alone
    # Once the next holder has claimed, a late record of the old run changes nothing.
    other = await lease.acquire("b", 10)
    assert other is not None
    assert await lease.claim("b", _claim(2.0, other)) is ClaimResult.CLAIMED
    assert await lease.record_run("a", lost) is False
    record = leases.record("w")
    assert record is not None and (record.slot, record.outcome) == (2.0, Outcome.RUNNING)
