"""One ``tickwork run`` process: from validated ``RuntimeSettings`` to a clean exit.

The order is chosen so that every mistake is reported before anything has started and
before anything else is printed:

1. the metrics port is bound — a port in use is the first and only line;
2. logging is configured (text or JSON, the level);
3. user code runs: the worker modules are imported, each worker class is instantiated, the
   ``--services`` function is called, and each worker's ``register_services``. Whatever any
   of them raises (``SystemExit`` included) becomes one line naming the hook and the
   exception (``StartupError``); the traceback is printed only with ``--log-level debug``;
4. the workers start, until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import svcs
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from worker_runtime.config import RuntimeSettings
from worker_runtime.durations import format_duration
from worker_runtime.leases import InProcessLeases, LeaseProvider
from worker_runtime.leasing import LeaseTiming
from worker_runtime.loading import describe_exception, load_attribute, load_worker_class
from worker_runtime.logs import configure_logging
from worker_runtime.manager import ManagerOptions, WorkerManager
from worker_runtime.metrics import Metrics
from worker_runtime.rules import STOP_OVERRUN_SECONDS
from worker_runtime.serving import HealthServer, LoopLagMonitor
from worker_runtime.status import StatusDocument, render_status_document
from worker_runtime.worker import PeriodicWorker

__all__ = ["StartupError", "build_workers", "run"]

log = logging.getLogger(__name__)

Services = Callable[[svcs.Registry], Any]


class StartupError(Exception):
    """Something refused before any worker started: one line; ``__cause__`` is the detail."""


@contextmanager
def _user_code(what: str) -> Iterator[None]:
    """Turn anything user code raises into one ``StartupError`` line naming ``what``."""
    try:
        yield
    except StartupError:
        raise
    except (Exception, SystemExit) as exc:
        raise StartupError(f"{what} {describe_exception(exc)}") from exc


def build_workers(settings: RuntimeSettings) -> list[PeriodicWorker]:
    """Import, configure and instantiate every worker; ``StartupError`` names the problem."""
    workers: list[PeriodicWorker] = []
    for spec in settings.workers:
        try:
            cls = load_worker_class(spec)
            schedule = cls.class_schedule
            if settings.schedule_overrides:
                if schedule is None:
                    schedule = PeriodicWorker.schedule_from(dict(settings.schedule_overrides))
                else:
                    schedule = schedule.with_overrides(**settings.schedule_overrides)
        except (ValueError, TypeError) as exc:
            message = str(exc)
            raise StartupError(
                message if spec in message else f"worker {spec!r}: {message}"
            ) from exc
        try:
            with _user_code(f"worker {spec!r}: {cls.__name__}() raised"):
                worker = cls(name=settings.name, schedule=schedule)
            worker.schedule  # noqa: B018 - raises when there is none
        except ValueError as exc:  # a name or schedule the base class refused
            raise StartupError(f"worker {spec!r}: {exc}") from None
        workers.append(worker)
    names = [w.name for w in workers]
    for name in names:
        if names.count(name) > 1:
            raise StartupError(
                f"worker name {name!r} is used twice; each worker needs its own name"
            )
    return workers


def load_services(spec: str | None) -> Services | None:
    if spec is None:
        return None
    try:
        func = load_attribute(spec, what="services")
    except ValueError as exc:
        raise StartupError(str(exc)) from exc
    if not callable(func):
        raise StartupError(f"services {spec!r} is not callable")
    return func  # type: ignore[no-any-return]


def make_leases(settings: RuntimeSettings, metrics: Metrics, timing: LeaseTiming) -> LeaseProvider:
    if settings.redis_url is None:
        return InProcessLeases()
    from worker_runtime.redis_leases import RedisLeases

    return RedisLeases.from_url(
        settings.redis_url,
        password=settings.redis_password,
        timing=timing,
        metrics=metrics,
        durable_writes=settings.redis_durable_writes,
    )


def run(settings: RuntimeSettings) -> int:
    """Run until SIGTERM/SIGINT; the exit code. ``StartupError`` when refused at start."""
    disable_created_metrics()  # type: ignore[no-untyped-call]
    return asyncio.run(_serve(settings))


async def _serve(settings: RuntimeSettings) -> int:
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    metrics = Metrics(registry)
    timing = settings.lease_timing()
    lag = LoopLagMonitor(metrics=metrics)
    checks: dict[str, Callable[[], Awaitable[tuple[bool, str]]]] = {}

    async def live() -> tuple[bool, str]:
        return lag.healthy()

    async def ready() -> tuple[bool, str]:
        check = checks.get("ready")
        return await check() if check is not None else (False, "starting")

    documents: list[StatusDocument] = []

    async def status() -> bytes:
        if not documents:
            raise RuntimeError("the workers are starting")
        return render_status_document(await documents[0].build())

    server: HealthServer | None = None
    if settings.metrics_port:
        server = HealthServer(registry=registry, live=live, ready=ready, status=status)
        try:
            await server.start(settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {settings.metrics_host}:{settings.metrics_port} for "
                f"metrics: {os.strerror(exc.errno).lower() if exc.errno else exc}"
            ) from None
    # Only now: a refused port is the first and only line (asyncio's own debug line about
    # its selector, logged when the loop was made, is dropped with the rest).
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    try:
        workers = build_workers(settings)
        services = load_services(settings.services)
        leases = make_leases(settings, metrics, timing)
        try:
            manager = WorkerManager(
                options=ManagerOptions(
                    replica_id=settings.replica_id,
                    shutdown_grace_seconds=settings.shutdown_grace_seconds,
                    lease=timing,
                ),
                leases=leases,
                metrics=metrics,
            )
            if services is not None:
                with _user_code(f"services {settings.services!r} raised"):
                    result = services(manager.services)
                    if asyncio.iscoroutine(result):
                        await result
            for worker in workers:
                with _user_code(f"worker {worker.name!r}: register_services raised"):
                    await manager.add(worker)
        except BaseException:
            await leases.aclose()
            raise
        if server is not None:
            log.info("metrics on http://%s:%d/metrics", settings.metrics_host, server.port)

        async def ready_now() -> tuple[bool, str]:
            if not manager.running:
                return False, "not running"
            if not manager.leases_reachable:
                return False, f"lease backend {leases.description} unreachable"
            try:
                async with asyncio.timeout(1.0):
                    await leases.ping()
            except Exception as exc:  # any failure means not ready
                return (
                    False,
                    f"lease backend {leases.description} unreachable: {type(exc).__name__}",
                )
            return True, "ok"

        checks["ready"] = ready_now
        documents.append(
            StatusDocument(
                schedules={worker.name: worker.schedule for worker in workers},
                leases=leases,
                replica_id=settings.replica_id,
            )
        )
        _freeze_startup_objects()
        return await _until_signalled(manager, lag)
    finally:
        if server is not None:
            await server.close()


#: The collector's thresholds while the workers run (Python's defaults: 700, 10, 10).
GC_THRESHOLDS = (10_000, 20, 100)


def _freeze_startup_objects() -> None:
    """Move every object made so far (modules, workers, their runners, services) out of the
    garbage collector's sight. They live as long as the process, yet each full collection
    would walk them all: with 1,000 workers that was ~60 ms with the event loop stopped,
    several times a minute — late ticks. Objects made later (per tick) are collected as
    usual, less often: nearly all of a tick's garbage goes with its last reference, and
    with the default thresholds the collector took 3.2 s of 17.6 s of CPU (1,000 workers on
    Redis, 40 s), 1.0 s of 15.0 s with these."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


