"""The runtime under controlled (virtual) time: schedules, errors, scopes, leases, shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import svcs
from prometheus_client import CollectorRegistry

from tests.support.virtual_time import START, VirtualTimeLoop, run_virtual
from worker_runtime import (
    InProcessLeases,
    LeaseTiming,
    ManagerOptions,
    Metrics,
    PeriodicWorker,
    TickContext,
    WorkerManager,
)
from worker_runtime.leases import LeaseBackend, RunRecord, SlotClaim
from worker_runtime.scheduling import ScheduleState


class Journal:
    """What the workers did, with virtual timestamps."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.contexts: list[TickContext] = []
        self.closed: list[int] = []


def make_manager(loop: VirtualTimeLoop, **options: Any) -> WorkerManager:
    return WorkerManager(
        options=ManagerOptions(
            replica_id="r1",
            shutdown_grace_seconds=options.pop("grace", 5.0),
            lease=LeaseTiming(ttl_seconds=options.pop("ttl", 15.0)),
        ),
        leases=options.pop("leases", None),
        metrics=Metrics(CollectorRegistry()),
        clock=loop.wall,
    )


async def run_for(manager: WorkerManager, seconds: float) -> None:
    async with asyncio.TaskGroup() as tg:
        tg.create_task(manager.run())
        await asyncio.sleep(seconds)
        manager.stop()


def sample(manager: WorkerManager, name: str, **labels: str) -> float:
    value = manager.metrics.registry.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} is not exported"
    return value


def recording_worker(
    journal: Journal, *, work_seconds: float = 0.0, fail_every: int = 0, **schedule: Any
) -> PeriodicWorker:
    attrs: dict[str, Any] = dict(schedule)

    async def do_work(self: PeriodicWorker, ctx: TickContext) -> None:
        loop = asyncio.get_running_loop()
        journal.starts.append(loop.time())
        journal.contexts.append(ctx)
        try:
            if work_seconds:
                await asyncio.sleep(work_seconds)
            if fail_every and ctx.tick % fail_every == 0:
                raise RuntimeError(f"tick {ctx.tick} failed on purpose")
        finally:
            journal.ends.append(loop.time())

    attrs["do_work"] = do_work
    cls = type("Recorder", (PeriodicWorker,), attrs)
    return cls()  # type: ignore[no-any-return]


def test_delay_mode_starts_each_run_one_period_after_the_previous_run_ended() -> None:
    journal = Journal()

    async def main(loop: VirtualTimeLoop) -> WorkerManager:
        manager = make_manager(loop)
        await manager.add(recording_worker(journal, work_seconds=0.3, period=1.0))
        await run_for(manager, 6.0)
        return manager

    manager = run_virtual(main)
    assert len(journal.starts) == 4
    gaps = [start - end for start, end in zip(journal.starts[1:], journal.ends, strict=False)]
    assert gaps == pytest.approx([1.0] * 3, abs=1e-6)
    assert sample(manager, "tickwork_ticks_total", worker="Recorder", outcome="success") == 4


def test_rate_mode_runs_on_a_grid_without_drift() -> None:
    journal = Journal()

    async def main(loop: VirtualTimeLoop) -> None:
        manager = make_manager(loop)
        await manager.add(recording_worker(journal, work_seconds=0.07, period=0.2, mode="rate"))
        await run_for(manager, 10.05)

    run_virtual(main)
    assert len(journal.starts) == 50
    first = journal.starts[0]
    offsets = [start - first - k * 0.2 for k, start in enumerate(journal.starts)]
    assert max(abs(o) for o in offsets) < 1e-6


def test_a_rate_slot_that_finds_the_previous_run_still_going_is_skipped_and_counted() -> None:
    journal = Journal()

    async def main(loop: VirtualTimeLoop) -> WorkerManager:
        manager = make_manager(loop)
        await manager.add(recording_worker(journal, work_seconds=2.5, period=1.0, mode="rate"))
        await run_for(manager, 10.5)
        return manager

    manager = run_virtual(main)
    # Slots at 1, 4, 7, 10 run; each run of 2.5 s swallows the next two slots.
    assert [round(s - journal.starts[0], 6) for s in journal.starts] == [0, 3, 6, 9]
    assert sample(manager, "tickwork_ticks_skipped_total", worker="Recorder", reason="overlap") == 6


def test_cron_schedules_fire_on_minute_boundaries_of_the_wall_clock() -> None:
    journal = Journal()

    async def main(loop: VirtualTimeLoop) -> None:
        manager = make_manager(loop)
        await manager.add(recording_worker(journal, cron="*/2 * * * *"))
        await run_for(manager, 7 * 60)

    run_virtual(main)
    walls = [START + s for s in journal.starts]
    assert [w % 120 for w in walls] == pytest.approx([0, 0, 0], abs=1e-6)
    assert len(walls) == 3


