"""The ``tickwork`` command: ``tickwork run MODULE:CLASS …`` and ``tickwork status``.

This module parses and checks the command line and environment into a ``RuntimeSettings``;
``worker_runtime.process`` runs them.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import re
import socket
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

from worker_runtime.config import (
    RuntimeSettings,
    check_host,
    check_replica_id,
    current_env,
    duration_arg,
    env_name,
    metrics_port,
    parse_bool,
    read_password,
)
from worker_runtime.cron import CronExpression
from worker_runtime.durations import parse_duration
from worker_runtime.loading import check_spec
from worker_runtime.logs import LOG_FORMATS, check_level
from worker_runtime.redis_urls import check_redis_url
from worker_runtime.rules import check_lease, check_period, check_shutdown_grace, load_timezone
from worker_runtime.scheduling import SCHEDULE_OPTIONS, Misfire, Mode
from worker_runtime.version import __version__
from worker_runtime.worker import validate_worker_name

__all__ = ["main"]

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
    (
        "--redis-url",
        "redis://, rediss://, redis+sentinel://HOST:PORT,…/SERVICE or redis+cluster://HOST:PORT,… "
        "URL; without it the lease is in-process",
    ),
    ("--redis-password-file", "read the Redis password from this file"),
    (
        "--redis-durable-writes",
        "wait for a replica's acknowledgement of each acquire and claim (true/false; default: "
        "true with Sentinel, false otherwise)",
    ),
    ("--lease-ttl", "how long a lease lives without renewal (default 15s)"),
    ("--lease-renew-interval", "how often the holder renews (default TTL/3; at most TTL/2)"),
    ("--metrics-port", "port for /metrics, /healthz, /readyz (default 9100; 0 disables)"),
    ("--metrics-host", "address to listen on (default 0.0.0.0)"),
)
_BOOL_FLAGS = ("--run-on-start", "--redis-durable-writes")


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
    trigger = sub.add_parser(
        "trigger", help="ask the lease holder to run one extra slot now (Redis leases)"
    )
    trigger.add_argument(
        "worker",
        nargs="?",
        help="the worker's name (default: $TICKWORK_NAME; in a worker pod the "
        "BackgroundWorker's name works too)",
    )
    trigger.add_argument("--redis-url", default=None, help="[env TICKWORK_REDIS_URL]")
    trigger.add_argument("--redis-password-file", default=None)
    trigger.add_argument(
        "--wait",
        default="60s",
        help="wait this long for the run to end and print its outcome (0: do not wait)",
    )
    return parser


class _Inputs:
    """Where each setting came from: a flag wins over its ``TICKWORK_*`` variable."""

    def __init__(self, args: argparse.Namespace, env: Mapping[str, str]) -> None:
        self._args = args
        self._env = env

    def get(self, flag: str) -> str | None:
        value = getattr(self._args, flag.replace("-", "_"))
        if value is None:
            value = self._env.get(env_name(flag))
        return value if value not in (None, "") else None

    def source(self, flag: str) -> str:
        """The flag, or the variable, that gave the value: what an error must name."""
        if getattr(self._args, flag.replace("-", "_")) is None and self._env.get(env_name(flag)):
            return env_name(flag)
        return f"--{flag.lstrip('-')}"

    def parse(self, flag: str, parse: Callable[[str], _T], default: str | None = None) -> _T | None:
        """``parse(value)``; a ``ValueError`` becomes a one-line error naming the source."""
        raw = self.get(flag)
        if raw is None:
            if default is None:
                return None
            raw = default
        try:
            return parse(raw)
        except ValueError as exc:
            raise UsageError(f"{self.source(flag)}: {exc}") from None


_T = TypeVar("_T")


def _check_choice(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of: {', '.join(allowed)}")
    return value


def _schedule_override(key: str, raw: str, *, what: str) -> object:
    """Check one schedule flag on its own, so its error names it."""
    if key == "run_on_start":
        return parse_bool(raw, what=what)
    if key == "mode":
        return _check_choice(raw, [m.value for m in Mode], "mode")
    if key == "misfire":
        return _check_choice(raw, [m.value for m in Misfire], "misfire policy")
    if key == "cron":
        CronExpression.parse(raw)
    elif key == "timezone":
        load_timezone(raw)
    elif key == "period":
        check_period(parse_duration(raw, what="period"), text=repr(raw))
    else:
        parse_duration(raw, what=key.replace("_", " "))
    return raw


def _shutdown_grace(text: str) -> float:
    seconds = duration_arg(text, what="shutdown grace")
    check_shutdown_grace(seconds, text=text)
    return seconds


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> RuntimeSettings:
    """Flags win over ``TICKWORK_*`` variables, which win over defaults. Everything that can
    be checked without importing user code is checked here; a mistake is a ``UsageError``
    naming the flag (or variable) and the value."""
    inputs = _Inputs(args, env)
    overrides: dict[str, object] = {}
    for key in SCHEDULE_OPTIONS:
        flag = key.replace("_", "-")
        value = inputs.parse(flag, functools.partial(_schedule_override, key, what=flag))
        if value is not None:
            overrides[key] = value
    if len(args.workers) > 1 and (overrides or inputs.get("name")):
        given = [inputs.source(k.replace("_", "-")) for k in overrides] or [inputs.source("name")]
        verb = "applies" if len(given) == 1 else "apply"
        raise UsageError(
            f"{', '.join(given)} {verb} only when one worker is run, not {len(args.workers)}"
        )
    name = inputs.parse("name", validate_worker_name)
    log_format = inputs.parse(
        "log-format", lambda v: _check_choice(v, LOG_FORMATS, "log format"), "text"
    )
    level = inputs.parse("log-level", check_level, "info")
    ttl = inputs.parse("lease-ttl", lambda v: duration_arg(v, what="lease TTL"), "15s")
    renew = inputs.parse(
        "lease-renew-interval", lambda v: duration_arg(v, what="lease renew interval")
    )
    assert ttl is not None  # it has a default
    try:
        check_lease(
            ttl,
            renew,
            ttl_what=inputs.source("lease-ttl"),
            renew_what=inputs.source("lease-renew-interval"),
            ttl_text=inputs.get("lease-ttl"),
            renew_text=inputs.get("lease-renew-interval"),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    url_what = inputs.source("redis-url")
    redis_url = inputs.parse("redis-url", lambda v: check_redis_url(v, what=url_what))
    try:
        password = read_password(env, inputs.get("redis-password-file"))
    except ValueError as exc:
        raise UsageError(f"{inputs.source('redis-password-file')}: {exc}") from None
    durable_what = inputs.source("redis-durable-writes")
    durable = inputs.parse("redis-durable-writes", lambda v: parse_bool(v, what=durable_what))
    if durable is not None and redis_url is None:
        raise UsageError(f"{durable_what} needs --redis-url (the in-process lease has no replicas)")
    services = inputs.parse("services", lambda v: check_spec(v, what="services"))
    return RuntimeSettings(
        workers=tuple(args.workers),
        name=name,
        schedule_overrides=overrides,
        services=services,
        replica_id=inputs.parse("replica-id", check_replica_id, socket.gethostname()) or "",
        shutdown_grace_seconds=inputs.parse("shutdown-grace", _shutdown_grace, "30s") or 0.0,
        log_format=log_format or "text",
        log_level=level or "INFO",
        redis_url=redis_url,
        redis_password=password,
        redis_durable_writes=durable,
        lease_ttl_seconds=ttl,
        lease_renew_interval_seconds=renew,
        metrics_host=inputs.parse("metrics-host", check_host, "0.0.0.0") or "0.0.0.0",
        metrics_port=inputs.parse("metrics-port", metrics_port, "9100") or 0,
    )


def _run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from worker_runtime.process import StartupError, run

    settings = settings_from(args, env)
    try:
        return run(settings)
    except StartupError as exc:
        if settings.log_level == "DEBUG" and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        raise UsageError(str(exc)) from None


def _redis_of(command: str, inputs: _Inputs, env: Mapping[str, str]) -> tuple[str, str | None]:
    """The Redis URL and password of ``tickwork status`` / ``trigger`` (UsageError if bad)."""
    url_what = inputs.source("redis-url")
    url = inputs.parse("redis-url", lambda v: check_redis_url(v, what=url_what))
    if not url:
        raise UsageError(f"tickwork {command} needs --redis-url or TICKWORK_REDIS_URL")
    try:
        password = read_password(env, inputs.get("redis-password-file"))
    except ValueError as exc:
        raise UsageError(f"{inputs.source('redis-password-file')}: {exc}") from None
    return url, password


def _status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from worker_runtime.status import print_status

    url, password = _redis_of("status", _Inputs(args, env), env)
    code: int = asyncio.run(
        print_status(url, password=password, worker=args.worker, as_json=args.json)
    )
    return code


def trigger_target(given: str | None, env: Mapping[str, str]) -> str:
    """The worker ``tickwork trigger`` means: the given name, or ``$TICKWORK_NAME``; in a
    worker pod (``$TICKWORK_NAME`` is ``<namespace>.<name>``) the BackgroundWorker's bare name
    means that worker, so ``kubectl exec deploy/NAME -- tickwork trigger NAME`` works."""
    own = env.get(env_name("name")) or ""
    if given is None:
        if not own:
            raise UsageError("tickwork trigger needs a worker name (or TICKWORK_NAME)")
        return own
    if not given.strip():
        raise UsageError("worker name '' is empty; expected a worker's name")
    if own and "." in own and own.split(".", 1)[1] == given:
        return own
    return given


def _trigger(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from worker_runtime.triggering import run_trigger_command

    worker = trigger_target(args.worker, env)
    try:
        wait_seconds = parse_duration(args.wait, what="--wait") if args.wait != "0" else 0.0
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    url, password = _redis_of("trigger", _Inputs(args, env), env)
    code: int = asyncio.run(
        run_trigger_command(url, password=password, worker=worker, wait_seconds=wait_seconds)
    )
    return code


_NEGATIVE = re.compile(r"-[0-9.]")
_NO_VALUE_FLAGS = frozenset({"--help", "--version", "--json", *_BOOL_FLAGS})


def _negative_values_attached(argv: Sequence[str]) -> list[str]:
    """``--period -1s`` as ``--period=-1s``: argparse takes a value that starts with ``-``
    for a flag of its own ("expected one argument"), so the error would not name it."""
    out: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token.startswith("--") and "=" not in token and token not in _NO_VALUE_FLAGS:
            value = next(tokens, None)
            if value is not None and _NEGATIVE.match(value):
                out.append(f"{token}={value}")
                continue
            out.append(token)
            if value is not None:
                out.append(value)
            continue
        out.append(token)
    return out


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    environment = current_env() if env is None else env
    parser = build_parser()
    try:
        args = parser.parse_args(_negative_values_attached(sys.argv[1:] if argv is None else argv))
        if args.command == "run":
            return _run(args, environment)
        if args.command == "status":
            return _status(args, environment)
        if args.command == "trigger":
            return _trigger(args, environment)
        parser.print_help()
        return EXIT_USAGE
    except UsageError as exc:
        print(f"tickwork: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def entrypoint() -> None:
    sys.exit(main())
