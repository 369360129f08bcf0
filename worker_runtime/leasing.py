"""``LeaseKeeper``: acquires, renews and releases one worker's lease on time, and does every
other call that only the holder may make (load the schedule state, claim a slot, record a run).

The backend does the I/O; the keeper owns the timing: every call has a timeout, a failed call
is counted (``tickwork_redis_errors_total``), logged (at most one line per operation every few
seconds for all of a manager's workers, however many fail: ``ErrorLog``) and retried after an
exponential backoff with jitter. A *term* is one continuous holding of the lease. It ends
when a renewal is refused (``stolen``), when no renewal was confirmed before the lease's
deadline (``expired``), or on release (``released``). The deadline of a term is
measured on the monotonic clock from *before* the renewal that set it was sent, minus a small
allowance for clock-rate drift, so the holder always gives up before Redis lets another
replica in.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from worker_runtime.leases import LeaseBackend, RunRecord, SlotClaim
from worker_runtime.metrics import Metrics, WorkerMetrics
from worker_runtime.outcomes import ClaimResult, LeaseLoss
from worker_runtime.rules import check_lease, default_renew_interval
from worker_runtime.scheduling import ScheduleState
from worker_runtime.waiting import wait_any

__all__ = ["ErrorLog", "LeaseKeeper", "LeaseTiming", "Term"]

T = TypeVar("T")

log = logging.getLogger(__name__)

# Redlock's allowance for clocks running at different rates: 1 % of the TTL plus 2 ms.
_DRIFT_FACTOR = 0.01
_DRIFT_FLOOR_SECONDS = 0.002
# A standby tries again this long after the holder's lease should have run out.
_EXPIRY_MARGIN_SECONDS = 0.002
# Backend failures are logged at most once per operation in this many seconds, per process.
_ERROR_LOG_INTERVAL_SECONDS = 5.0
# Early claims (``LeaseKeeper.claim_lead``): a slot is claimed this many recent claim round
# trips before it starts, at least the floor, at most the ceiling and a quarter of the period.
_EARLY_CLAIM_ROUND_TRIPS = 4.0
_EARLY_CLAIM_FLOOR_SECONDS = 0.005
_EARLY_CLAIM_CEILING_SECONDS = 0.25
# The weight of the newest claim round trip in the running average.
_ROUND_TRIP_WEIGHT = 0.3


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """TTL, renewal cadence and follower polling, validated together."""

    ttl_seconds: float = 15.0
    renew_interval_seconds: float | None = None
    #: How often a replica without the lease tries to take it.
    poll_interval_seconds: float | None = None
    #: Back-off bounds after backend errors (Redis down).
    backoff_min_seconds: float = 0.05
    backoff_max_seconds: float = 5.0

    def __post_init__(self) -> None:
        check_lease(self.ttl_seconds, self.renew_interval_seconds)

    @property
    def renew(self) -> float:
        if self.renew_interval_seconds is not None:
            return self.renew_interval_seconds
        return default_renew_interval(self.ttl_seconds)

    @property
    def drift_seconds(self) -> float:
        return self.ttl_seconds * _DRIFT_FACTOR + _DRIFT_FLOOR_SECONDS

    def poll(self, interval_hint: float) -> float:
        """How often a replica without the lease tries to take it when the backend cannot say
        how long the holder's lease has left (a set poll interval also caps that wait)."""
        if self.poll_interval_seconds is not None:
            return self.poll_interval_seconds
        return min(self.renew, max(0.05, interval_hint / 4))

    @property
    def op_timeout_seconds(self) -> float:
        """One backend call may take at most this long."""
        return max(0.1, min(self.renew / 2, 2.0))


@dataclass(slots=True, eq=False)
class Term:
    """One continuous holding of the lease."""

    token: int
    deadline: float  # loop.time() by which the lease must be renewed
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: LeaseLoss | None = None
    #: Set too when the term ends (a runner's wake-up event).
    watchers: list[asyncio.Event] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return not self.ended.is_set()


