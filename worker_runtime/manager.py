"""``WorkerManager`` (ABP's IBackgroundWorkerManager): runs every added worker until shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import svcs
from prometheus_client import CollectorRegistry

from worker_runtime.leases import InProcessLeases, LeaseProvider
from worker_runtime.leasing import ErrorLog, LeaseKeeper, LeaseTiming
from worker_runtime.metrics import Metrics
from worker_runtime.running import Shutdown, WorkerRunner
from worker_runtime.triggering import ManualTrigger
from worker_runtime.waiting import Alarm
from worker_runtime.worker import PeriodicWorker

__all__ = ["ManagerOptions", "WorkerManager"]

log = logging.getLogger(__name__)

# A runner that dies of a bug is restarted after this long (and the bug is logged).
_RESTART_DELAY_SECONDS = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagerOptions:
    replica_id: str
    shutdown_grace_seconds: float = 30.0
    lease: LeaseTiming = field(default_factory=LeaseTiming)


class WorkerManager:
    """Add workers (before or after ``run()`` starts); ``stop()`` ends them gracefully.

    ``run()`` owns one TaskGroup with a runner per worker. On ``stop()`` no new tick starts,
    in-flight ticks get ``shutdown_grace_seconds`` to finish (then they are cancelled), and
    every lease is released before ``run()`` returns.
    """

    def __init__(
        self,
        *,
        options: ManagerOptions,
        leases: LeaseProvider | None = None,
        registry: svcs.Registry | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.options = options
        self.leases = leases or InProcessLeases()
        self.services = registry or svcs.Registry()
        self.metrics = metrics or Metrics(CollectorRegistry())
        #: The wall clock slots are planned on: the lease server's unless one is given.
        self._clock = clock if clock is not None else self.leases.now
        self._runners: dict[str, WorkerRunner] = {}
        #: Backend failures of all workers share one rate-limited log (no per-worker storm).
        self._errors = ErrorLog()
        #: One thread wakes every worker at its slots (asyncio's timers run up to 1 ms late).
        self._alarm = Alarm()
        self._tg: asyncio.TaskGroup | None = None
        self._shutdown: Shutdown | None = None
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    @property
    def workers(self) -> list[PeriodicWorker]:
        return [runner.worker for runner in self._runners.values()]

    def runner(self, name: str) -> WorkerRunner:
        return self._runners[name]

    @property
    def leases_reachable(self) -> bool:
        """False while any worker's lease keeper cannot reach the backend."""
        return all(r.keeper.healthy for r in self._runners.values())

    async def add(self, worker: PeriodicWorker) -> None:
        """Register a worker; it starts at once if the manager is running."""
        schedule = worker.schedule  # raises a clear error when there is none
        if worker.name in self._runners:
            raise ValueError(f"a worker named {worker.name!r} was already added")
        if self._shutdown is not None and self._shutdown.requested.is_set():
            raise RuntimeError(f"cannot add worker {worker.name!r}: the manager is stopping")
        worker.register_services(self.services)
        shutdown = self._ensure_shutdown()
        backend = self.leases.for_worker(worker.name)
        wm = self.metrics.for_worker(worker.name)
        keeper = LeaseKeeper(
            backend,
            replica_id=self.options.replica_id,
            timing=self.options.lease,
            interval_hint=schedule.interval_seconds,
            metrics=self.metrics,
            worker_metrics=wm,
            error_log=self._errors,
        )
        runner = WorkerRunner(
            worker,
            backend=backend,
            keeper=keeper,
            registry=self.services,
            metrics=wm,
            replica_id=self.options.replica_id,
            shutdown=shutdown,
            clock=self._clock,
            # tickwork trigger (triggering.py): Redis leases only.
            manual=ManualTrigger.attach(
                self.leases, backend, worker=worker.name, registry=self.metrics.registry
            ),
            alarm=self._alarm,
        )
        self._runners[worker.name] = runner
        log.info("added worker %r: %s", worker.name, schedule.describe())
        if self._tg is not None:
            self._tg.create_task(self._guarded(runner), name=f"worker:{worker.name}")

    def stop(self, *, grace_seconds: float | None = None) -> None:
        """Begin a graceful stop (safe to call more than once; a second call can shorten it)."""
        shutdown = self._ensure_shutdown()
        if not shutdown.requested.is_set():
            log.info(
                "stopping: no new ticks; in-flight ticks get %.1fs",
                shutdown.grace_seconds if grace_seconds is None else grace_seconds,
            )
        shutdown.request(grace_seconds=grace_seconds)

    async def run(self) -> None:
        """Run every worker until ``stop()``; returns after all leases are released."""
        if self._running:
            raise RuntimeError("the manager is already running")
        shutdown = self._ensure_shutdown()
        self._running = True
        log.info(
            "replica %s running %d worker(s) with %s leases",
            self.options.replica_id,
            len(self._runners),
            self.leases.description,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for runner in self._runners.values():
                    tg.create_task(self._guarded(runner), name=f"worker:{runner.worker.name}")
                await shutdown.requested.wait()
        finally:
            self._tg = None
            self._running = False
            await self.services.aclose()
            await self.leases.aclose()
            self._alarm.close()
        log.info("all workers stopped")

    async def _guarded(self, runner: WorkerRunner) -> None:
        """Run a worker; a runner that crashes (a bug) is logged and restarted."""
        shutdown = self._ensure_shutdown()
        while True:
            try:
                await runner.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "worker %r crashed (a bug in tickwork); restarting", runner.worker.name
                )
                await asyncio.sleep(_RESTART_DELAY_SECONDS)
                continue
            if shutdown.requested.is_set():
                return
            log.error(
                "worker %r stopped without a shutdown (a bug); restarting", runner.worker.name
            )

    def _ensure_shutdown(self) -> Shutdown:
        if self._shutdown is None:
            self._shutdown = Shutdown(
                requested=asyncio.Event(), grace_seconds=self.options.shutdown_grace_seconds
            )
        return self._shutdown