def test_an_exception_in_one_tick_is_logged_and_the_next_tick_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal = Journal()

    async def main(loop: VirtualTimeLoop) -> WorkerManager:
        manager = make_manager(loop)
        await manager.add(recording_worker(journal, period=1.0, mode="rate", fail_every=2))
        await run_for(manager, 6.5)
        return manager

    manager = run_virtual(main)
    assert [c.tick for c in journal.contexts] == [1, 2, 3, 4, 5, 6]
    assert sample(manager, "tickwork_ticks_total", worker="Recorder", outcome="failure") == 3
    assert sample(manager, "tickwork_ticks_total", worker="Recorder", outcome="success") == 3
    failures = [r for r in caplog.records if r.getMessage() == "tick failed"]
    assert len(failures) == 3
    assert failures[0].exc_info is not None and "tick 2 failed on purpose" in str(
        failures[0].exc_info[1]
    )
    assert (
        getattr(failures[0], "worker", None) == "Recorder"
        and getattr(failures[0], "tick", None) == 2
    )


class Resource:
    def __init__(self, events: list[str], n: int) -> None:
        self.events = events
        self.n = n


class ScopedWorker(PeriodicWorker):
    period = 1.0
    mode = "rate"
    timeout = 0.5
    events: list[str] = []

    def register_services(self, registry: svcs.Registry) -> None:
        counter = iter(range(1, 1000))

        def factory() -> Iterator[Resource]:
            n = next(counter)
            self.events.append(f"open {n}")
            yield Resource(self.events, n)
            self.events.append(f"close {n}")

        registry.register_factory(Resource, factory)

    async def do_work(self, ctx: TickContext) -> None:
        res = await ctx.services.aget(Resource)
        assert await ctx.services.aget(Resource) is res, "one instance per tick scope"
        self.events.append(f"use {res.n}")
        if ctx.tick == 2:
            raise ValueError("boom")
        if ctx.tick == 3:
            await asyncio.sleep(5)  # longer than the timeout


def test_the_per_tick_scope_is_closed_after_success_failure_and_timeout() -> None:
    ScopedWorker.events = []

    async def main(loop: VirtualTimeLoop) -> WorkerManager:
        manager = make_manager(loop)
        await manager.add(ScopedWorker())
        await run_for(manager, 3.5)
        return manager

    manager = run_virtual(main)
    assert ScopedWorker.events == [
        "open 1", "use 1", "close 1",
        "open 2", "use 2", "close 2",
        "open 3", "use 3", "close 3",
    ]  # fmt: skip
    for outcome in ("success", "failure", "timeout"):
        assert sample(manager, "tickwork_ticks_total", worker="ScopedWorker", outcome=outcome) == 1


def test_a_worker_added_while_the_manager_runs_starts_ticking() -> None:
    early, late = Journal(), Journal()

    async def main(loop: VirtualTimeLoop) -> None:
        manager = make_manager(loop)
        await manager.add(recording_worker(early, period=1.0, mode="rate"))
        async with asyncio.TaskGroup() as tg:
            tg.create_task(manager.run())
            await asyncio.sleep(2.5)
            second = recording_worker(late, period=1.0, mode="rate", run_on_start=True)
            second.name = "Late"
            await manager.add(second)
            await asyncio.sleep(2.25)  # stop between slots, not on one (a tie either way)
            manager.stop()

    run_virtual(main)
    assert len(early.starts) == 4
    assert [round(s, 6) for s in late.starts] == [2.5, 3.5, 4.5]


def test_shutdown_lets_an_in_flight_tick_finish_within_the_grace_period() -> None:
    journal = Journal()

    async def main(loop: VirtualTimeLoop) -> WorkerManager:
        manager = make_manager(loop, grace=5.0)
        await manager.add(
            recording_worker(journal, work_seconds=3.0, period=1.0, run_on_start=True)
        )
        await run_for(manager, 1.0)
        return manager

    manager = run_virtual(main)
    assert journal.ends == [3.0]
    assert sample(manager, "tickwork_ticks_total", worker="Recorder", outcome="success") == 1


def test_shutdown_cancels_a_tick_that_outlives_the_grace_period() -> None:
    journal = Journal()

    async def main(loop: VirtualTimeLoop) -> WorkerManager:
        manager = make_manager(loop, grace=2.0)
        await manager.add(
            recording_worker(journal, work_seconds=30.0, period=1.0, run_on_start=True)
        )
        await run_for(manager, 1.0)
        return manager

    manager = run_virtual(main)
    assert journal.ends == [pytest.approx(3.0)]
    assert journal.contexts[0].stopping.is_set()
    assert sample(manager, "tickwork_ticks_total", worker="Recorder", outcome="cancelled") == 1


