"""Leader election on a Lease: one leader, takeover after expiry, hand-over on release."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from worker_operator.kubeapi import ApiError, KubeApi
from worker_operator.leadership import LeaderElector


class FakeLeases:
    """coordination.k8s.io Leases with optimistic concurrency (resourceVersion)."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        lease = self.leases.get((namespace, name))
        return copy.deepcopy(lease) if lease else None

    async def create_lease(self, lease: dict[str, Any]) -> dict[str, Any]:
        key = (lease["metadata"]["namespace"], lease["metadata"]["name"])
        if key in self.leases:
            raise ApiError(409, "already exists")
        return self._store(key, lease)

    async def replace_lease(self, lease: dict[str, Any]) -> dict[str, Any]:
        key = (lease["metadata"]["namespace"], lease["metadata"]["name"])
        current = self.leases[key]
        if lease["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "the object has been modified")
        return self._store(key, lease)

    def _store(self, key: tuple[str, str], lease: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(lease)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.leases[key] = stored
        return copy.deepcopy(stored)

    def holder(self) -> str:
        return str(self.leases[("ops", "tickwork-operator")]["spec"]["holderIdentity"])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def elector(leases: FakeLeases, identity: str, clock: Clock) -> LeaderElector:
    return LeaderElector(
        api=cast(KubeApi, leases),
        namespace="ops",
        name="tickwork-operator",
        identity=identity,
        lease_duration_seconds=15,
        renew_deadline_seconds=10,
        retry_period_seconds=2,
        monotonic=clock,
        wall_clock=lambda: datetime(2026, 3, 1, tzinfo=UTC) + timedelta(seconds=clock.now),
    )


async def test_the_first_candidate_creates_the_lease_and_leads() -> None:
    leases, clock = FakeLeases(), Clock()
    first = elector(leases, "op-0", clock)

    assert await first.try_acquire_or_renew()
    assert first.leading
    assert leases.holder() == "op-0"
    assert leases.leases[("ops", "tickwork-operator")]["spec"]["leaseDurationSeconds"] == 15


async def test_a_second_candidate_waits_while_the_lease_is_renewed() -> None:
    leases, clock = FakeLeases(), Clock()
    first, second = elector(leases, "op-0", clock), elector(leases, "op-1", clock)
    await first.try_acquire_or_renew()

    for _ in range(10):
        clock.now += 5
        assert await first.try_acquire_or_renew()
        assert not await second.try_acquire_or_renew()

    assert leases.holder() == "op-0"
    assert not second.leading


async def test_a_silent_leader_is_replaced_after_the_lease_duration() -> None:
    leases, clock = FakeLeases(), Clock()
    first, second = elector(leases, "op-0", clock), elector(leases, "op-1", clock)
    await first.try_acquire_or_renew()
    assert not await second.try_acquire_or_renew()

    clock.now += 14
    assert not await second.try_acquire_or_renew()
    clock.now += 2
    assert await second.try_acquire_or_renew()

    lease = leases.leases[("ops", "tickwork-operator")]["spec"]
    assert leases.holder() == "op-1"
    assert lease["leaseTransitions"] == 1


async def test_a_released_lease_is_taken_at_once() -> None:
    leases, clock = FakeLeases(), Clock()
    first, second = elector(leases, "op-0", clock), elector(leases, "op-1", clock)
    await first.try_acquire_or_renew()
    assert not await second.try_acquire_or_renew()

    await first.release()

    assert await second.try_acquire_or_renew()
    assert leases.holder() == "op-1"
    assert not first.leading


async def test_a_lost_race_for_the_lease_is_not_leadership() -> None:
    leases, clock = FakeLeases(), Clock()
    first, second = elector(leases, "op-0", clock), elector(leases, "op-1", clock)
    await first.try_acquire_or_renew()
    assert not await second.try_acquire_or_renew()
    clock.now += 20
    stale = await leases.get_lease("ops", "tickwork-operator")
    assert await second.try_acquire_or_renew()

    assert stale is not None
    leases.leases[("ops", "tickwork-operator")]["metadata"]["resourceVersion"] = "other"
    assert not await first.try_acquire_or_renew()
    assert leases.holder() == "op-1"
