"""The one source of the ``BackgroundWorker`` CustomResourceDefinition.

``build_crd()`` returns the CRD as a plain dict; ``make manifests`` writes it to
``charts/tickwork/crds/`` and ``manifests/01-crd.yaml`` (see ``worker_operator.manifests``), and a
test fails when those files are stale. The schema is strict (structural, no unknown fields),
every field has a description (``kubectl explain backgroundworker.spec.schedule``), defaults
live here, and CEL rules (``x-kubernetes-validations``) refuse what a schema alone cannot.

The generic schema pieces (strings, objects, lists, CEL rules) are in ``schemas.py`` and the
standard pod types it passes through (resources, env, tolerations, affinity) in
``pod_types.py``; this module holds what is the BackgroundWorker's own.

Durations use the Go syntax the API server's CEL ``duration()`` understands and the runtime
parses the same way: ``500ms``, ``30s``, ``10m``, ``1h30m``, ``1.5h``.
"""

from __future__ import annotations

from typing import Any

from worker_operator.constants import (
    API_VERSION,
    CATEGORY,
    CRD_NAME,
    DEFAULTS,
    GROUP,
    KIND,
    LIST_KIND,
    MAX_CONDITION_MESSAGE,
    MAX_REPLICAS,
    MAX_SHUTDOWN_GRACE,
    MIN_TMP_SIZE,
    PLURAL,
    RESERVED_POD_LABELS,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
)
from worker_operator.pod_types import (
    DNS_SUBDOMAIN_PATTERN,
    affinity,
    env_from_source,
    env_var,
    local_object_reference,
    quantity,
    resources,
    toleration,
)
from worker_operator.schemas import (
    Schema,
    array,
    boolean,
    extend,
    integer,
    obj,
    rule,
    string,
    string_map,
)
from worker_runtime.durations import MAX_DURATION_SECONDS, format_duration
from worker_runtime.redis_urls import NETWORK_URL_PREFIXES, SECRET_OPTION_PATTERN
from worker_runtime.rules import (
    MAX_LEASE_TTL_SECONDS,
    MAX_RENEW_FRACTION,
    MIN_LEASE_TTL_SECONDS,
    MIN_PERIOD_SECONDS,
    MIN_RENEW_INTERVAL_SECONDS,
)

__all__ = [
    "DURATION_PATTERN",
    "IMAGE_PATTERN",
    "MAX_DURATION",
    "MIN_LEASE_TTL",
    "MIN_PERIOD",
    "WORKER_PATTERN",
    "build_crd",
]