class FlakyLeases(InProcessLeases):
    """In-process leases whose renewals can be refused, as if another replica took over."""

    refuse = False

    def for_worker(self, worker: str) -> LeaseBackend:
        backend = super().for_worker(worker)
        original = backend.renew
        provider = self

        async def renew(owner: str, ttl_seconds: float) -> bool:
            if provider.refuse:
                await backend.release(owner)
                return False
            return await original(owner, ttl_seconds)

        backend.renew = renew  # type: ignore[method-assign]
        return backend


def test_a_replica_that_loses_its_lease_cancels_the_running_tick_and_gets_a_new_token_later() -> (
    None
):
    journal = Journal()
    leases = FlakyLeases()

    async def main(loop: VirtualTimeLoop) -> WorkerManager:
        manager = make_manager(loop, leases=leases, ttl=3.0)
        await manager.add(
            recording_worker(journal, work_seconds=10.0, period=1.0, run_on_start=True)
        )
        async with asyncio.TaskGroup() as tg:
            tg.create_task(manager.run())
            await asyncio.sleep(0.5)
            leases.refuse = True  # the next renewal (at 1 s) is refused
            await asyncio.sleep(1.0)
            assert journal.ends == [pytest.approx(1.0)], "the tick is cancelled at the refusal"
            leases.refuse = False
            await asyncio.sleep(3.0)
            manager.stop(grace_seconds=0)
        return manager

    manager = run_virtual(main)
    tokens = [c.fencing_token for c in journal.contexts]
    assert len(tokens) == 2 and tokens[1] > tokens[0]
    assert sample(manager, "tickwork_ticks_total", worker="Recorder", outcome="cancelled") == 2
    assert sample(manager, "tickwork_lease_losses_total", worker="Recorder", reason="stolen") == 1
    assert sample(manager, "tickwork_lease_acquisitions_total", worker="Recorder") == 2


def test_metrics_describe_real_ticks() -> None:
    journal = Journal()

    async def main(loop: VirtualTimeLoop) -> WorkerManager:
        manager = make_manager(loop)
        await manager.add(recording_worker(journal, work_seconds=0.25, period=1.0, mode="rate"))
        await run_for(manager, 5.5)
        return manager

    manager = run_virtual(main)
    w = {"worker": "Recorder"}
    assert sample(manager, "tickwork_tick_duration_seconds_count", **w) == 5
    assert sample(manager, "tickwork_tick_duration_seconds_sum", **w) == pytest.approx(1.25)
    assert sample(manager, "tickwork_tick_duration_seconds_bucket", le="0.25", **w) == 5
    assert sample(manager, "tickwork_tick_duration_seconds_bucket", le="0.1", **w) == 0
    assert sample(manager, "tickwork_tick_lateness_seconds_count", **w) == 5
    assert sample(manager, "tickwork_tick_lateness_seconds_bucket", le="0.001", **w) == 5
    assert sample(manager, "tickwork_tick_last_success_timestamp_seconds", **w) == pytest.approx(
        START + 5.25
    )
    assert sample(manager, "tickwork_ticks_in_progress", **w) == 0
    assert sample(manager, "tickwork_lease_held", **w) == 0  # released at shutdown
    assert sample(manager, "tickwork_lease_losses_total", reason="released", **w) == 1
    assert sample(manager, "tickwork_lease_fencing_token", **w) == 1
    assert sample(manager, "tickwork_ticks_skipped_total", reason="misfire", **w) == 0


def test_adding_two_workers_with_one_name_is_refused() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        manager = make_manager(loop)
        await manager.add(recording_worker(Journal(), period=1.0))
        with pytest.raises(ValueError, match="'Recorder' was already added"):
            await manager.add(recording_worker(Journal(), period=1.0))

    run_virtual(main)


class SwallowingWorker(PeriodicWorker):
    """Catches the cancellation of its timeout and returns as if it had finished."""

    period = 10.0
    run_on_start = True
    timeout = 0.5

    async def do_work(self, ctx: TickContext) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            return


def test_a_tick_that_swallows_the_cancellation_of_its_timeout_counts_as_a_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main(loop: VirtualTimeLoop) -> WorkerManager:
        manager = make_manager(loop)
        await manager.add(SwallowingWorker())
        await run_for(manager, 1.0)
        return manager

    manager = run_virtual(main)
    w = {"worker": "SwallowingWorker"}
    assert sample(manager, "tickwork_ticks_total", outcome="timeout", **w) == 1
    assert sample(manager, "tickwork_ticks_total", outcome="success", **w) == 0
    assert any("swallowed its cancellation" in r.getMessage() for r in caplog.records)


