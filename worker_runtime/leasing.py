"""``LeaseKeeper``: acquires, renews and releases one worker's lease on time.

The backend does the I/O; the keeper owns the timing. A *term* is one continuous holding of
the lease. It ends when a renewal is refused (``stolen``), when no renewal was confirmed before
the lease's deadline (``expired``), or on release (``released``). The deadline of a term is
measured on the monotonic clock from *before* the renewal that set it was sent, minus a small
allowance for clock-rate drift, so the holder always gives up before Redis lets another
replica in.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from dataclasses import dataclass, field

from worker_runtime.leases import LeaseBackend
from worker_runtime.metrics import Metrics, WorkerMetrics
from worker_runtime.rules import check_lease, default_renew_interval

__all__ = ["LeaseKeeper", "LeaseTiming", "Term"]

log = logging.getLogger(__name__)

# Redlock's allowance for clocks running at different rates: 1 % of the TTL plus 2 ms.
_DRIFT_FACTOR = 0.01
_DRIFT_FLOOR_SECONDS = 0.002


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
        """Followers poll fast enough to take over within a fraction of the worker's period."""
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
    end_reason: str | None = None

    @property
    def active(self) -> bool:
        return not self.ended.is_set()


class LeaseKeeper:
    """Keeps one worker's lease: public methods check state, ``_do_*`` methods do the I/O."""

    def __init__(
        self,
        backend: LeaseBackend,
        *,
        replica_id: str,
        timing: LeaseTiming,
        interval_hint: float,
        metrics: Metrics,
        worker_metrics: WorkerMetrics,
    ) -> None:
        self.backend = backend
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
        self._healthy = True

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

    async def run(self) -> None:
        """Acquire, renew, repeat — until cancelled or ``stop()``."""
        loop = asyncio.get_running_loop()
        failures = 0
        next_renew_at = 0.0
        while not self._stopped:
            term = self.term
            try:
                if term is None:
                    sent_at = loop.time()
                    token = await self._do_acquire()
                    self._healthy = True
                    failures = 0
                    if token is not None and self.stopped:
                        await self._do_release()  # acquired while stopping: give it back
                        break
                    if token is not None:
                        self._start_term(token, sent_at)
                        next_renew_at = sent_at + self.timing.renew
                        continue
                    await asyncio.sleep(self._jittered(self.timing.poll(self._interval_hint)))
                    continue
                await self._sleep_until(term, next_renew_at)
                if not term.active or self.stopped:
                    continue
                sent_at = loop.time()
                renewed = await self._do_renew(term)
                self._healthy = True
                failures = 0
                if renewed:
                    term.deadline = sent_at + self.timing.ttl_seconds - self.timing.drift_seconds
                    next_renew_at = sent_at + self.timing.renew
                else:
                    self._end_term(term, "stolen")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the backend is unreachable or failed
                self._healthy = False
                failures += 1
                delay = self._backoff(failures)
                if term is not None:
                    # Retry the renewal soon, but never sleep past the term's deadline.
                    delay = min(delay, self.timing.renew / 4)
                log.warning(
                    "lease %s for worker %r failed: %s; retrying in %.2fs",
                    "renewal" if term else "acquisition",
                    self.backend.worker,
                    _describe(exc),
                    delay,
                )
                if term is not None:
                    next_renew_at = loop.time() + delay
                    self.check(term)
                else:
                    await asyncio.sleep(delay)

    async def stop(self) -> None:
        """Stop keeping the lease and release it if held (compare-and-delete)."""
        self._stopped = True
        term = self._term
        if term is not None and term.active:
            self._end_term(term, "released")
            try:
                async with asyncio.timeout(self.timing.op_timeout_seconds * 2):
                    await self._do_release()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "could not release the lease of worker %r: %s (it expires by itself)",
                    self.backend.worker,
                    _describe(exc),
                )

    def check(self, term: Term) -> bool:
        """True while ``term`` is active and before its deadline; ends it when past."""
        if not term.active:
            return False
        if asyncio.get_running_loop().time() >= term.deadline:
            self._end_term(term, "expired")
            return False
        return True

    def end(self, term: Term, reason: str) -> None:
        """End ``term`` now (the backend refused an operation only the holder may do)."""
        self._end_term(term, reason)

    def note_backend_error(self, op: str, exc: BaseException) -> None:
        """Count and log a failed backend call made on the keeper's behalf."""
        self._metrics.redis_error(op)
        log.warning("worker %r: %s failed: %s", self.backend.worker, op, _describe(exc))

    # -- internals ---------------------------------------------------------------------------

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

    def _end_term(self, term: Term, reason: str) -> None:
        if not term.active:
            return
        term.end_reason = reason
        term.ended.set()
        self._wm.lease_held.set(0)
        self._wm.losses[reason].inc()
        level = logging.INFO if reason == "released" else logging.WARNING
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

    async def _do_acquire(self) -> int | None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(self.timing.op_timeout_seconds):
                return await self.backend.acquire(self.owner, self.timing.ttl_seconds)
        except Exception:
            self._metrics.redis_error("acquire")
            raise
        finally:
            self._metrics.lease_ops["acquire"].observe(loop.time() - started)

    async def _do_renew(self, term: Term) -> bool:
        loop = asyncio.get_running_loop()
        started = loop.time()
        budget = min(self.timing.op_timeout_seconds, max(0.0, term.deadline - started))
        try:
            async with asyncio.timeout(budget):
                return await self.backend.renew(self.owner, self.timing.ttl_seconds)
        except Exception:
            self._metrics.redis_error("renew")
            raise
        finally:
            self._metrics.lease_ops["renew"].observe(loop.time() - started)

    async def _do_release(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await self.backend.release(self.owner)
        except Exception:
            self._metrics.redis_error("release")
            raise
        finally:
            self._metrics.lease_ops["release"].observe(loop.time() - started)

    def _backoff(self, failures: int) -> float:
        ceiling = min(
            self.timing.backoff_max_seconds,
            self.timing.backoff_min_seconds * 2 ** min(failures, 16),
        )
        return random.uniform(self.timing.backoff_min_seconds, ceiling)

    @staticmethod
    def _jittered(delay: float) -> float:
        return delay * random.uniform(0.8, 1.2)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