#: The exit code when the shutdown overran its grace by ``STOP_OVERRUN_SECONDS``.
EXIT_STOP_OVERRUN = 1


class StopWatchdog:
    """Ends the process if a shutdown takes ``STOP_OVERRUN_SECONDS`` past its grace.

    A thread of its own, so that it fires even while do_work blocks the event loop. It exits
    without releasing the leases (like a kill: they expire after their TTL, and no other
    replica may run while this one's work may still be running)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._deadline: float | None = None  # time.monotonic()
        # reentrant: arm() runs in a signal handler, which may interrupt arm() itself
        self._changed = threading.Condition(threading.RLock())
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float) -> None:
        """Exit unless ``disarm()`` comes within ``seconds`` (an earlier deadline wins)."""
        with self._changed:
            deadline = time.monotonic() + seconds
            self._deadline = deadline if self._deadline is None else min(deadline, self._deadline)
            self._changed.notify_all()
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="stop-watchdog", daemon=True)
            self._thread.start()

    def disarm(self) -> None:
        with self._changed:
            self._deadline = None
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        with self._changed:
            while self._deadline is not None:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            if self._deadline is None:
                return
        log.error(
            "the shutdown did not end %s after its grace ran out (still running: %s; a "
            "do_work that catches its cancellation and goes on, or blocks the event loop): "
            "exiting %d without releasing the leases (they expire after their TTL)",
            format_duration(STOP_OVERRUN_SECONDS),
            ", ".join(_ticks_running(self._loop)) or "?",
            EXIT_STOP_OVERRUN,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        os._exit(EXIT_STOP_OVERRUN)


def _ticks_running(loop: asyncio.AbstractEventLoop) -> list[str]:
    """The names of the tick tasks not done (read from another thread: best effort)."""
    try:
        tasks = asyncio.all_tasks(loop)
    except RuntimeError:
        return []
    return sorted(t.get_name() for t in tasks if t.get_name().startswith("tick:"))


async def _until_signalled(manager: WorkerManager, lag: LoopLagMonitor) -> int:
    loop = asyncio.get_running_loop()
    signals_seen = 0
    watchdog = StopWatchdog(loop)

    def on_signal(signum: int, seen: int) -> None:  # on the event loop
        name = signal.Signals(signum).name
        if seen == 1:
            log.info("%s received: shutting down gracefully", name)
            manager.stop()
        else:
            log.warning("%s received again: cancelling in-flight ticks now", name)
            manager.stop(grace_seconds=0)

    def handler(signum: int, _frame: object) -> None:
        # A Python-level handler (not loop.add_signal_handler): it runs, and arms the
        # watchdog, even while do_work blocks the event loop.
        nonlocal signals_seen
        signals_seen += 1
        grace = manager.options.shutdown_grace_seconds if signals_seen == 1 else 0.0
        watchdog.arm(grace + STOP_OVERRUN_SECONDS)
        loop.call_soon_threadsafe(on_signal, signum, signals_seen)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        async with asyncio.TaskGroup() as tg:
            lag_task = tg.create_task(lag.run(), name="loop-lag")
            try:
                await manager.run()
            finally:
                lag_task.cancel()
    finally:
        watchdog.disarm()
        for sig, before in previous.items():
            signal.signal(sig, before)
    return 0
