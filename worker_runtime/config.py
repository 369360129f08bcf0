"""``RuntimeSettings``: the runtime's configuration, built once from flags and environment."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from worker_runtime.durations import parse_duration
from worker_runtime.leasing import LeaseTiming
from worker_runtime.redis_urls import redact_url

__all__ = [
    "ENV_PREFIX",
    "RuntimeSettings",
    "check_host",
    "check_replica_id",
    "env_name",
    "metrics_port",
    "parse_bool",
    "read_password",
    "redact_url",
]

ENV_PREFIX = "TICKWORK_"


def env_name(flag: str) -> str:
    """``--lease-ttl`` → ``TICKWORK_LEASE_TTL``."""
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def parse_bool(text: str, *, what: str) -> bool:
    lowered = text.strip(" \t").lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{what} {text!r} is not a boolean (true/false)")


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
    #: Wait for a replica after acquire and claim; ``None``: the deployment's default.
    redis_durable_writes: bool | None = None
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


#: A password file larger than this is not a password (``/dev/zero`` would never end).
MAX_PASSWORD_FILE_BYTES = 64 * 1024
_PORT = re.compile(r"[0-9]{1,5}")
_MAX_REPLICA_ID = 253


def _check_password(password: str, *, source: str) -> str | None:
    if any(not ch.isprintable() for ch in password):
        raise ValueError(f"the redis password from {source} contains a control character")
    return password or None


def read_password(env: Mapping[str, str], password_file: str | None) -> str | None:
    """The Redis password from ``--redis-password-file`` or ``TICKWORK_REDIS_PASSWORD``.

    Errors name the file, never a byte of its content.
    """
    if password_file:
        try:
            with open(password_file, "rb") as fh:
                data = fh.read(MAX_PASSWORD_FILE_BYTES + 1)
        except OSError as exc:
            raise ValueError(
                f"redis password file {password_file!r} cannot be read: {exc.strerror}"
            ) from None
        if len(data) > MAX_PASSWORD_FILE_BYTES:
            raise ValueError(
                f"redis password file {password_file!r} is larger than "
                f"{MAX_PASSWORD_FILE_BYTES // 1024} KiB; it should hold only the password"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"redis password file {password_file!r} is not UTF-8 text") from None
        return _check_password(text.strip(), source=f"redis password file {password_file!r}")
    name = env_name("redis-password")
    return _check_password(env.get(name) or "", source=name)


def duration_arg(text: str, *, what: str) -> float:
    return parse_duration(text, what=what)


def metrics_port(text: str) -> int:
    """ASCII digits only: ``str.isdigit`` would accept ``²`` and ``٣``."""
    if not _PORT.fullmatch(text) or not 0 <= int(text) <= 65535:
        raise ValueError(f"metrics port {text!r} must be a number from 0 to 65535 (0 disables)")
    return int(text)


def check_replica_id(text: str) -> str:
    """A replica id lands in every log line and in Redis: printable ASCII, no spaces."""
    if (
        not text
        or len(text) > _MAX_REPLICA_ID
        or not text.isascii()
        or not text.isprintable()
        or any(ch.isspace() for ch in text)
    ):
        raise ValueError(
            f"replica id {text!r} must be 1-{_MAX_REPLICA_ID} printable ASCII characters "
            "without spaces"
        )
    return text


def check_host(text: str) -> str:
    """A listen address: printable ASCII, no spaces (an IP address or a host name)."""
    if not text or not text.isascii() or not text.isprintable() or " " in text:
        raise ValueError(
            f"metrics host {text!r} must be an IP address or host name (e.g. 0.0.0.0, ::)"
        )
    return text


def current_env() -> Mapping[str, str]:
    return os.environ
