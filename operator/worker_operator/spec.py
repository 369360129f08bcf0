"""``WorkerSpec``: a ``BackgroundWorker`` read once, checked, and frozen.

The API server already refuses most bad resources (see ``crd.py``). This parser repeats the
checks a schema cannot express fully (a cron expression's values, a time zone that exists,
the runtime's own duration rules) so the operator never builds a Deployment from a spec the
runtime would refuse. A ``SpecError`` names the field, the bad value and what was expected.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from worker_operator.constants import (
    DEFAULTS,
    MAX_REPLICAS,
    MAX_SHUTDOWN_GRACE,
    MIN_TMP_SIZE,
    RESERVED_POD_LABELS,
)
from worker_operator.crd import (
    DURATION_PATTERN,
    IMAGE_PATTERN,
    MAX_DURATION,
    WORKER_PATTERN,
)
from worker_operator.pod_types import QUANTITY_PATTERN
from worker_operator.quantities import quantity_value
from worker_runtime.cron import CronExpression
from worker_runtime.durations import parse_duration
from worker_runtime.redis_urls import NETWORK_URL_PREFIXES, carries_password, check_redis_url
from worker_runtime.rules import check_jitter, check_lease, check_period, load_timezone

__all__ = [
    "LeaseSpec",
    "RedisSpec",
    "ScheduleSpec",
    "SecretKeyRef",
    "SpecError",
    "WorkerSpec",
    "parse_worker",
]

_DURATION = re.compile(DURATION_PATTERN)
_WORKER = re.compile(WORKER_PATTERN)
_IMAGE = re.compile(IMAGE_PATTERN)


class SpecError(ValueError):
    """A ``BackgroundWorker`` spec the operator cannot run: one line for the user."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleSpec:
    period: str | None = None
    mode: str | None = None
    cron: str | None = None
    time_zone: str | None = None
    run_on_start: bool = DEFAULTS.run_on_start
    timeout: str | None = None
    jitter: str | None = None
    misfire: str = DEFAULTS.misfire
    misfire_grace: str | None = None

    def summary(self) -> str:
        """One line for the SCHEDULE column: ``every 10m``, ``*/5 * * * * (Europe/Berlin)``."""
        if self.period is not None:
            text = f"every {self.period}"
            return f"{text} (rate)" if self.mode == "rate" else text
        assert self.cron is not None
        return f"{self.cron} ({self.time_zone or DEFAULTS.time_zone})"


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseSpec:
    ttl: str = DEFAULTS.lease_ttl
    renew_interval: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisSpec:
    url: str | None = field(default=None, repr=False)
    url_secret: SecretKeyRef | None = None
    password_secret: SecretKeyRef | None = None
    #: ``None``: the runtime's default (on with Sentinel).
    durable_writes: bool | None = None

    def secret_refs(self) -> tuple[tuple[str, SecretKeyRef], ...]:
        """``(spec path, reference)`` for every Secret the pods read."""
        refs: list[tuple[str, SecretKeyRef]] = []
        if self.url_secret is not None:
            refs.append(("spec.redis.urlSecretRef", self.url_secret))
        if self.password_secret is not None:
            refs.append(("spec.redis.passwordSecretRef", self.password_secret))
        return tuple(refs)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSpec:
    """Everything the builders need about one ``BackgroundWorker``."""

    # identity
    name: str
    namespace: str
    uid: str
    generation: int
    # what runs
    image: str
    image_pull_policy: str | None
    worker: str
    services: str | None
    schedule: ScheduleSpec
    replicas: int
    suspend: bool
    lease: LeaseSpec
    redis: RedisSpec | None
    metrics_port: int
    metrics_scrape: bool
    shutdown_grace: str
    shutdown_grace_seconds: float
    log_format: str
    log_level: str
    # pod overrides, passed through as the API server validated them
    env: tuple[Mapping[str, Any], ...] = ()
    env_from: tuple[Mapping[str, Any], ...] = ()
    resources: Mapping[str, Any] | None = None
    node_selector: Mapping[str, str] | None = None
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] | None = None
    image_pull_secrets: tuple[Mapping[str, Any], ...] = ()
    service_account_name: str | None = None
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    pod_security_context: Mapping[str, int] = field(default_factory=dict)
    tmp_size_limit: str = DEFAULTS.tmp_size_limit
    #: ``None``: no limit (``spec.podDisruptionBudget.enabled: false``).
    max_unavailable: int | None = DEFAULTS.max_unavailable

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def runtime_name(self) -> str:
        """TICKWORK_NAME: unique across namespaces, used in logs, metrics and Redis keys."""
        return f"{self.namespace}.{self.name}"

    @property
    def desired_replicas(self) -> int:
        return 0 if self.suspend else self.replicas

    def secret_refs(self) -> tuple[tuple[str, SecretKeyRef], ...]:
        return self.redis.secret_refs() if self.redis is not None else ()