#: A Go duration without signs or micro/nanoseconds (what CEL's ``duration()`` accepts).
DURATION_PATTERN = r"^([0-9]+([.][0-9]+)?(ms|s|m|h))+$"
#: ``module.path:ClassName`` (a dotted attribute path after the colon is allowed).
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
WORKER_PATTERN = rf"^{_IDENT}([.]{_IDENT})*:{_IDENT}([.]{_IDENT})*$"
#: Five whitespace-separated cron fields, or one of the runtime's macros.
CRON_PATTERN = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    r"|[0-9A-Za-z*/,?-]+( +[0-9A-Za-z*/,?-]+){4})$"
)
TIME_ZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"
#: The number form CEL's ``duration()`` converts without overflow (at most five digits
#: before each unit).
_CONVERTIBLE_DURATION_PATTERN = r"^([0-9]{1,5}([.][0-9]+)?(ms|s|m|h))+$"
#: A container image reference (distribution's grammar): an optional registry (with a dot,
#: a port or localhost), lower-case path components, an optional tag and digest.
_DOMAIN_PART = r"([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PATH_PART = r"[a-z0-9]+(([._]|__|[-]+)[a-z0-9]+)*"
IMAGE_PATTERN = (
    rf"^((localhost|{_DOMAIN_PART}([.]{_DOMAIN_PART})+|{_DOMAIN_PART}:[0-9]+)(:[0-9]+)?/)?"
    rf"{_PATH_PART}(/{_PATH_PART})*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
# The runtime's rules (worker_runtime.rules), written as CEL durations.
MIN_PERIOD = format_duration(MIN_PERIOD_SECONDS)
MIN_LEASE_TTL = format_duration(MIN_LEASE_TTL_SECONDS)
MAX_LEASE_TTL = format_duration(MAX_LEASE_TTL_SECONDS)
MIN_RENEW_INTERVAL = format_duration(MIN_RENEW_INTERVAL_SECONDS)
MAX_DURATION = format_duration(MAX_DURATION_SECONDS)
# The runtime's renew rule, renewInterval <= ttl * MAX_RENEW_FRACTION, as CEL can say it.
_RENEW_AT_MOST_HALF = (
    "duration(self.ttl) - duration(self.renewInterval) >= duration(self.renewInterval)"
)
if MAX_RENEW_FRACTION != 0.5:
    raise ImportError("crd.py states the renew rule for a fraction of 1/2; update it")
_MAX_DURATION_LENGTH = 32


# ------------------------------------------------------------------ BackgroundWorker pieces


def _is_duration(expr: str) -> str:
    """``expr`` is a duration CEL's ``duration()`` converts (the guard of every conversion)."""
    return f"{expr}.matches('{_CONVERTIBLE_DURATION_PATTERN}')"


def _duration(
    description: str,
    *,
    what: str,
    default: str | None = None,
    minimum: str | None = None,
    maximum: str = MAX_DURATION,
    positive: bool = False,
) -> Schema:
    """A duration string, checked with CEL so the message names the field and the value."""
    rules = [
        rule(
            f"self.matches('{DURATION_PATTERN}')",
            message_expression=(
                f"'{what} ' + self + ' is not a duration; expected e.g. 500ms, 30s, 10m, 1h30m'"
            ),
        ),
        rule(
            f"!self.matches('{DURATION_PATTERN}') || "
            f"({_is_duration('self')} && duration(self) <= duration('{maximum}'))",
            message_expression=f"'{what} ' + self + ' is longer than the maximum {maximum}'",
        ),
    ]
    if minimum is not None:
        rules.append(
            rule(
                f"!{_is_duration('self')} || duration(self) >= duration('{minimum}')",
                message_expression=f"'{what} ' + self + ' is shorter than the minimum {minimum}'",
            )
        )
    rules.append(
        rule(
            f"!{_is_duration('self')} || duration(self) <= duration('{maximum}')",
            message_expression=f"'{what} ' + self + ' is longer than the maximum {maximum}'",
        )
    )
    if positive:
        rules.append(
            rule(
                f"!{_is_duration('self')} || duration(self) > duration('0s')",
                message_expression=f"'{what} ' + self + ' must be greater than zero'",
            )
        )
    return string(description, max_length=_MAX_DURATION_LENGTH, default=default, rules=rules)


def _key_reference(description: str, *, what: str, default_key: str) -> Schema:
    return obj(
        description,
        {
            "name": string(
                f"Name of the Secret (in the BackgroundWorker's namespace) holding the {what}.",
                pattern=DNS_SUBDOMAIN_PATTERN,
                min_length=1,
                max_length=253,
            ),
            "key": string(
                f"Key inside the Secret whose value is the {what}.",
                default=default_key,
                pattern=r"^[-._a-zA-Z0-9]+$",
                min_length=1,
                max_length=253,
            ),
        },
        must_have=["name"],
        atomic=True,
    )


# ------------------------------------------------------------------------- the spec


def _schedule() -> Schema:
    both = f"has(self.period) && has(self.jitter) && {_is_duration('self.period')}"
    return obj(
        "When the worker runs: every period (mode delay or rate), or on a cron schedule in a "
        "time zone. Exactly one of period and cron. Passed to the runtime as TICKWORK_PERIOD, "
        "TICKWORK_MODE, TICKWORK_CRON, TICKWORK_TIMEZONE and the other TICKWORK_* schedule "
        "variables.",
        {
            "period": _duration(
                f"Run every PERIOD, e.g. 30s, 10m, 1h30m (at least {MIN_PERIOD}).",
                what="schedule.period",
                minimum=MIN_PERIOD,
            ),
            "mode": string(
                "Only with period. delay (default): the next run starts one period after the "
                "previous run ended. rate: runs start at fixed multiples of the period, "
                "without drift.",
                choices=["delay", "rate"],
            ),
            "cron": string(
                "A five-field cron expression (minute hour day-of-month month day-of-week), "
                "e.g. '*/10 * * * *', or a macro such as @hourly. Evaluated in timeZone, "
                "correctly across daylight-saving changes.",
                max_length=128,
                rules=[
                    rule(
                        f"self.matches('{CRON_PATTERN}')",
                        message_expression=(
                            "'schedule.cron ' + self + ' is not a cron expression; expected 5 "
                            "fields (minute hour day-of-month month day-of-week) or a macro "
                            "such as @hourly'"
                        ),
                    )
                ],
            ),
            "timeZone": string(
                "Only with cron: the IANA time zone the cron expression is read in, "
                "e.g. Europe/Berlin (default UTC).",
                max_length=64,
                rules=[
                    rule(
                        f"self.matches('{TIME_ZONE_PATTERN}')",
                        message_expression=(
                            "'schedule.timeZone ' + self + ' is not an IANA time zone name "
                            "(e.g. UTC, Europe/Berlin)'"
                        ),
                    )
                ],
            ),
            "runOnStart": boolean(
                "Run once as soon as a replica starts, before the first scheduled slot.",
                default=DEFAULTS.run_on_start,
            ),
            "timeout": _duration(
                "Cancel a run that takes longer than this (default: no timeout).",
                what="schedule.timeout",
                positive=True,
            ),
            "jitter": _duration(
                "Delay each start by a random amount up to this long (default 0s), "
                "to spread load. In rate mode it must be shorter than the period.",
                what="schedule.jitter",
            ),
            "misfire": string(
                "What to do with slots missed while no replica could run them: skip them "
                "(default), or catch_up: run the latest missed slot once if it is still "
                "within misfireGrace.",
                choices=["skip", "catch_up"],
                default=DEFAULTS.misfire,
            ),
            "misfireGrace": _duration(
                "Only with misfire catch_up: how late a missed slot may still run "
                "(default: one period, or one day for cron).",
                what="schedule.misfireGrace",
                positive=True,
            ),
        },
        rules=[
            rule(
                "has(self.period) != has(self.cron)",
                message="schedule needs exactly one of period and cron",
            ),
            rule(
                "!has(self.timeZone) || has(self.cron)",
                message="schedule.timeZone applies only to a cron schedule",
                field_path=".timeZone",
                reason="FieldValueForbidden",
            ),
            rule(
                "!has(self.mode) || has(self.period)",
                message="schedule.mode applies only to a period schedule",
                field_path=".mode",
                reason="FieldValueForbidden",
            ),
            rule(
                "!has(self.misfireGrace) || (has(self.misfire) && self.misfire == 'catch_up')",
                message="schedule.misfireGrace applies only with misfire: catch_up",
                field_path=".misfireGrace",
                reason="FieldValueForbidden",
            ),
            rule(
                f"!({both} && {_is_duration('self.jitter')} && has(self.mode) && "
                "self.mode == 'rate') || duration(self.jitter) < duration(self.period)",
                message="schedule.jitter must be shorter than schedule.period in rate mode",
                field_path=".jitter",
            ),
        ],
    )


def _lease() -> Schema:
    both = f"{_is_duration('self.ttl')} && {_is_duration('self.renewInterval')}"
    return obj(
        "The Redis lease that lets exactly one replica run each tick.",
        {
            "ttl": _duration(
                f"How long a lease lives without renewal ({MIN_LEASE_TTL} to {MAX_LEASE_TTL}). "
                "A killed holder's slot is taken over within TTL plus one period.",
                what="lease.ttl",
                default=DEFAULTS.lease_ttl,
                minimum=MIN_LEASE_TTL,
                maximum=MAX_LEASE_TTL,
            ),
            "renewInterval": _duration(
                f"How often the holder renews (default TTL/3; at least {MIN_RENEW_INTERVAL}, at "
                "most TTL/2, so one failed renewal can be retried in time).",
                what="lease.renewInterval",
                minimum=MIN_RENEW_INTERVAL,
            ),
        },
        default={},
        rules=[
            rule(
                f"!has(self.renewInterval) || !({both}) || {_RENEW_AT_MOST_HALF}",
                message="lease.renewInterval must be at most half of lease.ttl",
                field_path=".renewInterval",
            )
        ],
    )


_REDIS_PREFIXES = ", ".join(NETWORK_URL_PREFIXES)


def _redis() -> Schema:
    return obj(
        "Where the leases live. Exactly one of url and urlSecretRef. Without redis the worker "
        "uses an in-process lease, which is only safe with one replica.",
        {
            "url": string(
                f"A {_REDIS_PREFIXES} URL without a password (use urlSecretRef for one "
                "with a password). Sentinel: redis+sentinel://HOST:PORT,…/SERVICE; "
                "Cluster: redis+cluster://HOST:PORT,….",
                max_length=2048,
                rules=[
                    rule(
                        " || ".join(f"self.startsWith('{p}')" for p in NETWORK_URL_PREFIXES),
                        message=f"redis.url must start with {_REDIS_PREFIXES}",
                    ),
                    rule(
                        "!self.matches('^rediss?[+a-z]*://[^/@]*:[^/@]*@') && "
                        f"!self.matches('(?i)[?&][^=&#]*({SECRET_OPTION_PATTERN})')",
                        message="redis.url must not contain a password; put the URL in a "
                        "Secret and use redis.urlSecretRef",
                    ),
                ],
            ),
            "urlSecretRef": _key_reference(
                "A Secret key holding the Redis URL. It reaches the pods through secretKeyRef; "
                "the operator never reads it.",
                what="Redis URL",
                default_key=DEFAULTS.redis_url_key,
            ),
            "passwordSecretRef": _key_reference(
                "Optional: a Secret key holding the Redis password (TICKWORK_REDIS_PASSWORD), "
                "when the URL carries none.",
                what="Redis password",
                default_key=DEFAULTS.redis_password_key,
            ),
            "durableWrites": boolean(
                "Wait for a replica's acknowledgement (WAIT 1) of each lease acquisition and "
                "slot claim before the work runs; a write no replica acknowledged runs "
                "nothing. Unset: on with a redis+sentinel:// URL, off otherwise."
            ),
        },
        rules=[
            rule(
                "has(self.url) != has(self.urlSecretRef)",
                message="redis needs exactly one of url and urlSecretRef",
            )
        ],
    )


def _spec() -> Schema:
    reserved = " || ".join(f"'{label}' in self" for label in RESERVED_POD_LABELS)
    return obj(
        "The desired state: which worker class runs, from which image, on which schedule, "
        "and how its pods are placed.",
        {
            "image": string(
                "The worker image (its entrypoint is tickwork), e.g. "
                "registry.example.com/admin-workers:1.4.2.",
                min_length=1,
                max_length=512,
                rules=[
                    rule(
                        f"self.matches('{IMAGE_PATTERN}')",
                        message_expression=(
                            "'image ' + self + ' is not an image reference; expected e.g. "
                            "registry.example.com/admin-workers:1.4.2 (lower-case name, "
                            "optional :tag and @sha256:digest)'"
                        ),
                    )
                ],
            ),
            "imagePullPolicy": string(
                "When the kubelet pulls the image (default: Kubernetes' rule: Always for "
                ":latest, IfNotPresent otherwise).",
                choices=["Always", "IfNotPresent", "Never"],
            ),
            "worker": string(
                "The worker class to run, as MODULE:CLASS, e.g. "
                "admin_workers.passive_users:PassiveUserCheckerWorker. The container runs "
                "`tickwork run MODULE:CLASS`.",
                min_length=3,
                max_length=253,
                rules=[
                    rule(
                        f"self.matches('{WORKER_PATTERN}')",
                        message_expression=(
                            "'worker ' + self + ' is not MODULE:CLASS, e.g. "
                            "admin_workers.passive_users:PassiveUserCheckerWorker'"
                        ),
                    )
                ],
            ),
            "services": string(
                "Optional MODULE:FUNCTION called with the svcs registry to register the "
                "worker's services (TICKWORK_SERVICES).",
                max_length=253,
                rules=[
                    rule(
                        f"self.matches('{WORKER_PATTERN}')",
                        message_expression="'services ' + self + ' is not MODULE:FUNCTION'",
                    )
                ],
            ),
            "schedule": _schedule(),
            "replicas": integer(
                f"How many replicas run (0 to {MAX_REPLICAS}; one executes each tick under the "
                "lease). More than one needs redis. kubectl scale bgw/NAME --replicas=N sets "
                "it.",
                minimum=0,
                maximum=MAX_REPLICAS,
                default=DEFAULTS.replicas,
            ),
            "suspend": boolean(
                "Scale the worker to zero without deleting it; false resumes it.",
                default=DEFAULTS.suspend,
            ),
            "lease": _lease(),
            "redis": _redis(),
            "metrics": obj(
                "The port each replica serves /metrics, /healthz (liveness) and /readyz "
                "(readiness) on.",
                {
                    "port": integer(
                        "Container port (1024-65535; the pods run as non-root).",
                        minimum=1024,
                        maximum=65535,
                        default=DEFAULTS.metrics_port,
                    ),
                    "scrape": boolean(
                        "Advertise the port for Prometheus with prometheus.io/scrape, "
                        "prometheus.io/port and prometheus.io/path pod annotations.",
                        default=DEFAULTS.metrics_scrape,
                    ),
                },
                default={},
            ),
            "shutdownGrace": _duration(
                f"How long in-flight ticks may finish after SIGTERM (at most "
                f"{MAX_SHUTDOWN_GRACE}). The pod's terminationGracePeriodSeconds is this plus "
                "10 seconds.",
                what="shutdownGrace",
                default=DEFAULTS.shutdown_grace,
                maximum=MAX_SHUTDOWN_GRACE,
            ),
            "log": obj(
                "The runtime's log output.",
                {
                    "format": string(
                        "text or json (one JSON object per line).",
                        choices=["text", "json"],
                        default=DEFAULTS.log_format,
                    ),
                    "level": string(
                        "Minimum level logged.",
                        choices=["debug", "info", "warning", "error"],
                        default=DEFAULTS.log_level,
                    ),
                },
                default={},
            ),
            "env": array(
                "Extra environment variables of the worker container (standard EnvVar "
                "entries). TICKWORK_* names are refused: use the matching spec fields.",
                env_var(),
                map_keys=["name"],
                max_items=128,
                rules=[
                    rule(
                        "self.all(e, !e.name.startsWith('TICKWORK_'))",
                        message="env must not set TICKWORK_* variables; the operator sets them "
                        "from the spec (schedule, lease, redis, metrics, log)",
                    )
                ],
            ),
            "envFrom": array(
                "ConfigMaps and Secrets whose keys all become environment variables "
                "(explicit env and the operator's TICKWORK_* variables win).",
                env_from_source(),
                max_items=32,
                rules=[
                    rule(
                        "self.all(e, !has(e.prefix) || !(e.prefix.startsWith('TICKWORK_') || "
                        "'TICKWORK_'.startsWith(e.prefix)) || e.prefix == '')",
                        message="envFrom prefix must not make TICKWORK_* variables; the "
                        "operator sets them from the spec",
                    )
                ],
            ),
            "resources": resources(),
            "tmpSizeLimit": extend(
                quantity(
                    "Size limit of the pods' writable /tmp (an emptyDir; the root filesystem "
                    "is read-only). When resources name no ephemeral-storage, the container "
                    f"requests {DEFAULTS.ephemeral_storage_request} of local disk and is "
                    f"limited to this size plus {DEFAULTS.ephemeral_storage_headroom} (its "
                    "logs)."
                ),
                default=DEFAULTS.tmp_size_limit,
                rules=[
                    rule(
                        "isQuantity(string(self)) && "
                        f"quantity(string(self)).compareTo(quantity('{MIN_TMP_SIZE}')) >= 0",
                        message=f"tmpSizeLimit must be a size of at least {MIN_TMP_SIZE}, "
                        "e.g. 64Mi",
                    )
                ],
            ),
            "podDisruptionBudget": obj(
                "The PodDisruptionBudget the operator keeps for the pods of a worker with "
                "more than one replica: a node drain evicts at most maxUnavailable of them "
                "at once.",
                {
                    "enabled": boolean(
                        "Limit evictions (false: the budget stays, with no limit).",
                        default=True,
                    ),
                    "maxUnavailable": integer(
                        "Pods a voluntary disruption may take down at once.",
                        minimum=1,
                        maximum=MAX_REPLICAS,
                        default=DEFAULTS.max_unavailable,
                    ),
                },
            ),
            "nodeSelector": string_map("Node labels the pods must be scheduled on."),
            "tolerations": array("Taints the pods tolerate.", toleration(), max_items=64),
            "affinity": affinity(),
            "imagePullSecrets": array(
                "Secrets (names) the kubelet uses to pull the image.",
                local_object_reference("A Secret of type kubernetes.io/dockerconfigjson."),
                max_items=16,
            ),
            "serviceAccountName": string(
                "The pods' ServiceAccount. When unset the pods get the namespace's default "
                "one without a mounted API token (automountServiceAccountToken: false).",
                pattern=DNS_SUBDOMAIN_PATTERN,
                max_length=253,
            ),
            "podLabels": extend(
                string_map(
                    "Extra labels of the pods. app.kubernetes.io/name, instance and "
                    "managed-by are the operator's.",
                    max_properties=64,
                ),
                rules=[
                    rule(
                        f"!({reserved})",
                        message="podLabels must not set "
                        + ", ".join(RESERVED_POD_LABELS)
                        + "; the operator owns them",
                    )
                ],
            ),
            "podAnnotations": string_map("Extra annotations of the pods.", max_properties=64),
            "podSecurityContext": obj(
                "Overrides of the restricted pod security context (the pods always run as "
                "non-root, with a RuntimeDefault seccomp profile, no privilege escalation, "
                "all capabilities dropped and a read-only root filesystem with a writable "
                "/tmp).",
                {
                    "runAsUser": integer(
                        "UID the container runs as (default: the image's USER, which must "
                        "not be root).",
                        minimum=1,
                        bits=64,
                    ),
                    "runAsGroup": integer("GID the container runs as.", minimum=0, bits=64),
                    "fsGroup": integer("GID that owns mounted volumes.", minimum=0, bits=64),
                },
            ),
        },
        must_have=["image", "worker", "schedule"],
        rules=[
            rule(
                "!has(self.replicas) || self.replicas <= 1 || has(self.redis)",
                message="replicas above 1 need spec.redis: with the in-process lease every "
                "replica would run every tick",
                field_path=".replicas",
            )
        ],
    )


# ------------------------------------------------------------------------- the status


def _condition() -> Schema:
    return obj(
        "One aspect of the current state (standard metav1.Condition).",
        {
            "type": string(
                "Ready, Progressing, Degraded, and while True Reconciling or Stalled "
                "(metav1.Condition's type: an optional DNS subdomain prefix and a CamelCase "
                "name).",
                min_length=1,
                max_length=316,
                pattern=CONDITION_TYPE_PATTERN,
            ),
            "status": string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "observedGeneration": integer(
                "The metadata.generation this condition was computed for.", minimum=0, bits=64
            ),
            "lastTransitionTime": {
                "type": "string",
                "format": "date-time",
                "description": "When the status last changed.",
            },
            "reason": string(
                "A CamelCase reason, e.g. RolloutComplete, SecretNotFound.",
                min_length=1,
                max_length=1024,
                pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
            ),
            "message": string("A human-readable explanation.", max_length=MAX_CONDITION_MESSAGE),
        },
        required=["type", "status", "lastTransitionTime", "reason", "message"],
    )


#: metav1.Condition's ``type`` pattern (k8s.io/apimachinery/pkg/apis/meta/v1/types.go).
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)


