"""The operator process: probes and metrics, leader election, then kopf and the resync loop.

1. Connect to the API server and check that the CRD is installed (a clear exit otherwise).
2. Serve ``/healthz``, ``/readyz`` and ``/metrics``.
3. Wait for the leader Lease (unless leader election is off). A follower only waits.
4. As the leader: run kopf's handlers and the periodic resync until SIGTERM/SIGINT, or until
   the Lease is lost; then exit (code 1 when leadership was lost, so the pod restarts as a
   follower).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Iterator

from prometheus_client import CollectorRegistry

from worker_operator.constants import CRD_NAME
from worker_operator.handlers import run_kopf
from worker_operator.kubeapi import ApiError, CredentialsError, KubeApi
from worker_operator.leadership import LeaderElector
from worker_operator.metrics import OperatorMetrics
from worker_operator.reconciling import Reconciler
from worker_operator.serving import Health, PortUnavailable, serve
from worker_operator.settings import OperatorSettings

__all__ = ["EXIT_BAD_SETTINGS", "EXIT_LOST_LEADERSHIP", "EXIT_NO_CRD", "EXIT_OK", "run"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_LOST_LEADERSHIP = 1
#: A setting the operator cannot start with (the port in use, an unreadable kubeconfig).
EXIT_BAD_SETTINGS = 2
EXIT_NO_CRD = 3


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _install_signal_handlers(stop: asyncio.Event) -> bool:
    """SIGINT/SIGTERM set ``stop``. Called again once kopf runs: kopf installs its own."""
    loop = asyncio.get_running_loop()
    try:
        for sig in _SIGNALS:
            loop.add_signal_handler(sig, stop.set)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
        return False
    return True


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    installed = _install_signal_handlers(stop)
    try:
        yield
    finally:
        if installed:
            loop = asyncio.get_running_loop()
            for sig in _SIGNALS:
                loop.remove_signal_handler(sig)


async def _unless_stopped(stop: asyncio.Event, work: Awaitable[None]) -> bool:
    """Run ``work`` until it finishes (True) or ``stop`` is set first (False)."""
    async with asyncio.TaskGroup() as group:
        worker = group.create_task(_as_coroutine(work))
        stopper = group.create_task(stop.wait())
        await asyncio.wait([worker, stopper], return_when=asyncio.FIRST_COMPLETED)
        finished = worker.done() and not worker.cancelled()
        worker.cancel()
        stopper.cancel()
    return finished


async def _as_coroutine(work: Awaitable[None]) -> None:
    await work


@contextlib.asynccontextmanager
async def _maybe_serve(
    settings: OperatorSettings, health: Health, registry: CollectorRegistry
) -> AsyncIterator[int | None]:
    if settings.http_port == 0:
        yield None
        return
    async with serve(
        host=settings.http_host, port=settings.http_port, health=health, registry=registry
    ) as port:
        log.info("serving /healthz, /readyz and /metrics on %s:%d", settings.http_host, port)
        yield port


async def run(
    settings: OperatorSettings,
    *,
    kubeconfig: str | None = None,
    stop: asyncio.Event | None = None,
    registry: CollectorRegistry | None = None,
) -> int:
    """Run until stopped; returns the process exit code."""
    stop = stop if stop is not None else asyncio.Event()
    registry = registry if registry is not None else CollectorRegistry()
    metrics = OperatorMetrics(registry)
    health = Health()
    with _stop_on_signals(stop):
        try:
            connected = await KubeApi.connect(kubeconfig=kubeconfig, metrics=metrics)
        except CredentialsError as exc:
            log.error("%s", exc)
            return EXIT_BAD_SETTINGS
        async with connected as api:
            try:
                served = await api.worker_kind_is_served()
            except ApiError as exc:
                log.error("cannot reach the Kubernetes API: %s", exc)
                return EXIT_NO_CRD
            if not served:
                log.error(
                    "the CRD %s is not installed; apply manifests/01-crd.yaml (or install the Helm "
                    "chart) first",
                    CRD_NAME,
                )
                return EXIT_NO_CRD
            async with contextlib.AsyncExitStack() as serving:
                try:
                    await serving.enter_async_context(_maybe_serve(settings, health, registry))
                except PortUnavailable as exc:
                    log.error("%s", exc)
                    return EXIT_BAD_SETTINGS
                return await _lead(settings, api=api, metrics=metrics, health=health, stop=stop)


async def _lead(
    settings: OperatorSettings,
    *,
    api: KubeApi,
    metrics: OperatorMetrics,
    health: Health,
    stop: asyncio.Event,
) -> int:
    elector: LeaderElector | None = None
    if settings.leader_election:
        elector = LeaderElector(
            api=api,
            namespace=settings.lease_namespace,
            name=settings.lease_name,
            identity=settings.identity,
            lease_duration_seconds=settings.lease_duration_seconds,
            renew_deadline_seconds=settings.renew_deadline_seconds,
            retry_period_seconds=settings.retry_period_seconds,
        )
        health.role, health.ready = "follower", False

        def contact(ok: bool) -> None:
            health.ready = ok

        if not await _unless_stopped(stop, elector.acquire(on_contact=contact)):
            health.role, health.ready = "stopping", False
            return EXIT_OK

    health.role = "leader"
    metrics.leader.set(1)
    reconciler = Reconciler(api=api, settings=settings, metrics=metrics)
    kopf_stop = asyncio.Event()
    kopf_ready = asyncio.Event()
    lost = False

    async def hold_leadership() -> None:
        nonlocal lost
        assert elector is not None
        await elector.hold()
        lost = True
        kopf_stop.set()

    async def mark_ready() -> None:
        await kopf_ready.wait()
        # kopf replaced our signal handlers with its own; a signal must stop everything in
        # order (the resync loop first), so it goes through ``stop`` again.
        _install_signal_handlers(stop)
        health.ready = True
        log.info(
            "reconciling BackgroundWorkers in %s",
            ", ".join(settings.namespaces) if settings.namespaces else "all namespaces",
        )

    async def relay_stop() -> None:
        await stop.wait()
        kopf_stop.set()

    try:
        async with asyncio.TaskGroup() as group:
            # Created before kopf starts: kopf's shutdown leaves pre-existing tasks alone.
            helpers = [
                group.create_task(reconciler.run_periodic(kopf_stop), name="resync"),
                group.create_task(mark_ready(), name="readiness"),
                group.create_task(relay_stop(), name="stop relay"),
            ]
            if elector is not None:
                helpers.append(group.create_task(hold_leadership(), name="leadership"))
            health.ready = False
            await run_kopf(reconciler, settings, stop_flag=kopf_stop, ready_flag=kopf_ready)
            # kopf returned: a stop request, a signal kopf caught itself, or lost leadership.
            kopf_stop.set()
            stop.set()
            for task in helpers:
                task.cancel()
    finally:
        health.role, health.ready = "stopping", False
        metrics.leader.set(0)
        if elector is not None and not lost:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(elector.release(), timeout=5)
    return EXIT_LOST_LEADERSHIP if lost else EXIT_OK