class GoesOnWorker(PeriodicWorker):
    """Catches the cancellation of its timeout and goes on working (for up to 100 s)."""

    period = 1.0
    mode = "rate"
    run_on_start = True
    timeout = 0.5
    ended: ClassVar[list[float]] = []

    async def do_work(self, ctx: TickContext) -> None:
        try:
            await asyncio.sleep(50)
        except asyncio.CancelledError:
            if ctx.tick > 1:
                raise
        await asyncio.sleep(50)  # the first tick goes on after its timeout
        GoesOnWorker.ended.append(asyncio.get_running_loop().time())


def test_a_tick_that_goes_on_after_its_timeout_is_cancelled_again_and_counts_as_a_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main(loop: VirtualTimeLoop) -> WorkerManager:
        manager = make_manager(loop)
        await manager.add(GoesOnWorker())
        await run_for(manager, 4.2)
        return manager

    manager = run_virtual(main)
    w = {"worker": "GoesOnWorker"}
    # tick 1 caught its timeout at 0.5 s, was cancelled again at 1.5 s and ended then; the
    # slots at 2, 3 and 4 s ran and timed out as usual (the one at 1 s was an overlap)
    assert sample(manager, "tickwork_ticks_total", outcome="timeout", **w) == 4
    assert sample(manager, "tickwork_ticks_skipped_total", reason="overlap", **w) == 1
    assert sample(manager, "tickwork_ticks_total", outcome="success", **w) == 0
    assert sample(manager, "tickwork_ticks_in_progress", **w) == 0
    assert GoesOnWorker.ended == []
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert sum("went on after its cancellation" in m for m in said) == 1


class StubbornWorker(PeriodicWorker):
    """Catches every cancellation but the fourth."""

    period = 10.0
    run_on_start = True
    cancellations: ClassVar[int] = 0

    async def do_work(self, ctx: TickContext) -> None:
        while True:
            try:
                await asyncio.sleep(100)
            except asyncio.CancelledError:
                StubbornWorker.cancellations += 1
                if StubbornWorker.cancellations == 4:
                    raise


def test_a_tick_that_catches_its_cancellation_at_shutdown_is_cancelled_until_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main(loop: VirtualTimeLoop) -> tuple[WorkerManager, float]:
        manager = make_manager(loop, grace=1.0)
        await manager.add(StubbornWorker())
        await run_for(manager, 0.5)  # returns once the manager has stopped
        return manager, loop.time()

    manager, stopped_at = run_virtual(main)
    assert StubbornWorker.cancellations == 4
    # the grace of 1 s, then a cancellation a second until the fourth took
    assert stopped_at == pytest.approx(0.5 + 1.0 + 3 * 1.0, abs=0.05)
    w = {"worker": "StubbornWorker"}
    assert sample(manager, "tickwork_ticks_total", outcome="cancelled", **w) == 1
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("still runs after 1 cancellation(s) (shutdown grace period ran out)" in m
               for m in said)  # fmt: skip


class _ClaimSlotOnly(LeaseBackend):
    """A backend written against the older interface: ``claim_slot`` but no ``claim``."""

    def __init__(self, inner: LeaseBackend) -> None:
        self.worker = inner.worker
        self._inner = inner

    async def acquire(self, owner: str, ttl_seconds: float) -> int | None:
        return await self._inner.acquire(owner, ttl_seconds)

    async def renew(self, owner: str, ttl_seconds: float) -> bool:
        return await self._inner.renew(owner, ttl_seconds)

    async def release(self, owner: str) -> bool:
        return await self._inner.release(owner)

    async def load_state(self) -> ScheduleState:
        return await self._inner.load_state()

    async def claim_slot(self, owner: str, claim: SlotClaim) -> bool:
        return await self._inner.claim_slot(owner, claim)

    async def record_run(self, owner: str, record: RunRecord) -> bool:
        return await self._inner.record_run(owner, record)


class _OlderLeases(InProcessLeases):
    def for_worker(self, worker: str) -> LeaseBackend:
        return _ClaimSlotOnly(super().for_worker(worker))


def test_a_backend_that_implements_only_claim_slot_still_runs_every_slot() -> None:
    journal = Journal()

    async def main(loop: VirtualTimeLoop) -> WorkerManager:
        manager = make_manager(loop, leases=_OlderLeases())
        await manager.add(recording_worker(journal, period=1.0, mode="rate"))
        await run_for(manager, 5.5)
        return manager

    manager = run_virtual(main)
    assert len(journal.starts) == 5
    assert sample(manager, "tickwork_ticks_total", worker="Recorder", outcome="success") == 5
