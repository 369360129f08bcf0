"""Another operator's election is alive while its Lease changes (judged on our own clock)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from worker_operator.elections import ElectionWatch, parse_election
from worker_operator.kubeapi import Forbidden, KubeApi


class Leases:
    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.reads = 0
        self.error: Exception | None = None

    def renew(self, version: int, holder: str = "op-1") -> None:
        self.lease = {
            "metadata": {"resourceVersion": str(version)},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 4},
        }

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return self.lease


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def leases() -> Leases:
    return Leases()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def watch(leases: Leases, clock: Clock) -> ElectionWatch:
    return ElectionWatch(cast(KubeApi, leases), recheck_seconds=1.0, monotonic=clock)


async def test_a_lease_that_keeps_changing_is_alive(
    watch: ElectionWatch, leases: Leases, clock: Clock
) -> None:
    for version in range(1, 6):
        leases.renew(version)
        assert await watch.alive("ops/tickwork-operator")
        clock.now += 3


async def test_a_lease_unchanged_for_twice_its_duration_is_dead(
    watch: ElectionWatch, leases: Leases, clock: Clock
) -> None:
    leases.renew(1)
    assert await watch.alive("ops/tickwork-operator")
    clock.now += 7.9
    assert await watch.alive("ops/tickwork-operator")
    clock.now += 0.2
    assert not await watch.alive("ops/tickwork-operator")


async def test_a_released_or_missing_lease_is_dead(watch: ElectionWatch, leases: Leases) -> None:
    leases.renew(1, holder="")
    assert not await watch.alive("ops/a")
    leases.lease = None
    assert not await watch.alive("ops/b")


async def test_the_lease_is_read_at_most_once_per_recheck_interval(
    watch: ElectionWatch, leases: Leases, clock: Clock
) -> None:
    leases.renew(1)
    for _ in range(10):
        await watch.alive("ops/tickwork-operator")
        clock.now += 0.05

    assert leases.reads == 1


async def test_a_lease_that_cannot_be_read_counts_as_alive(
    watch: ElectionWatch, leases: Leases
) -> None:
    leases.error = Forbidden(403, "leases is forbidden")

    assert await watch.alive("ops/tickwork-operator")


@pytest.mark.parametrize("text", ["", "ops", "/name", "ops/", "a/b/c"])
def test_a_malformed_election_names_no_lease(text: str) -> None:
    assert parse_election(text) is None