def _time(description: str) -> Schema:
    return {"type": "string", "format": "date-time", "description": description}


def _status() -> Schema:
    return obj(
        "The observed state, kept current by the operator from the owned Deployment.",
        {
            "observedGeneration": integer(
                "The metadata.generation the operator last acted on.", bits=64
            ),
            "replicas": integer("Pods of the Deployment (all revisions)."),
            "readyReplicas": integer("Pods passing their readiness probe (/readyz)."),
            "ready": string("Ready replicas of the desired ones, e.g. 2/2 (the READY column)."),
            "updatedReplicas": integer("Pods of the current revision."),
            "availableReplicas": integer("Pods ready for at least minReadySeconds."),
            "selector": string("Label selector of the pods (for the scale subresource and HPA)."),
            "suspended": boolean("True while spec.suspend keeps the worker at zero replicas."),
            "schedule": string("The schedule in one line (the SCHEDULE column)."),
            "deployment": string("Name of the owned Deployment."),
            "lastScheduleTime": _time(
                "The slot (scheduled time) of the latest run, from a Ready pod's status document."
            ),
            "lastRunTime": _time("When the latest run started."),
            "lastOutcome": string(
                "How the latest run ended: running (still going), success, failure, timeout, "
                "cancelled or lease_lost."
            ),
            "lastSuccessfulTime": _time("When the latest successful run ended."),
            "nextScheduleTime": _time(
                "The next slot the schedule plans (without jitter; the holder may still pass "
                "over it as a misfire or an overlap)."
            ),
            "leaseHolder": string(
                "The pod that holds the Redis lease and runs the ticks (absent: none does)."
            ),
            "fencingToken": integer("The fencing token of the latest run's lease.", bits=64),
            "conditions": array(
                "Ready, Progressing and Degraded; Reconciling or Stalled while True (kstatus).",
                _condition(),
                map_keys=["type"],
            ),
        },
    )