# ----------------------------------------------------------------------------- reading


def _mapping(value: object, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{path} must be an object, not {type(value).__name__}")
    return value


def _optional_str(data: Mapping[str, Any], key: str, path: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SpecError(f"{path}.{key} must be a string, not {value!r}")
    return value


def _required_str(data: Mapping[str, Any], key: str, path: str) -> str:
    value = _optional_str(data, key, path)
    if not value:
        raise SpecError(f"{path}.{key} is required")
    return value


def _is_quantity(value: str | int) -> bool:
    return re.fullmatch(QUANTITY_PATTERN, str(value)) is not None


def _bool(data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise SpecError(f"{path}.{key} must be true or false, not {value!r}")
    return value


def _int(
    data: Mapping[str, Any],
    key: str,
    path: str,
    default: int,
    *,
    minimum: int,
    maximum: int | None = None,
) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{path}.{key} must be an integer, not {value!r}")
    if value < minimum:
        raise SpecError(f"{path}.{key} {value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise SpecError(f"{path}.{key} {value} must be at most {maximum}")
    return value


def _choice(data: Mapping[str, Any], key: str, path: str, allowed: tuple[str, ...]) -> str | None:
    value = _optional_str(data, key, path)
    if value is not None and value not in allowed:
        raise SpecError(f"{path}.{key} {value!r} is not one of: {', '.join(allowed)}")
    return value


def _duration(
    data: Mapping[str, Any],
    key: str,
    path: str,
    *,
    positive: bool = False,
    maximum: str = MAX_DURATION,
) -> tuple[str, float] | None:
    text = _optional_str(data, key, path)
    if text is None:
        return None
    what = f"{path}.{key}"
    if not _DURATION.fullmatch(text):
        raise SpecError(f"{what} {text!r} is not a duration; expected e.g. 500ms, 30s, 10m, 1h30m")
    try:
        seconds = parse_duration(text, what=what)
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    if positive and seconds <= 0:
        raise SpecError(f"{what} {text} must be greater than zero")
    if seconds > parse_duration(maximum):
        raise SpecError(f"{what} {text} is longer than the maximum {maximum}")
    return text, seconds


def _rule(check: Callable[..., object], *args: Any, **kwargs: Any) -> None:
    """Apply one of the runtime's rules (``worker_runtime.rules``); its error is a SpecError."""
    try:
        check(*args, **kwargs)
    except ValueError as exc:
        raise SpecError(str(exc)) from None


def _secret_ref(value: object, path: str, default_key: str) -> SecretKeyRef | None:
    if value is None:
        return None
    data = _mapping(value, path)
    name = _required_str(data, "name", path)
    key = _optional_str(data, "key", path) or default_key
    return SecretKeyRef(name=name, key=key)


def _dicts(value: object, path: str) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise SpecError(f"{path} must be a list of objects")
    return tuple(copy.deepcopy(dict(v)) for v in value)


def _string_map(value: object, path: str) -> dict[str, str]:
    data = _mapping(value, path)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise SpecError(f"{path} must map strings to strings")
    return dict(data)


def _parse_schedule(data: Mapping[str, Any]) -> ScheduleSpec:
    path = "spec.schedule"
    period = _duration(data, "period", path)
    if period is not None:
        _rule(check_period, period[1], what=f"{path}.period", text=period[0])
    cron = _optional_str(data, "cron", path)
    if (period is None) == (cron is None):
        raise SpecError("spec.schedule needs exactly one of period and cron")
    mode = _choice(data, "mode", path, ("delay", "rate"))
    time_zone = _optional_str(data, "timeZone", path)
    if mode is not None and period is None:
        raise SpecError("spec.schedule.mode applies only to a period schedule")
    if time_zone is not None and cron is None:
        raise SpecError("spec.schedule.timeZone applies only to a cron schedule")
    if cron is not None:
        try:
            CronExpression.parse(cron)
        except ValueError as exc:
            raise SpecError(f"spec.schedule.cron: {exc}") from None
    if time_zone is not None:
        _rule(load_timezone, time_zone, what=f"{path}.timeZone")
    timeout = _duration(data, "timeout", path, positive=True)
    jitter = _duration(data, "jitter", path)
    misfire = _choice(data, "misfire", path, ("skip", "catch_up")) or DEFAULTS.misfire
    grace = _duration(data, "misfireGrace", path, positive=True)
    if grace is not None and misfire != "catch_up":
        raise SpecError("spec.schedule.misfireGrace applies only with misfire: catch_up")
    if period is not None and jitter is not None:
        _rule(check_jitter, jitter[1], period[1], rate_mode=mode == "rate", what=f"{path}.jitter")
    return ScheduleSpec(
        period=period[0] if period else None,
        mode=mode,
        cron=cron,
        time_zone=time_zone,
        run_on_start=_bool(data, "runOnStart", path, DEFAULTS.run_on_start),
        timeout=timeout[0] if timeout else None,
        jitter=jitter[0] if jitter else None,
        misfire=misfire,
        misfire_grace=grace[0] if grace else None,
    )


def _parse_lease(data: Mapping[str, Any]) -> LeaseSpec:
    path = "spec.lease"
    ttl = _duration(data, "ttl", path) or (
        DEFAULTS.lease_ttl,
        parse_duration(DEFAULTS.lease_ttl),
    )
    renew = _duration(data, "renewInterval", path, positive=True)
    _rule(
        check_lease,
        ttl[1],
        renew[1] if renew else None,
        ttl_what=f"{path}.ttl",
        renew_what=f"{path}.renewInterval",
        ttl_text=ttl[0],
        renew_text=renew[0] if renew else None,
    )
    return LeaseSpec(ttl=ttl[0], renew_interval=renew[0] if renew else None)


def _parse_redis(value: object) -> RedisSpec | None:
    if value is None:
        return None
    path = "spec.redis"
    data = _mapping(value, path)
    url = _optional_str(data, "url", path)
    url_secret = _secret_ref(data.get("urlSecretRef"), f"{path}.urlSecretRef", "url")
    if (url is None) == (url_secret is None):
        raise SpecError("spec.redis needs exactly one of url and urlSecretRef")
    if url is not None:
        if not url.startswith(NETWORK_URL_PREFIXES):
            raise SpecError(f"spec.redis.url must start with {', '.join(NETWORK_URL_PREFIXES)}")
        if carries_password(url):
            raise SpecError(
                "spec.redis.url must not contain a password; put the URL in a Secret and use "
                "spec.redis.urlSecretRef"
            )
        _rule(check_redis_url, url, what=f"{path}.url")
    password = _secret_ref(
        data.get("passwordSecretRef"), f"{path}.passwordSecretRef", DEFAULTS.redis_password_key
    )
    durable = data.get("durableWrites")
    if durable is not None and not isinstance(durable, bool):
        raise SpecError(f"{path}.durableWrites must be true or false, not {durable!r}")
    return RedisSpec(
        url=url, url_secret=url_secret, password_secret=password, durable_writes=durable
    )


def parse_worker(body: Mapping[str, Any]) -> WorkerSpec:
    """Read a ``BackgroundWorker`` object (as the API returns it) or raise ``SpecError``."""
    metadata = _mapping(body.get("metadata"), "metadata")
    spec = _mapping(body.get("spec"), "spec")
    name = _required_str(metadata, "name", "metadata")
    namespace = _required_str(metadata, "namespace", "metadata")

    worker = _required_str(spec, "worker", "spec")
    if not _WORKER.fullmatch(worker):
        raise SpecError(
            f"spec.worker {worker!r} is not MODULE:CLASS, e.g. "
            "admin_workers.passive_users:PassiveUserCheckerWorker"
        )
    services = _optional_str(spec, "services", "spec")
    if services is not None and not _WORKER.fullmatch(services):
        raise SpecError(f"spec.services {services!r} is not MODULE:FUNCTION")
    image = _required_str(spec, "image", "spec")
    if not _IMAGE.fullmatch(image):
        raise SpecError(
            f"spec.image {image!r} is not an image reference; expected e.g. "
            "registry.example.com/admin-workers:1.4.2"
        )
    if "schedule" not in spec:
        raise SpecError("spec.schedule is required")

    redis = _parse_redis(spec.get("redis"))
    replicas = _int(spec, "replicas", "spec", DEFAULTS.replicas, minimum=0, maximum=MAX_REPLICAS)
    if replicas > 1 and redis is None:
        raise SpecError(
            f"spec.replicas {replicas} needs spec.redis: with the in-process lease every "
            "replica would run every tick"
        )
    metrics = _mapping(spec.get("metrics"), "spec.metrics")
    port = _int(metrics, "port", "spec.metrics", DEFAULTS.metrics_port, minimum=1024)
    if port > 65535:
        raise SpecError(f"spec.metrics.port {port} must be at most 65535")
    grace = _duration(spec, "shutdownGrace", "spec", maximum=MAX_SHUTDOWN_GRACE) or (
        DEFAULTS.shutdown_grace,
        parse_duration(DEFAULTS.shutdown_grace),
    )
    log = _mapping(spec.get("log"), "spec.log")
    pod_labels = _string_map(spec.get("podLabels"), "spec.podLabels")
    reserved = sorted(set(pod_labels) & set(RESERVED_POD_LABELS))
    if reserved:
        raise SpecError(
            f"spec.podLabels must not set {', '.join(reserved)}; the operator owns them"
        )
    env = _dicts(spec.get("env"), "spec.env")
    taken = sorted(
        str(e.get("name")) for e in env if str(e.get("name", "")).startswith("TICKWORK_")
    )
    if taken:
        raise SpecError(
            f"spec.env must not set {', '.join(taken)}; the operator sets TICKWORK_* variables "
            "from the spec"
        )
    env_from = _dicts(spec.get("envFrom"), "spec.envFrom")
    prefixes = sorted(
        prefix
        for e in env_from
        if (prefix := str(e.get("prefix") or ""))
        and (prefix.startswith("TICKWORK_") or "TICKWORK_".startswith(prefix))
    )
    if prefixes:
        raise SpecError(
            f"spec.envFrom prefix {', '.join(prefixes)} would make TICKWORK_* variables; the "
            "operator sets them from the spec"
        )
    security = _mapping(spec.get("podSecurityContext"), "spec.podSecurityContext")
    budget = _mapping(spec.get("podDisruptionBudget"), "spec.podDisruptionBudget")
    tmp_size = spec.get("tmpSizeLimit", DEFAULTS.tmp_size_limit)
    if (
        isinstance(tmp_size, bool)
        or not isinstance(tmp_size, str | int)
        or not _is_quantity(tmp_size)
        or quantity_value(tmp_size) < quantity_value(MIN_TMP_SIZE)
    ):
        raise SpecError(
            f"spec.tmpSizeLimit {tmp_size!r} must be a size of at least {MIN_TMP_SIZE}, e.g. 64Mi"
        )
    resources = spec.get("resources")
    affinity = spec.get("affinity")
    node_selector = spec.get("nodeSelector")
    return WorkerSpec(
        name=name,
        namespace=namespace,
        uid=str(metadata.get("uid", "")),
        generation=int(metadata.get("generation") or 0),
        image=image,
        image_pull_policy=_choice(
            spec, "imagePullPolicy", "spec", ("Always", "IfNotPresent", "Never")
        ),
        worker=worker,
        services=services,
        schedule=_parse_schedule(_mapping(spec.get("schedule"), "spec.schedule")),
        replicas=replicas,
        suspend=_bool(spec, "suspend", "spec", DEFAULTS.suspend),
        lease=_parse_lease(_mapping(spec.get("lease"), "spec.lease")),
        redis=redis,
        metrics_port=port,
        metrics_scrape=_bool(metrics, "scrape", "spec.metrics", DEFAULTS.metrics_scrape),
        shutdown_grace=grace[0],
        shutdown_grace_seconds=grace[1],
        log_format=_choice(log, "format", "spec.log", ("text", "json")) or DEFAULTS.log_format,
        log_level=_choice(log, "level", "spec.log", ("debug", "info", "warning", "error"))
        or DEFAULTS.log_level,
        env=env,
        env_from=env_from,
        resources=copy.deepcopy(dict(_mapping(resources, "spec.resources"))) if resources else None,
        node_selector=_string_map(node_selector, "spec.nodeSelector") if node_selector else None,
        tolerations=_dicts(spec.get("tolerations"), "spec.tolerations"),
        affinity=copy.deepcopy(dict(_mapping(affinity, "spec.affinity"))) if affinity else None,
        image_pull_secrets=_dicts(spec.get("imagePullSecrets"), "spec.imagePullSecrets"),
        service_account_name=_optional_str(spec, "serviceAccountName", "spec"),
        pod_labels=pod_labels,
        pod_annotations=_string_map(spec.get("podAnnotations"), "spec.podAnnotations"),
        pod_security_context={
            k: int(v)
            for k, v in security.items()
            if k in ("runAsUser", "runAsGroup", "fsGroup") and isinstance(v, int)
        },
        tmp_size_limit=str(tmp_size),
        max_unavailable=(
            _int(
                budget,
                "maxUnavailable",
                "spec.podDisruptionBudget",
                DEFAULTS.max_unavailable,
                minimum=1,
                maximum=MAX_REPLICAS,
            )
            if _bool(budget, "enabled", "spec.podDisruptionBudget", True)
            else None
        ),
    )