class ErrorLog:
    """Warnings without a storm: one line per kind per interval, with the number of the same
    kind (of every worker sharing it: a manager's workers) left out since the last line."""

    def __init__(self, interval_seconds: float = _ERROR_LOG_INTERVAL_SECONDS) -> None:
        self._interval = interval_seconds
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, op: str, worker: str, exc: BaseException, retry_in: float | None) -> None:
        """A failed backend call."""
        retry = "" if retry_in is None else f"; retrying in {retry_in:.2f}s"
        self.note(
            f"{op} failures",
            "lease %s for worker %r failed: %s%s",
            op,
            worker,
            _describe(exc),
            retry,
            logger=log,
        )

    def note(self, kind: str, message: str, *args: object, logger: logging.Logger = log) -> None:
        """Log ``message % args`` unless a ``kind`` line was logged within the interval."""
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        more = self._suppressed.pop(kind, 0)
        if more and last is not None:
            message += f" ({more} more {kind} in the last {now - last:.0f}s)"
        logger.warning(message, *args)


class LeaseKeeper:
    """Keeps one worker's lease: public methods check state, ``_do_*`` methods do the I/O.

    ``run()`` acquires and renews until ``stop()``; ``stop()`` lets an acquire or renewal in
    flight finish (an acquire whose script already ran in Redis must not be cancelled into a
    lease nobody releases), then releases whatever this keeper may hold. ``reset()`` makes a
    stopped keeper usable again (a runner restarted after a crash).
    """

    def __init__(
        self,
        backend: LeaseBackend,
        *,
        replica_id: str,
        timing: LeaseTiming,
        interval_hint: float,
        metrics: Metrics,
        worker_metrics: WorkerMetrics,
        error_log: ErrorLog | None = None,
    ) -> None:
        self.backend = backend
        self._errors = error_log if error_log is not None else ErrorLog()
        #: Rate-limited warnings shared by the manager's workers.
        self.warnings = self._errors
        self.timing = timing
        self.replica_id = replica_id
        #: Unique per keeper: a restarted replica with the same id is a different owner.
        self.owner = f"{replica_id}:{uuid.uuid4().hex[:12]}"
        self._interval_hint = interval_hint
        self._metrics = metrics
        self._wm = worker_metrics
        self._term: Term | None = None
        #: Set whenever a term starts; waiters clear it before checking ``term``.
        self.acquired = asyncio.Event()
        self._stopped = False
        self._wake = asyncio.Event()
        self._running = False
        self._run_done = asyncio.Event()
        self._run_done.set()
        #: True from the moment an acquire is sent until Redis says we hold nothing.
        self._maybe_holding = False
        self._healthy = True
        self._failures = 0
        self._retry_in = 0.0
        #: A running average of how long a claim took (loop seconds), for ``claim_lead``.
        self._claim_round_trip = 0.0

    @property
    def term(self) -> Term | None:
        return self._term if self._term is not None and self._term.active else None

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def healthy(self) -> bool:
        """False while the backend cannot be reached."""
        return self._healthy

    def reset(self) -> None:
        """Make a stopped keeper ready for another ``run()`` (a new session, same owner)."""
        if self._running:
            raise RuntimeError("the lease keeper is still running")
        self._stopped = False
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Acquire, renew, repeat — until ``stop()`` (or cancellation)."""
        if self._running:
            raise RuntimeError("the lease keeper is already running")
        self._running = True
        self._run_done.clear()
        try:
            await self._keep()
        finally:
            self._running = False
            self._run_done.set()

    async def _keep(self) -> None:
        loop = asyncio.get_running_loop()
        next_renew_at = 0.0
        while not self._stopped:
            term = self.term
            try:
                if term is None:
                    released = self.backend.release_signal()
                    if released is not None:
                        released.clear()  # before the acquire: a later release wakes us
                    sent_at = loop.time()
                    token, left = await self._do_acquire()
                    self._succeeded()
                    if token is None:
                        await self._stand_by(left, released)
                        continue
                    if self.stopped:
                        break  # acquired while stopping: stop() gives it back
                    self._start_term(token, sent_at)
                    next_renew_at = self._renewal_after(sent_at)
                    continue
                await self._sleep_until(term, next_renew_at)
                if not term.active or self.stopped:
                    continue
                sent_at = loop.time()
                renewed = await self._do_renew(term)
                self._succeeded()
                if renewed:
                    term.deadline = sent_at + self.timing.ttl_seconds - self.timing.drift_seconds
                    next_renew_at = self._renewal_after(sent_at)
                else:
                    self._maybe_holding = False
                    self._end_term(term, LeaseLoss.STOLEN)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the backend is unreachable or failed
                if term is not None:
                    # Retry the renewal soon, but never sleep past the term's deadline.
                    delay = self._failed("renewal", exc, retry=True, cap=self.timing.renew / 4)
                    next_renew_at = loop.time() + delay
                    self.check(term)
                else:
                    # No longer than a follower's poll, so the worker resumes within about
                    # one period once Redis answers again (a failover's new primary).
                    cap = self.timing.poll(self._interval_hint)
                    await self._sleep(self._failed("acquisition", exc, retry=True, cap=cap))

    async def stop(self) -> None:
        """Stop keeping the lease and release it if held (compare-and-delete).

        Bounded: an operation in flight gets its timeout, the release one more.
        """
        self._stopped = True
        self._wake.set()
        term = self._term
        if term is not None and term.active:
            self._end_term(term, LeaseLoss.RELEASED)
        if self._running:
            try:
                async with asyncio.timeout(self.timing.op_timeout_seconds * 2):
                    await self._run_done.wait()
            except TimeoutError:
                pass
        if not self._maybe_holding:
            return
        try:
            async with asyncio.timeout(self.timing.op_timeout_seconds * 2):
                await self._do_release()
            self._maybe_holding = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._errors.warn("release", self.backend.worker, exc, None)

    def check(self, term: Term) -> bool:
        """True while ``term`` is active and before its deadline; ends it when past."""
        if not term.active:
            return False
        if asyncio.get_running_loop().time() >= term.deadline:
            self._end_term(term, LeaseLoss.EXPIRED)
            return False
        return True

    def end(self, term: Term, reason: LeaseLoss) -> None:
        """End ``term`` now (the backend refused an operation only the holder may do)."""
        self._end_term(term, reason)

    # -- calls only the holder makes ---------------------------------------------------------

    async def load_state(self, term: Term, *, abort: asyncio.Event) -> ScheduleState | None:
        """The schedule state, retried with backoff; ``None`` once the term or ``abort`` ends."""
        while self.check(term) and not abort.is_set():
            try:
                state = await self._call("load", self.backend.load_state, self._budget(term))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._pause(term, abort, self._failed("load", exc, retry=True))
                continue
            self._succeeded()
            return state
        return None

    def claim_lead(self, term: Term, *, interval: float, starts_in: float) -> float:
        """How long before its start to claim a slot that starts ``starts_in`` seconds from
        now: 0 (claim at the start) unless the backend takes early claims and the term
        surely lasts past the start; else a few times what recent claims took (from when
        they were due to when their answer was taken up), so that neither the round trip
        nor the wait for the event loop is part of the run's lateness."""
        if not self.backend.early_claims:
            return 0.0
        lead = min(
            max(_EARLY_CLAIM_FLOOR_SECONDS, _EARLY_CLAIM_ROUND_TRIPS * self._claim_round_trip),
            _EARLY_CLAIM_CEILING_SECONDS,
            interval / 4,
        )
        # The term must outlive the start by an operation's timeout: a claim made while the
        # lease may run out before the slot could leave a claimed slot that nobody runs.
        left = term.deadline - asyncio.get_running_loop().time()
        if left < starts_in + self.timing.op_timeout_seconds:
            return 0.0
        return lead

    async def unclaim(self, claim: SlotClaim) -> bool:
        """Give back an early claim whose slot was not started (one attempt, bounded by an
        operation's timeout); False when it could not be undone."""
        try:
            undone = await self._call(
                "unclaim", lambda: self.backend.unclaim(claim), self.timing.op_timeout_seconds
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed("unclaim", exc, retry=False)
            return False
        return undone

    async def claim(
        self,
        term: Term,
        claim: SlotClaim,
        *,
        give_up_at: float,
        abort: asyncio.Event,
        planned_at: float | None = None,
    ) -> ClaimResult:
        """Claim one slot for ``term``; retried with backoff (a re-sent claim is safe) until
        ``give_up_at`` (loop time), the term's end or ``abort``. A first attempt that timed out
        is sent once more at once, even late: it may have been recorded (it then counts as
        ours), and a slow reply is no reason to skip a slot. ``planned_at`` (loop time): when
        the claim was due to be sent; how long it took from then (a runner woken late, among
        many workers whose slots fall together, included) sizes ``claim_lead``."""
        resend = True
        while True:
            if not self.check(term):
                return ClaimResult.NOT_HOLDER
            sent_at = asyncio.get_running_loop().time()
            try:
                result = await self._call(
                    "claim", lambda: self.backend.claim(self.owner, claim), self._budget(term)
                )
            except asyncio.CancelledError:
                raise
            except TimeoutError as exc:
                if resend and not abort.is_set():
                    resend = False
                    self._failed("claim", exc, retry=True)
                    continue
                if self._give_up(give_up_at, abort, exc):
                    return ClaimResult.UNCONFIRMED
            except Exception as exc:
                resend = False
                if self._give_up(give_up_at, abort, exc):
                    return ClaimResult.UNCONFIRMED
            else:
                self._succeeded()
                since = sent_at if planned_at is None else min(sent_at, planned_at)
                took = asyncio.get_running_loop().time() - since
                self._claim_round_trip += _ROUND_TRIP_WEIGHT * (took - self._claim_round_trip)
                if result is ClaimResult.NOT_HOLDER:
                    self._maybe_holding = False
                    self._end_term(term, LeaseLoss.STOLEN)
                return result
            now = asyncio.get_running_loop().time()
            await self._pause(term, abort, min(self._retry_in, give_up_at - now))

    def _give_up(self, give_up_at: float, abort: asyncio.Event, exc: Exception) -> bool:
        """Count a failed claim; True when it is not to be retried."""
        stop = asyncio.get_running_loop().time() >= give_up_at or abort.is_set()
        self._failed("claim", exc, retry=not stop)
        return stop

    async def record(self, term: Term, record: RunRecord, *, give_up_at: float) -> bool:
        """Store the run's record; retried with backoff until ``give_up_at`` or the term ends.
        False when it could not be stored (the next holder then counts from the run's start)."""
        while self.check(term):
            try:
                stored = await self._call(
                    "record",
                    lambda: self.backend.record_run(self.owner, record),
                    self._budget(term),
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                now = asyncio.get_running_loop().time()
                if now >= give_up_at:
                    self._failed("record", exc, retry=False)
                    return False
                delay = self._failed("record", exc, retry=True)
                await self._pause(term, None, min(delay, give_up_at - now))
                continue
            self._succeeded()
            if not stored:
                self._maybe_holding = False
                self._end_term(term, LeaseLoss.STOLEN)
            return stored
        await self._close_status(record)
        return False

    async def _close_status(self, record: RunRecord) -> None:
        """The term ended before the run's record: one try at the status alone (the backend
        fences it by the run's slot and token), so it does not read ``running`` for good."""
        try:
            await self._call(
                "record",
                lambda: self.backend.record_run(self.owner, record),
                self.timing.op_timeout_seconds,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the status stays 'running'; the next claim replaces it
            log.debug("closing the status of worker %r failed: %r", self.backend.worker, exc)

    # -- internals ---------------------------------------------------------------------------

    def _budget(self, term: Term) -> float:
        """One call's timeout: the usual one, but never past the term's deadline."""
        left = term.deadline - asyncio.get_running_loop().time()
        return max(0.0, min(self.timing.op_timeout_seconds, left))

    async def _call(self, op: str, call: Callable[[], Awaitable[T]], budget: float) -> T:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(budget):
                return await call()
        except Exception:
            self._metrics.redis_error(op)
            raise
        finally:
            self._metrics.lease_op(op).observe(loop.time() - started)

    def _succeeded(self) -> None:
        self._healthy = True
        self._failures = 0

    def _failed(
        self, op: str, exc: BaseException, *, retry: bool, cap: float | None = None
    ) -> float:
        """Count a failure in a row; the backoff before the next attempt (at most ``cap``)."""
        self._healthy = False
        self._failures += 1
        delay = self._backoff(self._failures)
        if cap is not None:
            delay = min(delay, cap)
        self._retry_in = delay
        self._errors.warn(op, self.backend.worker, exc, delay if retry else None)
        return delay

    async def _pause(self, term: Term, abort: asyncio.Event | None, delay: float) -> None:
        """Sleep ``delay`` before a retry; wake early when the term ends, on ``abort`` or stop."""
        events = [term.ended, self._wake] + ([abort] if abort is not None else [])
        await wait_any(events, within=min(delay, max(0.0, term.deadline - _now())))

    async def _sleep(self, delay: float) -> None:
        """Sleep ``delay``, waking early on ``stop()``."""
        try:
            async with asyncio.timeout(delay):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _start_term(self, token: int, sent_at: float) -> None:
        deadline = sent_at + self.timing.ttl_seconds - self.timing.drift_seconds
        self._term = Term(token=token, deadline=deadline)
        self._wm.lease_held.set(1)
        self._wm.fencing_token.set(token)
        self._wm.acquisitions.inc()
        log.info(
            "replica %s acquired the lease of worker %r (fencing token %d)",
            self.replica_id,
            self.backend.worker,
            token,
        )
        self.acquired.set()

    def _end_term(self, term: Term, reason: LeaseLoss) -> None:
        if not term.active:
            return
        term.end_reason = reason
        term.ended.set()
        for event in term.watchers:
            event.set()
        self._wm.lease_held.set(0)
        self._wm.losses[reason].inc()
        level = logging.INFO if reason is LeaseLoss.RELEASED else logging.WARNING
        log.log(
            level,
            "replica %s no longer holds the lease of worker %r (%s)",
            self.replica_id,
            self.backend.worker,
            reason,
        )

    async def _sleep_until(self, term: Term, when: float) -> None:
        """Sleep until ``when``, but wake (and end the term) at its deadline."""
        loop = asyncio.get_running_loop()
        wake = min(when, term.deadline)
        delay = wake - loop.time()
        if delay > 0:
            try:
                async with asyncio.timeout(delay):
                    await term.ended.wait()
            except TimeoutError:
                pass
        self.check(term)

    async def _stand_by(self, left: float | None, released: asyncio.Event | None) -> None:
        """Another replica holds the lease: wait until it can be taken. That is when the
        holder's lease runs out (``left``, as the backend said; the holder renews it meanwhile,
        so this costs about one call per TTL) or when the holder releases it (``released``),
        whichever comes first; without either, poll (``LeaseTiming.poll``)."""
        poll = self.timing.poll(self._interval_hint)
        if left is None:
            delay = self._jittered(poll)
        elif self.timing.poll_interval_seconds is not None:
            delay = min(poll, left + _EXPIRY_MARGIN_SECONDS)
        else:
            delay = left + _EXPIRY_MARGIN_SECONDS
        events = [self._wake] if released is None else [self._wake, released]
        await wait_any(events, within=delay)

    async def _do_acquire(self) -> tuple[int | None, float | None]:
        self._maybe_holding = True  # from here until Redis says otherwise
        token, left = await self._call(
            "acquire",
            lambda: self.backend.acquire_or_wait(self.owner, self.timing.ttl_seconds),
            self.timing.op_timeout_seconds,
        )
        if token is None:
            self._maybe_holding = False
        return token, left

    async def _do_renew(self, term: Term) -> bool:
        return await self._call(
            "renew",
            lambda: self.backend.renew(self.owner, self.timing.ttl_seconds),
            self._budget(term),
        )

    async def _do_release(self) -> None:
        await self._call(
            "release", lambda: self.backend.release(self.owner), self.timing.op_timeout_seconds
        )

    def _renewal_after(self, sent_at: float) -> float:
        """When to renew a lease confirmed by a call sent at ``sent_at``: at the latest one
        renew interval later, on a grid of renew intervals (of the loop's clock) that every
        keeper of the process shares — so their renewals fall in one event-loop turn and go
        out together (``RedisLeases`` sends them as one call)."""
        step = self.timing.renew
        return math.floor((sent_at + step) / step) * step

    def _backoff(self, failures: int) -> float:
        ceiling = min(
            self.timing.backoff_max_seconds,
            self.timing.backoff_min_seconds * 2 ** min(failures, 16),
        )
        return random.uniform(self.timing.backoff_min_seconds, ceiling)

    @staticmethod
    def _jittered(delay: float) -> float:
        return delay * random.uniform(0.8, 1.2)


def _now() -> float:
    return asyncio.get_running_loop().time()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
