"""The ``tickwork`` command: ``tickwork run MODULE:CLASS …`` and ``tickwork status``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import svcs
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from worker_runtime.config import (
    RuntimeSettings,
    current_env,
    duration_arg,
    env_name,
    metrics_port,
    parse_bool,
    read_password,
)
from worker_runtime.leases import InProcessLeases, LeaseProvider
from worker_runtime.leasing import LeaseTiming
from worker_runtime.loading import load_attribute, load_worker_class
from worker_runtime.logs import LOG_FORMATS, check_level, configure_logging
from worker_runtime.manager import ManagerOptions, WorkerManager
from worker_runtime.metrics import Metrics
from worker_runtime.scheduling import SCHEDULE_OPTIONS, Misfire, Mode
from worker_runtime.serving import HealthServer, LoopLagMonitor
from worker_runtime.version import __version__
from worker_runtime.worker import PeriodicWorker

__all__ = ["main"]

log = logging.getLogger(__name__)

EXIT_USAGE = 2

# (flag, help). Each flag is also read from TICKWORK_<FLAG> when not given.
_RUN_FLAGS: tuple[tuple[str, str], ...] = (
    ("--name", "the worker's name in logs, metrics and Redis keys (one worker only)"),
    ("--period", "override the schedule: run every PERIOD (500ms, 30s, 10m, 1h)"),
    ("--mode", "with --period: delay (after the previous run ended) or rate (fixed grid)"),
    ("--cron", "override the schedule: a five-field cron expression"),
    ("--timezone", "with --cron: an IANA time zone (default UTC)"),
    ("--run-on-start", "run the first slot at once (true/false)"),
    ("--timeout", "cancel a run after this long"),
    ("--jitter", "delay each start by a random amount up to this long"),
    ("--misfire", "missed slots: skip (default) or catch_up"),
    ("--misfire-grace", "with catch_up: how late a missed slot may still run"),
    ("--services", "MODULE:FUNCTION called with the svcs.Registry to register services"),
    ("--replica-id", "this replica's id (default: host name)"),
    ("--shutdown-grace", "how long in-flight ticks may finish after SIGTERM (default 30s)"),
    ("--log-format", "text (default) or json"),
    ("--log-level", "debug, info (default), warning, error"),
    ("--redis-url", "redis:// or rediss:// URL; without it the lease is in-process"),
    ("--redis-password-file", "read the Redis password from this file"),
    ("--lease-ttl", "how long a lease lives without renewal (default 15s)"),
    ("--lease-renew-interval", "how often the holder renews (default TTL/3; at most TTL/2)"),
    ("--metrics-port", "port for /metrics, /healthz, /readyz (default 9100; 0 disables)"),
    ("--metrics-host", "address to listen on (default 0.0.0.0)"),
)
_BOOL_FLAGS = ("--run-on-start",)


class UsageError(Exception):
    """A mistake in the command line or environment: one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tickwork", description="Run periodic background workers.")
    parser.add_argument("--version", action="version", version=f"tickwork {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = sub.add_parser("run", help="run workers until SIGTERM")
    run.add_argument("workers", nargs="+", metavar="MODULE:CLASS", help="workers to run")
    for flag, text in _RUN_FLAGS:
        extra: dict[str, Any] = {"nargs": "?", "const": "true"} if flag in _BOOL_FLAGS else {}
        run.add_argument(flag, default=None, help=f"{text} [env {env_name(flag)}]", **extra)
    status = sub.add_parser("status", help="print the status records stored in Redis")
    status.add_argument("worker", nargs="?", help="one worker's name (default: all)")
    status.add_argument("--redis-url", default=None, help="[env TICKWORK_REDIS_URL]")
    status.add_argument("--redis-password-file", default=None)
    status.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _value(args: argparse.Namespace, env: Mapping[str, str], flag: str) -> str | None:
    value = getattr(args, flag.replace("-", "_"))
    if value is None:
        value = env.get(env_name(flag))
    return value if value not in (None, "") else None


def _check_choice(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise UsageError(f"{what} {value!r} is not one of: {', '.join(allowed)}")
    return value


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> RuntimeSettings:
    """Flags win over ``TICKWORK_*`` variables, which win over defaults."""
    get: Callable[[str], str | None] = lambda flag: _value(args, env, flag)  # noqa: E731
    try:
        overrides: dict[str, object] = {}
        for key in SCHEDULE_OPTIONS:
            raw = get(key.replace("_", "-"))
            if raw is None:
                continue
            if key == "run_on_start":
                overrides[key] = parse_bool(raw, what="--run-on-start")
            elif key == "mode":
                overrides[key] = _check_choice(raw, [m.value for m in Mode], "mode")
            elif key == "misfire":
                overrides[key] = _check_choice(raw, [m.value for m in Misfire], "misfire policy")
            else:
                overrides[key] = raw
        if len(args.workers) > 1 and (overrides or get("name")):
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in overrides) or "--name"
            raise UsageError(f"{flags} apply only when one worker is run, not {len(args.workers)}")
        log_format = _check_choice(get("log-format") or "text", LOG_FORMATS, "log format")
        level = check_level(get("log-level") or "info")
        port_text = get("metrics-port")
        return RuntimeSettings(
            workers=tuple(args.workers),
            name=get("name"),
            schedule_overrides=overrides,
            services=get("services"),
            replica_id=get("replica-id") or RuntimeSettings(workers=()).replica_id,
            shutdown_grace_seconds=duration_arg(
                get("shutdown-grace") or "30s", what="shutdown grace"
            ),
            log_format=log_format,
            log_level=level,
            redis_url=get("redis-url"),
            redis_password=read_password(env, get("redis-password-file")),
            lease_ttl_seconds=duration_arg(get("lease-ttl") or "15s", what="lease TTL"),
            lease_renew_interval_seconds=_optional_duration(
                get("lease-renew-interval"), what="lease renew interval"
            ),
            metrics_host=get("metrics-host") or "0.0.0.0",
            metrics_port=metrics_port(port_text) if port_text is not None else 9100,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _optional_duration(text: str | None, *, what: str) -> float | None:
    return None if text is None else duration_arg(text, what=what)


def build_workers(settings: RuntimeSettings) -> list[PeriodicWorker]:
    """Import, configure and validate every worker before anything starts."""
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
            worker = cls(name=settings.name, schedule=schedule)
            worker.schedule  # noqa: B018 - raises when there is none
        except (ValueError, TypeError) as exc:
            message = str(exc)
            raise UsageError(
                message if spec in message else f"worker {spec!r}: {message}"
            ) from None
        workers.append(worker)
    names = [w.name for w in workers]
    for name in names:
        if names.count(name) > 1:
            raise UsageError(f"worker name {name!r} is used twice; each worker needs its own name")
    return workers


def load_services(spec: str | None) -> Callable[[svcs.Registry], Any] | None:
    if spec is None:
        return None
    try:
        func = load_attribute(spec, what="services")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not callable(func):
        raise UsageError(f"services {spec!r} is not callable")
    return func  # type: ignore[no-any-return]


def make_leases(settings: RuntimeSettings, metrics: Metrics, timing: LeaseTiming) -> LeaseProvider:
    if settings.redis_url is None:
        return InProcessLeases()
    from worker_runtime.redis_leases import RedisLeases

    return RedisLeases.from_url(
        settings.redis_url, password=settings.redis_password, timing=timing, metrics=metrics
    )


async def serve(settings: RuntimeSettings, workers: list[PeriodicWorker], services: Any) -> int:
    """Run until SIGTERM/SIGINT; the exit code."""
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    metrics = Metrics(registry)
    timing = settings.lease_timing()
    leases = make_leases(settings, metrics, timing)
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
        result = services(manager.services)
        if asyncio.iscoroutine(result):
            await result
    for worker in workers:
        await manager.add(worker)

    lag = LoopLagMonitor(metrics=metrics)

    async def live() -> tuple[bool, str]:
        return lag.healthy()

    async def ready() -> tuple[bool, str]:
        if not manager.running:
            return False, "not running"
        if not manager.leases_reachable:
            return False, f"lease backend {leases.description} unreachable"
        try:
            async with asyncio.timeout(1.0):
                await leases.ping()
        except Exception as exc:  # any failure means not ready
            return False, f"lease backend {leases.description} unreachable: {type(exc).__name__}"
        return True, "ok"

    server: HealthServer | None = None
    if settings.metrics_port:
        server = HealthServer(registry=registry, live=live, ready=ready)
        try:
            await server.start(settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            print(
                f"tickwork: error: cannot listen on {settings.metrics_host}:"
                f"{settings.metrics_port} for metrics: {exc.strerror}",
                file=sys.stderr,
            )
            await leases.aclose()
            return EXIT_USAGE
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, server.port)

    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        name = signal.Signals(signum).name
        if signals_seen == 1:
            log.info("%s received: shutting down gracefully", name)
            manager.stop()
        else:
            log.warning("%s received again: cancelling in-flight ticks now", name)
            manager.stop(grace_seconds=0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        async with asyncio.TaskGroup() as tg:
            lag_task = tg.create_task(lag.run(), name="loop-lag")
            try:
                await manager.run()
            finally:
                lag_task.cancel()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if server is not None:
            await server.close()
    return 0


def _run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = settings_from(args, env)
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    workers = build_workers(settings)
    services = load_services(settings.services)
    try:
        settings.lease_timing()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if settings.redis_url is not None:
        from worker_runtime.redis_leases import check_redis_url

        try:
            check_redis_url(settings.redis_url)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    disable_created_metrics()  # type: ignore[no-untyped-call]
    return asyncio.run(serve(settings, workers, services))


def _status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from worker_runtime.status import print_status

    url = args.redis_url or env.get(env_name("redis-url"))
    if not url:
        raise UsageError("tickwork status needs --redis-url or TICKWORK_REDIS_URL")
    try:
        password = read_password(env, args.redis_password_file)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    code: int = asyncio.run(
        print_status(url, password=password, worker=args.worker, as_json=args.json)
    )
    return code


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    environment = current_env() if env is None else env
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "run":
            return _run(args, environment)
        if args.command == "status":
            return _status(args, environment)
        parser.print_help()
        return EXIT_USAGE
    except UsageError as exc:
        print(f"tickwork: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def entrypoint() -> None:
    sys.exit(main())
