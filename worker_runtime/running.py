"""``WorkerRunner``: runs one worker's slots while its replica holds the worker's lease."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import svcs

from worker_runtime.clocks import CLOCK_TOLERANCE_SECONDS
from worker_runtime.context import TickContext
from worker_runtime.durations import format_duration
from worker_runtime.leases import LeaseBackend, RunRecord, SlotClaim
from worker_runtime.leasing import LeaseKeeper, Term
from worker_runtime.metrics import WorkerMetrics
from worker_runtime.outcomes import ClaimResult, Outcome
from worker_runtime.scheduling import Misfire, Plan, ScheduleState, SkipReason, plan_next
from worker_runtime.triggering import ManualTrigger
from worker_runtime.waiting import Alarm, wait_any
from worker_runtime.worker import PeriodicWorker

__all__ = ["Shutdown", "WorkerRunner"]

log = logging.getLogger(__name__)
tick_log = logging.getLogger("tickwork.worker")

#: A run still going this long after its ``timeout`` cancelled it (its do_work caught the
#: cancellation and went on) is cancelled again, and again after as long, until it ends.
TIMEOUT_RECANCEL_SECONDS = 1.0


@dataclass(slots=True)
class Shutdown:
    """The manager's stop signal, shared by every runner."""

    requested: asyncio.Event
    grace_seconds: float
    deadline: float | None = None  # loop.time() after which in-flight ticks are cancelled
    #: Set too on every request (each runner's wake-up event).
    watchers: list[asyncio.Event] = field(default_factory=list)

    def request(self, *, grace_seconds: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        grace = self.grace_seconds if grace_seconds is None else grace_seconds
        deadline = loop.time() + grace
        self.deadline = deadline if self.deadline is None else min(self.deadline, deadline)
        self.requested.set()
        self._wake_all()
        # Once more when the grace runs out: the runners then cancel their ticks in flight.
        loop.call_at(self.deadline, self._wake_all)

    def _wake_all(self) -> None:
        for event in self.watchers:
            event.set()


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
        alarm: Alarm,
        manual: ManualTrigger | None = None,
    ) -> None:
        self.worker = worker
        #: Wakes the runner at its slots (the manager's, shared by its workers).
        self._alarm = alarm
        self.schedule = worker.schedule
        self._backend = backend
        self._keeper = keeper
        self._registry = registry
        self._wm = metrics
        self._replica_id = replica_id
        self._shutdown = shutdown
        self._clock = clock
        self._ticks = 0
        # One wake-up event, set when the term ends, on shutdown and when a run finishes, so
        # that waiting for "any of them, or a timeout" needs no helper tasks (per tick).
        self._wake = asyncio.Event()
        shutdown.watchers.append(self._wake)
        self._manual = manual
        if manual is not None:
            manual.wakes(self._wake)

    @property
    def keeper(self) -> LeaseKeeper:
        return self._keeper

    async def run(self) -> None:
        """Until shutdown: keep the lease, and lead while holding it. Releases at the end."""
        self._keeper.reset()  # a runner restarted after a crash starts a new keeper session
        async with asyncio.TaskGroup() as tg:
            keeper_task = tg.create_task(self._keeper.run(), name=f"lease:{self.worker.name}")
            try:
                await self._serve(tg)
            finally:
                # stop() waits for an acquire in flight and releases what it may have taken;
                # the cancel only reaches a keeper that has not started yet.
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

    async def _nap(self, term: Term, within: float) -> bool:
        """Sleep up to ``within``; True (at once) if the term ended or a shutdown began."""
        self._wake.clear()
        stopping = self._shutdown.requested
        if not term.active or stopping.is_set():
            return True
        if within > 0:
            await self._alarm.sleep_until(asyncio.get_running_loop().time() + within, self._wake)
        return not term.active or stopping.is_set()

    async def _lead(self, term: Term, tg: asyncio.TaskGroup) -> None:
        name = self.worker.name
        stopping = self._shutdown.requested
        term.watchers.append(self._wake)
        state = await self._keeper.load_state(term, abort=stopping)
        if state is None:
            return
        state = self._corrected(state)
        resumed = True
        while self._keeper.check(term) and not stopping.is_set():
            plan = plan_next(self.schedule, state, now=self._clock(), resumed=resumed)
            if plan.skipped and plan.skip_reason is not None:
                self._wm.skipped[plan.skip_reason].inc(plan.skipped)
                self._keeper.warnings.note(
                    f"{plan.skip_reason.value} skips",
                    "worker %r skipped %d slot(s) (%s)",
                    name,
                    plan.skipped,
                    plan.skip_reason.value,
                    logger=log,
                )
            jitter = (
                random.uniform(0, self.schedule.jitter_seconds)
                if self.schedule.jitter_seconds
                else 0.0
            )
            self._wm.next_scheduled.set(plan.slot)
            due = plan.slot + jitter
            # Claimed a little before its start on backends that can give a claim back (the
            # claim and the making of the tick then add nothing to the run's lateness).
            lead = self._keeper.claim_lead(
                term, interval=self.schedule.interval_seconds, starts_in=due - self._clock()
            )
            delay = due - lead - self._clock()
            # The keeper ends the term at its deadline if no renewal is confirmed by then.
            triggered = self._manual is not None and self._manual.pending
            if delay > 0 and not triggered and await self._nap(term, delay):
                return
            if not self._keeper.check(term):
                return
            # --- tickwork trigger hook (triggering.py): a renewal noticed a request.
            if self._manual is not None and self._manual.pending:
                ran = await self._run_manual(term, plan, tg)
                if ran is not None:
                    state, resumed = ran, False
                continue
            now = self._clock()
            if due - lead - now > CLOCK_TOLERANCE_SECONDS:
                continue  # woken early (by a trigger that was taken up meanwhile): not due
            planned = due - lead  # when the claim was due (a herd of workers wakes late)
            lead = max(0.0, min(lead, due - now))
            started_at = now + lead
            claim = SlotClaim(
                slot=plan.slot,
                anchor=plan.anchor,
                token=term.token,
                replica_id=self._replica_id,
                started_at=started_at,
                lead_seconds=lead,
            )
            result = await self._keeper.claim(
                term,
                claim,
                give_up_at=_now() + max(0.0, self._latest_start(plan.slot) - now),
                abort=stopping,
                planned_at=_now() - (now - planned),
            )
            if result is ClaimResult.NOT_HOLDER:
                return
            if result is ClaimResult.ALREADY_CLAIMED:
                self._keeper.warnings.note(
                    "slots already claimed",
                    "worker %r: slot %s was already claimed; not running it",
                    name,
                    _iso(plan.slot),
                    logger=log,
                )
                state = await self._keeper.load_state(term, abort=stopping)
                if state is None:
                    return
                state = self._corrected(state)
                resumed = True
                continue
            if result is ClaimResult.AHEAD_OF_SERVER:
                self._wm.clock_corrections.inc()
                log.warning(
                    "worker %r: slot %s lies ahead of the lease server's clock; not yet",
                    name,
                    _iso(plan.slot),
                )
                if await self._nap(term, CLOCK_TOLERANCE_SECONDS):
                    return
                continue
            if result is ClaimResult.UNCONFIRMED:
                if stopping.is_set():
                    return
                # The slot may or may not be recorded; not running it keeps "at most once".
                self._wm.skipped[SkipReason.MISFIRE].inc()
                self._keeper.warnings.note(
                    "unconfirmed claims",
                    "worker %r: slot %s could not be claimed in time; not running it",
                    name,
                    _iso(plan.slot),
                    logger=log,
                )
                state = ScheduleState(
                    anchor=plan.anchor, last_slot=plan.slot, last_end=state.last_end
                )
                resumed = True  # slots that passed meanwhile follow the misfire policy
                continue
            state = ScheduleState(anchor=plan.anchor, last_slot=plan.slot, last_end=state.last_end)
            ended_at = await self._run_tick(
                term, plan, jitter, started_at, tg, early=claim if lead > 0 else None
            )
            if ended_at is None:
                return  # claimed early, but the term ended or a shutdown began before the start
            state = ScheduleState(anchor=plan.anchor, last_slot=plan.slot, last_end=ended_at)
            resumed = False

    async def _give_back(self, claim: SlotClaim) -> None:
        """An early claim whose slot was not started (the term ended or a shutdown began
        before it): undo it, so that the next holder's misfire policy decides about the
        slot; if that fails, count the slot as missed."""
        if await self._keeper.unclaim(claim):
            return
        self._wm.skipped[SkipReason.MISFIRE].inc()
        log.warning(
            "worker %r: slot %s was claimed early but not started (%s) and could not be "
            "given back: it is not run",
            self.worker.name,
            _iso(claim.slot),
            "shutting down" if self._shutdown.requested.is_set() else "the lease was lost",
        )

    async def _run_manual(
        self, term: Term, plan: Plan, tg: asyncio.TaskGroup
    ) -> ScheduleState | None:
        """Claim and run the manual slot of a ``tickwork trigger`` (triggering.py); the new
        state, or ``None`` when there was nothing to run."""
        assert self._manual is not None
        try:
            async with asyncio.timeout(self._keeper.timing.op_timeout_seconds * 2):
                slot = await self._manual.claim(
                    owner=self._keeper.owner,
                    anchor=plan.anchor,
                    token=term.token,
                    replica_id=self._replica_id,
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # unconfirmed: not run ("at most once"), like any slot
            log.warning(
                "worker %r: the triggered run could not be claimed: %s", self.worker.name, exc
            )
            return None
        if slot is None:
            return None
        log.info("worker %r: running the triggered slot %s", self.worker.name, _iso(slot))
        manual = Plan(slot=slot, anchor=plan.anchor)
        ended_at = await self._run_tick(term, manual, 0.0, self._clock(), tg, manual=True)
        return ScheduleState(anchor=plan.anchor, last_slot=slot, last_end=ended_at)

    def _corrected(self, state: ScheduleState) -> ScheduleState:
        """The recorded state, with a last run ahead of the lease server's clock (claimed by a
        replica whose clock was ahead) moved back to now, so that no replica waits for it."""
        now = self._clock()
        limit = now + CLOCK_TOLERANCE_SECONDS
        ahead = [t for t in (state.last_slot, state.last_end) if t is not None and t > limit]
        if not ahead:
            return state
        self._wm.clock_corrections.inc()
        log.warning(
            "worker %r: the recorded last run (%s) lies %.1fs ahead of the lease server's "
            "clock (a replica with a wrong clock ran it); planning from now",
            self.worker.name,
            _iso(max(ahead)),
            max(ahead) - now,
        )
        return ScheduleState(
            anchor=state.anchor,
            last_slot=None if state.last_slot is None else min(state.last_slot, now),
            last_end=None if state.last_end is None else min(state.last_end, now),
        )

    def _latest_start(self, slot: float) -> float:
        """The latest wall-clock time a slot may still start: later it counts as missed."""
        schedule = self.schedule
        if schedule.misfire is Misfire.CATCH_UP:
            return slot + schedule.grace_seconds
        return slot + schedule.late_tolerance_seconds

    async def _run_tick(
        self,
        term: Term,
        plan: Plan,
        jitter: float,
        started_at: float,
        tg: asyncio.TaskGroup,
        *,
        manual: bool = False,
        early: SlotClaim | None = None,
    ) -> float | None:
        """Run one claimed slot, supervised, and record it; when it ended (wall clock).

        ``early``: the slot was claimed before its start (``started_at``). The tick is made
        ready now and its task itself waits for the start, so that the work begins on time
        however many workers start at that instant; ``None`` (nothing run, the claim given
        back) if the term ends or a shutdown begins before then."""
        self._ticks += 1
        number = self._ticks
        name = self.worker.name
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
        start = _Start()
        task = tg.create_task(
            self._execute(
                ctx,
                container,
                due=plan.slot + jitter,
                start=start,
                wait_until=started_at if early is not None else None,
            ),
            name=f"tick:{name}:{number}",
        )
        outcome = await self._supervise(task, term, ctx, start)
        if outcome is None:
            assert early is not None
            self._ticks -= 1
            await self._give_back(early)
            return None
        ended_at = self._clock()
        loop = asyncio.get_running_loop()
        duration = 0.0 if start.at is None else loop.time() - start.at
        self._wm.tick_finished(outcome, duration=duration, ended_at=ended_at)
        await self._record(term, plan, started_at, ended_at, outcome)
        if manual and self._manual is not None:
            await self._manual.finished(outcome)
        return ended_at

    async def _execute(
        self,
        ctx: TickContext,
        container: svcs.Container,
        *,
        due: float,
        start: _Start,
        wait_until: float | None,
    ) -> Outcome:
        timeout = self.schedule.timeout_seconds
        scope: asyncio.Timeout | None = None
        try:
            if wait_until is not None:
                await self._alarm.sleep_until(
                    asyncio.get_running_loop().time() + (wait_until - self._clock()),
                    asyncio.Event(),
                )
            loop = asyncio.get_running_loop()
            start.at = loop.time()
            if timeout is not None:
                # The supervisor looks again once the timeout has had time to end the run.
                start.overdue_at = start.at + timeout + TIMEOUT_RECANCEL_SECONDS
                start.alarm = loop.call_at(start.overdue_at, self._wake.set)
            self._wm.in_progress.inc()
            try:
                async with asyncio.timeout(timeout) as scope:
                    # Lateness as the work feels it: read where do_work starts, after the
                    # claim and the task switch (nothing in between yields to the loop).
                    self._wm.lateness.observe(max(0.0, self._clock() - due))
                    await self.worker.do_work(ctx)
            finally:
                self._wm.in_progress.dec()
        except TimeoutError:
            if scope is not None and scope.expired():
                ctx.logger.error(
                    "tick timed out after %s and was cancelled", format_duration(timeout or 0)
                )
                return Outcome.TIMEOUT
            ctx.logger.exception("tick failed")
            return Outcome.FAILURE
        except asyncio.CancelledError:
            raise
        except Exception:
            ctx.logger.exception("tick failed")
            return Outcome.FAILURE
        else:
            if scope is not None and scope.expired():
                # do_work caught the CancelledError of its timeout and returned anyway.
                ctx.logger.error(
                    "tick timed out after %s and swallowed its cancellation; "
                    "do_work must let CancelledError propagate",
                    format_duration(timeout or 0),
                )
                return Outcome.TIMEOUT
            return Outcome.SUCCESS
        finally:
            if start.alarm is not None:
                start.alarm.cancel()
            try:
                await container.aclose()
            except Exception:
                ctx.logger.exception("closing the tick's services failed")

    async def _supervise(
        self, task: asyncio.Task[Outcome], term: Term, ctx: TickContext, start: _Start
    ) -> Outcome | None:
        """Wait for the run; cancel it when the lease is lost or the shutdown grace runs out.
        ``None`` when it was cancelled before its work started (an early claim's tick that
        was waiting for its start when the term ended or a shutdown began)."""
        finished_at: list[float] = []
        wake = self._wake

        def on_done(_: object) -> None:
            finished_at.append(_now())
            wake.set()

        task.add_done_callback(on_done)
        cancelled_by_us = False
        timed_out = False  # cancelled again after its timeout: it counts as a timeout
        try:
            while not task.done():
                if not start.began() and (
                    self._shutdown.requested.is_set() or not self._keeper.check(term)
                ):
                    await self._cancelled(task, ctx, "tickwork: not started")
                    if not start.began():
                        return None
                    cancelled_by_us = True
                    break
                if self._shutdown.requested.is_set():
                    ctx.stopping.set()
                # Wakes when the run finishes, the term ends (the keeper ends it at its
                # deadline), a shutdown begins or its grace runs out (each sets the event
                # once; it is cleared before every wait, so no wait spins) — no timer per tick.
                wake.clear()
                if not task.done() and term.active and not self._grace_over():
                    await wake.wait()
                if task.done():
                    break
                if not start.began() and (
                    self._shutdown.requested.is_set() or not self._keeper.check(term)
                ):
                    continue  # not started: given back (above)
                if not self._keeper.check(term):
                    ctx.stopping.set()
                    ctx.logger.warning("the lease was lost: cancelling the tick")
                    cancelled_by_us = True
                    await self._cancelled(task, ctx, "tickwork: lease lost")
                    break
                if self._grace_over():
                    ctx.logger.warning("the shutdown grace period ran out: cancelling the tick")
                    cancelled_by_us = True
                    await self._cancelled(task, ctx, "tickwork: shutdown grace period ran out")
                    break
                if start.overdue_at is not None and _now() >= start.overdue_at:
                    self._cancel_again(task, ctx, start, first=not timed_out)
                    timed_out = True
        except asyncio.CancelledError:
            task.cancel()
            raise
        if timed_out and (task.cancelled() or not cancelled_by_us):
            return Outcome.TIMEOUT
        if task.cancelled() or cancelled_by_us:
            return Outcome.CANCELLED
        exc = task.exception()
        if exc is not None:  # only BaseExceptions other than Exception get here
            raise exc
        if finished_at and finished_at[0] > term.deadline:
            # The run ended after the lease's deadline and nothing could cancel it in time: it
            # kept the event loop busy (blocking code), so renewals and this supervisor could
            # not run. Another replica may have taken over meanwhile.
            self._keeper.check(term)
            ctx.logger.warning(
                "the tick ran %.1fs past the lease's deadline without yielding to the event "
                "loop (blocking code in do_work?); another replica may have run meanwhile",
                finished_at[0] - term.deadline,
            )
            return Outcome.LEASE_LOST
        return task.result()

    async def _cancelled(self, task: asyncio.Task[Outcome], ctx: TickContext, why: str) -> None:
        """Cancel the run and wait until it has ended, cancelling it again every
        ``TIMEOUT_RECANCEL_SECONDS`` while its do_work catches the cancellation and goes on."""
        task.cancel(why)
        attempts = 1
        while not (await asyncio.wait([task], timeout=TIMEOUT_RECANCEL_SECONDS))[0]:
            if attempts in (1, 10, 100, 1000) or attempts % 10_000 == 0:  # not once a second
                ctx.logger.error(
                    "tick still runs after %d cancellation(s) (%s): cancelling it again every "
                    "%s (do_work must let CancelledError propagate)",
                    attempts,
                    why.removeprefix("tickwork: "),
                    format_duration(TIMEOUT_RECANCEL_SECONDS),
                )
            attempts += 1
            task.cancel(why)

    def _cancel_again(
        self, task: asyncio.Task[Outcome], ctx: TickContext, start: _Start, *, first: bool
    ) -> None:
        """The run outlived its timeout's cancellation (do_work caught it and went on):
        cancel it again, and once more every ``TIMEOUT_RECANCEL_SECONDS`` until it ends."""
        if first:
            ctx.logger.error(
                "tick timed out after %s and went on after its cancellation; cancelling it "
                "again every %s until it ends (do_work must let CancelledError propagate)",
                format_duration(self.schedule.timeout_seconds or 0),
                format_duration(TIMEOUT_RECANCEL_SECONDS),
            )
        task.cancel("tickwork: timed out (again)")
        loop = asyncio.get_running_loop()
        start.overdue_at = loop.time() + TIMEOUT_RECANCEL_SECONDS
        start.alarm = loop.call_at(start.overdue_at, self._wake.set)

    def _grace_over(self) -> bool:
        deadline = self._shutdown.deadline
        return self._shutdown.requested.is_set() and deadline is not None and _now() >= deadline

    async def _record(
        self, term: Term, plan: Plan, started_at: float, ended_at: float, outcome: Outcome
    ) -> None:
        record = RunRecord(
            slot=plan.slot,
            started_at=started_at,
            ended_at=ended_at,
            outcome=outcome,
            replica_id=self._replica_id,
            fencing_token=term.token,
        )
        # Retried for up to one renew interval; a record that cannot be stored only means the
        # next holder counts the schedule from the run's start (its claim is recorded).
        await self._keeper.record(term, record, give_up_at=_now() + self._keeper.timing.renew)


@dataclass(slots=True)
class _Start:
    """When a tick's work started (loop time); ``None`` until it has."""

    at: float | None = None
    #: With a timeout: when the supervisor looks again whether the run has ended.
    overdue_at: float | None = None
    alarm: asyncio.TimerHandle | None = None

    def began(self) -> bool:
        return self.at is not None


def _now() -> float:
    return asyncio.get_running_loop().time()


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
