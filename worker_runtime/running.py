"""``WorkerRunner``: runs one worker's slots while its replica holds the worker's lease."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import svcs

from worker_runtime.context import TickContext
from worker_runtime.durations import format_duration
from worker_runtime.leases import LeaseBackend, RunRecord, SlotClaim
from worker_runtime.leasing import LeaseKeeper, Term
from worker_runtime.metrics import WorkerMetrics
from worker_runtime.scheduling import Plan, ScheduleState, SkipReason, plan_next
from worker_runtime.waiting import wait_any
from worker_runtime.worker import PeriodicWorker

__all__ = ["Shutdown", "WorkerRunner"]

log = logging.getLogger(__name__)
tick_log = logging.getLogger("tickwork.worker")


@dataclass(slots=True)
class Shutdown:
    """The manager's stop signal, shared by every runner."""

    requested: asyncio.Event
    grace_seconds: float
    deadline: float | None = None  # loop.time() after which in-flight ticks are cancelled

    def request(self, *, grace_seconds: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        grace = self.grace_seconds if grace_seconds is None else grace_seconds
        deadline = loop.time() + grace
        self.deadline = deadline if self.deadline is None else min(self.deadline, deadline)
        self.requested.set()


class WorkerRunner:
    """Plans slots, claims them, runs ``do_work`` and supervises the run."""

    def __init__(
        self,
        worker: PeriodicWorker,
        *,
        backend: LeaseBackend,
        keeper: LeaseKeeper,
        registry: svcs.Registry,
        metrics: WorkerMetrics,
        replica_id: str,
        shutdown: Shutdown,
        clock: Callable[[], float],
    ) -> None:
        self.worker = worker
        self.schedule = worker.schedule
        self._backend = backend
        self._keeper = keeper
        self._registry = registry
        self._wm = metrics
        self._replica_id = replica_id
        self._shutdown = shutdown
        self._clock = clock
        self._ticks = 0

    @property
    def keeper(self) -> LeaseKeeper:
        return self._keeper

    async def run(self) -> None:
        """Until shutdown: keep the lease, and lead while holding it. Releases at the end."""
        async with asyncio.TaskGroup() as tg:
            keeper_task = tg.create_task(self._keeper.run(), name=f"lease:{self.worker.name}")
            try:
                await self._serve(tg)
            finally:
                await self._keeper.stop()
                keeper_task.cancel()

    async def _serve(self, tg: asyncio.TaskGroup) -> None:
        interval = self.schedule.interval_seconds
        acquired = self._keeper.acquired
        while not self._shutdown.requested.is_set():
            acquired.clear()
            term = self._keeper.term
            if term is not None:
                await self._lead(term, tg)
                continue
            woke = await wait_any([acquired, self._shutdown.requested], within=interval)
            if not woke and self._keeper.healthy:
                # Another replica holds the lease: this slot is not ours to run.
                self._wm.skipped[SkipReason.NOT_LEADER].inc()

    async def _lead(self, term: Term, tg: asyncio.TaskGroup) -> None:
        name = self.worker.name
        state = await self._load_state(term)
        if state is None:
            return
        resumed = True
        while self._keeper.check(term) and not self._shutdown.requested.is_set():
            plan = plan_next(self.schedule, state, now=self._clock(), resumed=resumed)
            if plan.skipped and plan.skip_reason is not None:
                self._wm.skipped[plan.skip_reason].inc(plan.skipped)
                log.warning(
                    "worker %r skipped %d slot(s) (%s)", name, plan.skipped, plan.skip_reason.value
                )
            jitter = (
                random.uniform(0, self.schedule.jitter_seconds)
                if self.schedule.jitter_seconds
                else 0.0
            )
            self._wm.next_scheduled.set(plan.slot)
            delay = plan.slot + jitter - self._clock()
            # The keeper ends the term at its deadline if no renewal is confirmed by then.
            if delay > 0 and await wait_any([term.ended, self._shutdown.requested], within=delay):
                return
            if not self._keeper.check(term):
                return
            started_at = self._clock()
            if not await self._claim(term, plan, started_at):
                return
            state = ScheduleState(anchor=plan.anchor, last_slot=plan.slot, last_end=state.last_end)
            ended_at = await self._run_tick(term, plan, jitter, started_at, tg)
            state = ScheduleState(anchor=plan.anchor, last_slot=plan.slot, last_end=ended_at)
            resumed = False

    async def _load_state(self, term: Term) -> ScheduleState | None:
        while self._keeper.check(term):
            try:
                async with asyncio.timeout(self._keeper.timing.op_timeout_seconds):
                    return await self._backend.load_state()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._keeper.note_backend_error("load", exc)
                await wait_any([term.ended, self._shutdown.requested], within=0.2)
        return None

    async def _claim(self, term: Term, plan: Plan, started_at: float) -> bool:
        try:
            async with asyncio.timeout(
                max(0.0, min(self._keeper.timing.op_timeout_seconds, term.deadline - _now()))
            ):
                claim = SlotClaim(
                    slot=plan.slot,
                    anchor=plan.anchor,
                    token=term.token,
                    replica_id=self._replica_id,
                    started_at=started_at,
                )
                claimed = await self._backend.claim_slot(self._keeper.owner, claim)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._keeper.note_backend_error("claim", exc)
            # The slot may or may not be recorded; not running it keeps "at most once".
            self._wm.skipped[SkipReason.MISFIRE].inc()
            return False
        if not claimed:
            log.warning(
                "worker %r: the lease was lost before the slot could be claimed", self.worker.name
            )
            self._keeper.end(term, "stolen")
        return claimed

    async def _run_tick(
        self, term: Term, plan: Plan, jitter: float, started_at: float, tg: asyncio.TaskGroup
    ) -> float:
        self._ticks += 1
        number = self._ticks
        name = self.worker.name
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._wm.lateness.observe(max(0.0, started_at - (plan.slot + jitter)))
        self._wm.in_progress.inc()
        container = svcs.Container(self._registry)
        ctx = TickContext(
            worker=name,
            scheduled_at=datetime.fromtimestamp(plan.slot, UTC),
            tick=number,
            replica_id=self._replica_id,
            fencing_token=term.token,
            logger=logging.LoggerAdapter(
                tick_log, {"worker": name, "tick": number, "replica": self._replica_id}
            ),
            services=container,
        )
        task = tg.create_task(self._execute(ctx, container), name=f"tick:{name}:{number}")
        try:
            outcome = await self._supervise(task, term, ctx)
        finally:
            self._wm.in_progress.dec()
        ended_at = self._clock()
        self._wm.tick_finished(outcome, duration=loop.time() - started, ended_at=ended_at)
        await self._record(term, plan, started_at, ended_at, outcome)
        return ended_at

    async def _execute(self, ctx: TickContext, container: svcs.Container) -> str:
        timeout = self.schedule.timeout_seconds
        try:
            async with asyncio.timeout(timeout) as scope:
                await self.worker.do_work(ctx)
            return "success"
        except TimeoutError:
            if scope.expired():
                ctx.logger.error(
                    "tick timed out after %s and was cancelled", format_duration(timeout or 0)
                )
                return "timeout"
            ctx.logger.exception("tick failed")
            return "failure"
        except asyncio.CancelledError:
            raise
        except Exception:
            ctx.logger.exception("tick failed")
            return "failure"
        finally:
            try:
                await container.aclose()
            except Exception:
                ctx.logger.exception("closing the tick's services failed")

    async def _supervise(self, task: asyncio.Task[str], term: Term, ctx: TickContext) -> str:
        """Wait for the run; cancel it when the lease is lost or the shutdown grace runs out."""
        finished = asyncio.Event()
        task.add_done_callback(lambda _: finished.set())
        cancelled_by_us = False
        try:
            while not task.done():
                limit = term.deadline - _now()
                if self._shutdown.requested.is_set():
                    ctx.stopping.set()
                    if self._shutdown.deadline is not None:
                        limit = min(limit, self._shutdown.deadline - _now())
                events = [finished, term.ended]
                if not self._shutdown.requested.is_set():
                    events.append(self._shutdown.requested)
                await wait_any(events, within=max(0.0, limit))
                if task.done():
                    break
                if not self._keeper.check(term):
                    ctx.stopping.set()
                    ctx.logger.warning("the lease was lost: cancelling the tick")
                    cancelled_by_us = True
                    task.cancel("tickwork: lease lost")
                    await asyncio.wait([task])
                    break
                if (
                    self._shutdown.requested.is_set()
                    and self._shutdown.deadline is not None
                    and _now() >= self._shutdown.deadline
                ):
                    ctx.logger.warning("the shutdown grace period ran out: cancelling the tick")
                    cancelled_by_us = True
                    task.cancel("tickwork: shutdown grace period ran out")
                    await asyncio.wait([task])
                    break
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.cancelled() or cancelled_by_us:
            return "cancelled"
        exc = task.exception()
        if exc is not None:  # only BaseExceptions other than Exception get here
            raise exc
        return task.result()

    async def _record(
        self, term: Term, plan: Plan, started_at: float, ended_at: float, outcome: str
    ) -> None:
        record = RunRecord(
            slot=plan.slot,
            started_at=started_at,
            ended_at=ended_at,
            outcome=outcome,
            replica_id=self._replica_id,
            fencing_token=term.token,
        )
        try:
            async with asyncio.timeout(self._keeper.timing.op_timeout_seconds):
                await self._backend.record_run(self._keeper.owner, record)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._keeper.note_backend_error("record", exc)


def _now() -> float:
    return asyncio.get_running_loop().time()