_READY_CONDITION = '.status.conditions[?(@.type=="Ready")]'


def _printer_columns() -> list[Schema]:
    """``kubectl get bgw``: what the worker is doing at a glance (``-o wide`` adds the rest)."""

    def column(name: str, kind: str, path: str, description: str, *, wide: bool = False) -> Schema:
        found: Schema = {"name": name, "type": kind, "jsonPath": path, "description": description}
        if wide:
            found["priority"] = 1
        return found

    return [
        column("Schedule", "string", ".status.schedule", "The schedule in one line."),
        column("Ready", "string", ".status.ready", "Ready replicas of the desired ones."),
        column("Status", "string", _READY_CONDITION + ".status", "The Ready condition."),
        column("Reason", "string", _READY_CONDITION + ".reason", "Why it is (not) Ready."),
        column("Holder", "string", ".status.leaseHolder", "The pod holding the lease."),
        column("Last Success", "date", ".status.lastSuccessfulTime", "When a run last succeeded."),
        column("Next", "string", ".status.nextScheduleTime", "The next planned slot (UTC)."),
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        column(
            "Last Outcome", "string", ".status.lastOutcome", "How the last run ended.", wide=True
        ),
        column(
            "Token", "integer", ".status.fencingToken", "The last run's fencing token.", wide=True
        ),
        column("Replicas", "integer", ".spec.replicas", "Desired replicas.", wide=True),
        column(
            "Suspended", "boolean", ".spec.suspend", "Scaled to zero by spec.suspend.", wide=True
        ),
        column("Worker", "string", ".spec.worker", "MODULE:CLASS of the worker.", wide=True),
        column("Image", "string", ".spec.image", "The worker image.", wide=True),
    ]


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition of ``BackgroundWorker`` (apiextensions.k8s.io/v1)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {
                "app.kubernetes.io/name": "tickwork",
                "app.kubernetes.io/part-of": "tickwork",
            },
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": LIST_KIND,
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": _printer_columns(),
                    "schema": {
                        "openAPIV3Schema": obj(
                            f"A BackgroundWorker ({API_VERSION}) runs one periodic worker "
                            "class of the tickwork runtime as a Deployment that the tickwork "
                            "operator owns: one replica executes each tick under a Redis "
                            "lease, every replica serves Prometheus metrics.",
                            {
                                "apiVersion": string(
                                    "The versioned schema of this object: tickwork.dev/v1alpha1."
                                ),
                                "kind": string("BackgroundWorker."),
                                "metadata": {"type": "object"},
                                "spec": _spec(),
                                "status": _status(),
                            },
                            must_have=["spec"],
                            rules=[
                                rule(
                                    "self.metadata.name.size() <= 63",
                                    message="metadata.name must be at most 63 characters: it "
                                    "becomes the app.kubernetes.io/instance label of the pods",
                                )
                            ],
                        ),
                    },
                }
            ],
        },
    }
