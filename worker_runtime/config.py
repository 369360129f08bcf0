"""``RuntimeSettings``: the runtime's configuration, built once from flags and environment."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from worker_runtime.durations import parse_duration
from worker_runtime.leasing import LeaseTiming

__all__ = ["ENV_PREFIX", "RuntimeSettings", "env_name", "parse_bool", "redact_url"]

ENV_PREFIX = "TICKWORK_"


def env_name(flag: str) -> str:
    """``--lease-ttl`` → ``TICKWORK_LEASE_TTL``."""
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def parse_bool(text: str, *, what: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{what} {text!r} is not a boolean (true/false)")


def redact_url(url: str) -> str:
    """The URL without its password, safe for logs and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}" if user else f":***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeSettings:
    """Everything ``tickwork run`` was told. Secrets are never part of ``repr``."""

    workers: tuple[str, ...]
    name: str | None = None
    schedule_overrides: Mapping[str, object] = field(default_factory=dict)
    services: str | None = None
    replica_id: str = field(default_factory=socket.gethostname)
    shutdown_grace_seconds: float = 30.0
    log_format: str = "text"
    log_level: str = "INFO"
    redis_url: str | None = field(default=None, repr=False)
    redis_password: str | None = field(default=None, repr=False)
    lease_ttl_seconds: float = 15.0
    lease_renew_interval_seconds: float | None = None
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9100

    def lease_timing(self) -> LeaseTiming:
        """Validated lease timing (``ValueError`` names the bad value)."""
        return LeaseTiming(
            ttl_seconds=self.lease_ttl_seconds,
            renew_interval_seconds=self.lease_renew_interval_seconds,
        )

    @property
    def redis_url_redacted(self) -> str | None:
        return redact_url(self.redis_url) if self.redis_url else None


def read_password(env: Mapping[str, str], password_file: str | None) -> str | None:
    """The Redis password from ``--redis-password-file`` or ``TICKWORK_REDIS_PASSWORD``."""
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as fh:
                return fh.read().strip() or None
        except OSError as exc:
            raise ValueError(
                f"redis password file {password_file!r} cannot be read: {exc.strerror}"
            ) from None
    return env.get(env_name("redis-password")) or None


def duration_arg(text: str, *, what: str) -> float:
    return parse_duration(text, what=what)


def metrics_port(text: str) -> int:
    if not text.strip().isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"metrics port {text!r} must be a number from 0 to 65535 (0 disables)")
    return int(text)


def current_env() -> Mapping[str, str]:
    return os.environ
