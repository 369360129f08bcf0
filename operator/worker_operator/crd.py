"""The one source of the ``BackgroundWorker`` CustomResourceDefinition.

``build_crd()`` returns the CRD as a plain dict; ``make manifests`` writes it to
``charts/tickwork/crds/`` and ``manifests/01-crd.yaml`` (see ``worker_operator.manifests``), and a
test fails when those files are stale. The schema is strict (structural, no unknown fields),
every field has a description (``kubectl explain backgroundworker.spec.schedule``), defaults
live here, and CEL rules (``x-kubernetes-validations``) refuse what a schema alone cannot.

Durations use the Go syntax the API server's CEL ``duration()`` understands and the runtime
parses the same way: ``500ms``, ``30s``, ``10m``, ``1h30m``, ``1.5h``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
    PLURAL,
    RESERVED_POD_LABELS,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
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
    "choices_of",
    "required_of",
]

Schema = dict[str, Any]

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
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
    r"|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
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


# --------------------------------------------------------------------------- schema helpers


def _rule(
    rule: str,
    *,
    message: str | None = None,
    message_expression: str | None = None,
    field_path: str | None = None,
    reason: str | None = None,
) -> Schema:
    out: Schema = {"rule": rule}
    if message is not None:
        out["message"] = message
    if message_expression is not None:
        out["messageExpression"] = message_expression
    if field_path is not None:
        out["fieldPath"] = field_path
    if reason is not None:
        out["reason"] = reason
    return out


#: Choices are checked by CEL, not by ``enum``: an ``enum`` violation makes the API server
#: skip every CEL rule and print "some validation rules were not checked" besides.
_MAX_CHOICE_LENGTH = 64


def _one_of(choices: list[str]) -> Schema:
    listed = ", ".join(f"'{c}'" for c in choices)
    return _rule(
        f"self in [{listed}]",
        message_expression=f"self + ' is not one of: {', '.join(choices)}'",
    )


def _required(name: str) -> Schema:
    return _rule(
        f"has(self.{name})",
        message=f"{name} is required",
        field_path=f".{name}",
        reason="FieldValueRequired",
    )


def required_of(schema: Mapping[str, Any]) -> set[str]:
    """The properties an object requires (by the schema or by CEL), for the field reference."""
    return set(schema.get("required") or ()) | {
        str(rule["fieldPath"]).lstrip(".")
        for rule in schema.get("x-kubernetes-validations") or ()
        if rule.get("reason") == "FieldValueRequired" and rule.get("fieldPath")
    }


def choices_of(schema: Mapping[str, Any]) -> list[str] | None:
    """The values a string field allows (``enum`` or ``choices``), for the field reference."""
    if "enum" in schema:
        return [str(v) for v in schema["enum"]]
    for rule in schema.get("x-kubernetes-validations") or ():
        text = str(rule.get("rule", ""))
        if text.startswith("self in [") and text.endswith("]"):
            return [c.strip().strip("'") for c in text[len("self in [") : -1].split(",")]
    return None


def _with(schema: Schema, *, default: Any = None, rules: Iterable[Schema] = ()) -> Schema:
    if default is not None:
        schema["default"] = default
    rule_list = list(rules)
    if rule_list:
        schema["x-kubernetes-validations"] = rule_list
    return schema


def _string(
    description: str,
    *,
    enum: Iterable[str] | None = None,
    choices: Iterable[str] | None = None,
    default: str | None = None,
    pattern: str | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    rules: Iterable[Schema] = (),
) -> Schema:
    """A string; ``choices`` are checked by CEL, ``enum`` (standard pod types) by the schema."""
    schema: Schema = {"type": "string", "description": description}
    if enum is not None:
        schema["enum"] = list(enum)
    if choices is not None:
        rules = [_one_of(list(choices)), *rules]
        max_length = max_length or _MAX_CHOICE_LENGTH
    if pattern is not None:
        schema["pattern"] = pattern
    if min_length is not None:
        schema["minLength"] = min_length
    if max_length is not None:
        schema["maxLength"] = max_length
    return _with(schema, default=default, rules=rules)


def _integer(
    description: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    default: int | None = None,
    bits: int = 32,
) -> Schema:
    schema: Schema = {"type": "integer", "format": f"int{bits}", "description": description}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return _with(schema, default=default)


def _boolean(description: str, *, default: bool | None = None) -> Schema:
    return _with({"type": "boolean", "description": description}, default=default)


def _object(
    description: str,
    properties: Mapping[str, Schema],
    *,
    required: Iterable[str] = (),
    must_have: Iterable[str] = (),
    default: Mapping[str, Any] | None = None,
    rules: Iterable[Schema] = (),
    atomic: bool = False,
) -> Schema:
    """An object; ``must_have`` fields are checked by CEL, ``required`` ones by the schema.

    The BackgroundWorker's own fields use CEL (see ``_MAX_CHOICE_LENGTH``); the standard pod
    types keep the schema's checks, as CEL rules inside their unbounded lists would exceed
    the API server's cost budget for the whole schema.
    """
    schema: Schema = {"type": "object", "description": description, "properties": dict(properties)}
    required_list = list(required)
    if required_list:
        schema["required"] = required_list
    rules = [*(_required(name) for name in must_have), *rules]
    if atomic:
        schema["x-kubernetes-map-type"] = "atomic"
    return _with(schema, default=dict(default) if default is not None else None, rules=rules)


def _string_map(description: str, *, max_properties: int | None = None) -> Schema:
    schema: Schema = {
        "type": "object",
        "description": description,
        "additionalProperties": {"type": "string"},
    }
    if max_properties is not None:
        schema["maxProperties"] = max_properties
    return schema


def _list(
    description: str,
    items: Schema,
    *,
    map_keys: Iterable[str] | None = None,
    max_items: int | None = None,
    rules: Iterable[Schema] = (),
) -> Schema:
    schema: Schema = {"type": "array", "description": description, "items": items}
    if map_keys is not None:
        schema["x-kubernetes-list-type"] = "map"
        schema["x-kubernetes-list-map-keys"] = list(map_keys)
    else:
        schema["x-kubernetes-list-type"] = "atomic"
    if max_items is not None:
        schema["maxItems"] = max_items
    return _with(schema, rules=rules)


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
        _rule(
            f"self.matches('{DURATION_PATTERN}')",
            message_expression=(
                f"'{what} ' + self + ' is not a duration; expected e.g. 500ms, 30s, 10m, 1h30m'"
            ),
        ),
        _rule(
            f"!self.matches('{DURATION_PATTERN}') || "
            f"({_is_duration('self')} && duration(self) <= duration('{maximum}'))",
            message_expression=f"'{what} ' + self + ' is longer than the maximum {maximum}'",
        ),
    ]
    if minimum is not None:
        rules.append(
            _rule(
                f"!{_is_duration('self')} || duration(self) >= duration('{minimum}')",
                message_expression=f"'{what} ' + self + ' is shorter than the minimum {minimum}'",
            )
        )
    rules.append(
        _rule(
            f"!{_is_duration('self')} || duration(self) <= duration('{maximum}')",
            message_expression=f"'{what} ' + self + ' is longer than the maximum {maximum}'",
        )
    )
    if positive:
        rules.append(
            _rule(
                f"!{_is_duration('self')} || duration(self) > duration('0s')",
                message_expression=f"'{what} ' + self + ' must be greater than zero'",
            )
        )
    return _string(description, max_length=_MAX_DURATION_LENGTH, default=default, rules=rules)


def _local_object_reference(description: str) -> Schema:
    return _object(
        description,
        {"name": _string("Name of the referent.", min_length=1, max_length=253)},
        required=["name"],
        atomic=True,
    )


def _key_reference(description: str, *, what: str, default_key: str) -> Schema:
    return _object(
        description,
        {
            "name": _string(
                f"Name of the Secret (in the BackgroundWorker's namespace) holding the {what}.",
                pattern=DNS_SUBDOMAIN_PATTERN,
                min_length=1,
                max_length=253,
            ),
            "key": _string(
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


# ----------------------------------------------------------- standard Kubernetes pod types


def _quantity(description: str) -> Schema:
    return {
        "description": description,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": QUANTITY_PATTERN,
        "maxLength": 64,
        "x-kubernetes-int-or-string": True,
    }


def _resources() -> Schema:
    quantities = {
        "type": "object",
        "maxProperties": 8,
        "additionalProperties": _quantity("A resource quantity, e.g. 100m, 128Mi, 1."),
    }
    return _object(
        "Compute resources of the worker container (the standard ResourceRequirements: "
        "requests and limits by resource name, e.g. cpu, memory).",
        {
            "requests": {
                **quantities,
                "description": "Minimum resources the pod is scheduled "
                "with, by resource name (cpu: 100m, memory: 128Mi).",
            },
            "limits": {
                **quantities,
                "description": "Maximum resources the container may use, by resource name.",
            },
        },
        rules=[
            _rule(
                "!has(self.requests) || !has(self.limits) || self.requests.all(k, "
                "!(k in self.limits) || !isQuantity(string(self.requests[k])) || "
                "!isQuantity(string(self.limits[k])) || "
                "quantity(string(self.requests[k])).compareTo("
                "quantity(string(self.limits[k]))) <= 0)",
                message="resources.requests must not exceed resources.limits for any resource",
            )
        ],
    )


def _env_var() -> Schema:
    selector_key = {
        "key": _string("The key to select.", min_length=1),
        "name": _string("Name of the referent.", min_length=1, max_length=253),
        "optional": _boolean("Whether the referent or its key may be missing."),
    }
    return _object(
        "One environment variable (the standard EnvVar).",
        {
            "name": _string("Name of the variable.", min_length=1, max_length=256),
            "value": _string("Literal value (may reference $(OTHER_VAR))."),
            "valueFrom": _object(
                "Source of the value; exactly one of its fields.",
                {
                    "configMapKeyRef": _object(
                        "A key of a ConfigMap.", selector_key, required=["key"], atomic=True
                    ),
                    "secretKeyRef": _object(
                        "A key of a Secret.", selector_key, required=["key"], atomic=True
                    ),
                    "fieldRef": _object(
                        "A field of the pod (downward API), e.g. metadata.name.",
                        {
                            "apiVersion": _string("Schema version of fieldPath (default v1)."),
                            "fieldPath": _string("Path of the field, e.g. status.podIP."),
                        },
                        required=["fieldPath"],
                        atomic=True,
                    ),
                    "resourceFieldRef": _object(
                        "A resource limit or request of a container, e.g. limits.memory.",
                        {
                            "containerName": _string("Container name (default: this one)."),
                            "resource": _string("Resource to select, e.g. limits.cpu."),
                            "divisor": _quantity("Output unit, e.g. 1Mi (default 1)."),
                        },
                        required=["resource"],
                        atomic=True,
                    ),
                },
                rules=[
                    _rule(
                        "[has(self.configMapKeyRef), has(self.secretKeyRef), has(self.fieldRef),"
                        " has(self.resourceFieldRef)].filter(x, x).size() == 1",
                        message="valueFrom needs exactly one of configMapKeyRef, secretKeyRef, "
                        "fieldRef and resourceFieldRef",
                    )
                ],
            ),
        },
        required=["name"],
        rules=[
            _rule(
                "!(has(self.value) && has(self.valueFrom))",
                message="an env entry has either value or valueFrom, not both",
            )
        ],
    )


def _env_from_source() -> Schema:
    ref = {
        "name": _string("Name of the referent.", min_length=1, max_length=253),
        "optional": _boolean("Whether the referent may be missing."),
    }
    return _object(
        "A ConfigMap or Secret whose keys all become environment variables "
        "(the standard EnvFromSource).",
        {
            "prefix": _string(
                "Prefix added to every variable name (not one that makes TICKWORK_* names).",
                max_length=253,
            ),
            "configMapRef": _object("The ConfigMap.", ref, required=["name"], atomic=True),
            "secretRef": _object("The Secret.", ref, required=["name"], atomic=True),
        },
        rules=[
            _rule(
                "has(self.configMapRef) != has(self.secretRef)",
                message="an envFrom entry needs exactly one of configMapRef and secretRef",
            )
        ],
    )


def _toleration() -> Schema:
    return _object(
        "The pod tolerates taints that match (the standard Toleration).",
        {
            "key": _string("Taint key to match; empty with operator Exists matches all."),
            "operator": _string(
                "How key and value are compared (default Equal).", enum=["Exists", "Equal"]
            ),
            "value": _string("Taint value to match (empty with operator Exists)."),
            "effect": _string(
                "Taint effect to match; empty matches all.",
                enum=["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ),
            "tolerationSeconds": _integer(
                "With effect NoExecute: how long the pod stays bound after the taint appears.",
                bits=64,
            ),
        },
    )


def _label_selector(description: str) -> Schema:
    return _object(
        description,
        {
            "matchLabels": _string_map("Labels that must all match."),
            "matchExpressions": _list(
                "Requirements that must all match.",
                _object(
                    "One label requirement.",
                    {
                        "key": _string("The label key."),
                        "operator": _string(
                            "The relation.", enum=["In", "NotIn", "Exists", "DoesNotExist"]
                        ),
                        "values": _list("Values for In and NotIn.", {"type": "string"}),
                    },
                    required=["key", "operator"],
                ),
            ),
        },
        atomic=True,
    )


def _node_selector_term() -> Schema:
    requirement = _object(
        "One node requirement.",
        {
            "key": _string("The label (or field) key."),
            "operator": _string(
                "The relation.", enum=["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
            ),
            "values": _list("Values (one integer for Gt and Lt).", {"type": "string"}),
        },
        required=["key", "operator"],
    )
    return _object(
        "Node requirements that must all match.",
        {
            "matchExpressions": _list("Requirements on node labels.", requirement),
            "matchFields": _list("Requirements on node fields.", requirement),
        },
        atomic=True,
    )


def _pod_affinity_term() -> Schema:
    return _object(
        "Pods (selected by labels, in some namespaces) this pod should be co-located with, "
        "or away from, within a topology domain.",
        {
            "labelSelector": _label_selector("Which pods."),
            "namespaceSelector": _label_selector("Which namespaces (with namespaces: union)."),
            "namespaces": _list("Namespace names (default: this pod's).", {"type": "string"}),
            "topologyKey": _string(
                "Node label whose value defines a domain, e.g. kubernetes.io/hostname.",
                min_length=1,
            ),
            "matchLabelKeys": _list(
                "Label keys whose values (from this pod) are added to labelSelector.",
                {"type": "string"},
            ),
            "mismatchLabelKeys": _list(
                "Label keys whose values (from this pod) must differ.", {"type": "string"}
            ),
        },
        required=["topologyKey"],
    )


def _weighted(description: str, field: str, term: Schema) -> Schema:
    return _object(
        description,
        {
            "weight": _integer("Weight, 1-100.", minimum=1, maximum=100),
            field: term,
        },
        required=["weight", field],
    )


def _pod_affinity(description: str) -> Schema:
    return _object(
        description,
        {
            "requiredDuringSchedulingIgnoredDuringExecution": _list(
                "Hard requirements.", _pod_affinity_term()
            ),
            "preferredDuringSchedulingIgnoredDuringExecution": _list(
                "Soft preferences.",
                _weighted("A weighted preference.", "podAffinityTerm", _pod_affinity_term()),
            ),
        },
    )


def _affinity() -> Schema:
    return _object(
        "Scheduling constraints of the worker pods (the standard Affinity).",
        {
            "nodeAffinity": _object(
                "Which nodes the pods may (or prefer to) run on.",
                {
                    "requiredDuringSchedulingIgnoredDuringExecution": _object(
                        "Hard requirement: one of the terms must match.",
                        {
                            "nodeSelectorTerms": _list(
                                "Terms, ORed.", _node_selector_term(), max_items=64
                            )
                        },
                        required=["nodeSelectorTerms"],
                        atomic=True,
                    ),
                    "preferredDuringSchedulingIgnoredDuringExecution": _list(
                        "Soft preferences.",
                        _weighted("A weighted preference.", "preference", _node_selector_term()),
                    ),
                },
            ),
            "podAffinity": _pod_affinity("Pods to be co-located with."),
            "podAntiAffinity": _pod_affinity(
                "Pods to stay away from (e.g. spread the replicas across nodes)."
            ),
        },
    )


# ------------------------------------------------------------------------- the spec


def _schedule() -> Schema:
    both = f"has(self.period) && has(self.jitter) && {_is_duration('self.period')}"
    return _object(
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
            "mode": _string(
                "Only with period. delay (default): the next run starts one period after the "
                "previous run ended. rate: runs start at fixed multiples of the period, "
                "without drift.",
                choices=["delay", "rate"],
            ),
            "cron": _string(
                "A five-field cron expression (minute hour day-of-month month day-of-week), "
                "e.g. '*/10 * * * *', or a macro such as @hourly. Evaluated in timeZone, "
                "correctly across daylight-saving changes.",
                max_length=128,
                rules=[
                    _rule(
                        f"self.matches('{CRON_PATTERN}')",
                        message_expression=(
                            "'schedule.cron ' + self + ' is not a cron expression; expected 5 "
                            "fields (minute hour day-of-month month day-of-week) or a macro "
                            "such as @hourly'"
                        ),
                    )
                ],
            ),
            "timeZone": _string(
                "Only with cron: the IANA time zone the cron expression is read in, "
                "e.g. Europe/Berlin (default UTC).",
                max_length=64,
                rules=[
                    _rule(
                        f"self.matches('{TIME_ZONE_PATTERN}')",
                        message_expression=(
                            "'schedule.timeZone ' + self + ' is not an IANA time zone name "
                            "(e.g. UTC, Europe/Berlin)'"
                        ),
                    )
                ],
            ),
            "runOnStart": _boolean(
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
            "misfire": _string(
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
            _rule(
                "has(self.period) != has(self.cron)",
                message="schedule needs exactly one of period and cron",
            ),
            _rule(
                "!has(self.timeZone) || has(self.cron)",
                message="schedule.timeZone applies only to a cron schedule",
                field_path=".timeZone",
                reason="FieldValueForbidden",
            ),
            _rule(
                "!has(self.mode) || has(self.period)",
                message="schedule.mode applies only to a period schedule",
                field_path=".mode",
                reason="FieldValueForbidden",
            ),
            _rule(
                "!has(self.misfireGrace) || (has(self.misfire) && self.misfire == 'catch_up')",
                message="schedule.misfireGrace applies only with misfire: catch_up",
                field_path=".misfireGrace",
                reason="FieldValueForbidden",
            ),
            _rule(
                f"!({both} && {_is_duration('self.jitter')} && has(self.mode) && "
                "self.mode == 'rate') || duration(self.jitter) < duration(self.period)",
                message="schedule.jitter must be shorter than schedule.period in rate mode",
                field_path=".jitter",
            ),
        ],
    )


def _lease() -> Schema:
    both = f"{_is_duration('self.ttl')} && {_is_duration('self.renewInterval')}"
    return _object(
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
            _rule(
                f"!has(self.renewInterval) || !({both}) || {_RENEW_AT_MOST_HALF}",
                message="lease.renewInterval must be at most half of lease.ttl",
                field_path=".renewInterval",
            )
        ],
    )


_REDIS_PREFIXES = ", ".join(NETWORK_URL_PREFIXES)


def _redis() -> Schema:
    return _object(
        "Where the leases live. Exactly one of url and urlSecretRef. Without redis the worker "
        "uses an in-process lease, which is only safe with one replica.",
        {
            "url": _string(
                f"A {_REDIS_PREFIXES} URL without a password (use urlSecretRef for one "
                "with a password). Sentinel: redis+sentinel://HOST:PORT,…/SERVICE; "
                "Cluster: redis+cluster://HOST:PORT,….",
                max_length=2048,
                rules=[
                    _rule(
                        " || ".join(f"self.startsWith('{p}')" for p in NETWORK_URL_PREFIXES),
                        message=f"redis.url must start with {_REDIS_PREFIXES}",
                    ),
                    _rule(
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
        },
        rules=[
            _rule(
                "has(self.url) != has(self.urlSecretRef)",
                message="redis needs exactly one of url and urlSecretRef",
            )
        ],
    )


def _spec() -> Schema:
    reserved = " || ".join(f"'{label}' in self" for label in RESERVED_POD_LABELS)
    return _object(
        "The desired state: which worker class runs, from which image, on which schedule, "
        "and how its pods are placed.",
        {
            "image": _string(
                "The worker image (its entrypoint is tickwork), e.g. "
                "registry.example.com/admin-workers:1.4.2.",
                min_length=1,
                max_length=512,
                rules=[
                    _rule(
                        f"self.matches('{IMAGE_PATTERN}')",
                        message_expression=(
                            "'image ' + self + ' is not an image reference; expected e.g. "
                            "registry.example.com/admin-workers:1.4.2 (lower-case name, "
                            "optional :tag and @sha256:digest)'"
                        ),
                    )
                ],
            ),
            "imagePullPolicy": _string(
                "When the kubelet pulls the image (default: Kubernetes' rule: Always for "
                ":latest, IfNotPresent otherwise).",
                choices=["Always", "IfNotPresent", "Never"],
            ),
            "worker": _string(
                "The worker class to run, as MODULE:CLASS, e.g. "
                "admin_workers.passive_users:PassiveUserCheckerWorker. The container runs "
                "`tickwork run MODULE:CLASS`.",
                min_length=3,
                max_length=253,
                rules=[
                    _rule(
                        f"self.matches('{WORKER_PATTERN}')",
                        message_expression=(
                            "'worker ' + self + ' is not MODULE:CLASS, e.g. "
                            "admin_workers.passive_users:PassiveUserCheckerWorker'"
                        ),
                    )
                ],
            ),
            "services": _string(
                "Optional MODULE:FUNCTION called with the svcs registry to register the "
                "worker's services (TICKWORK_SERVICES).",
                max_length=253,
                rules=[
                    _rule(
                        f"self.matches('{WORKER_PATTERN}')",
                        message_expression="'services ' + self + ' is not MODULE:FUNCTION'",
                    )
                ],
            ),
            "schedule": _schedule(),
            "replicas": _integer(
                f"How many replicas run (0 to {MAX_REPLICAS}; one executes each tick under the "
                "lease). More than one needs redis. kubectl scale bgw/NAME --replicas=N sets "
                "it.",
                minimum=0,
                maximum=MAX_REPLICAS,
                default=DEFAULTS.replicas,
            ),
            "suspend": _boolean(
                "Scale the worker to zero without deleting it; false resumes it.",
                default=DEFAULTS.suspend,
            ),
            "lease": _lease(),
            "redis": _redis(),
            "metrics": _object(
                "The port each replica serves /metrics, /healthz (liveness) and /readyz "
                "(readiness) on.",
                {
                    "port": _integer(
                        "Container port (1024-65535; the pods run as non-root).",
                        minimum=1024,
                        maximum=65535,
                        default=DEFAULTS.metrics_port,
                    ),
                    "scrape": _boolean(
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
            "log": _object(
                "The runtime's log output.",
                {
                    "format": _string(
                        "text or json (one JSON object per line).",
                        choices=["text", "json"],
                        default=DEFAULTS.log_format,
                    ),
                    "level": _string(
                        "Minimum level logged.",
                        choices=["debug", "info", "warning", "error"],
                        default=DEFAULTS.log_level,
                    ),
                },
                default={},
            ),
            "env": _list(
                "Extra environment variables of the worker container (standard EnvVar "
                "entries). TICKWORK_* names are refused: use the matching spec fields.",
                _env_var(),
                map_keys=["name"],
                max_items=128,
                rules=[
                    _rule(
                        "self.all(e, !e.name.startsWith('TICKWORK_'))",
                        message="env must not set TICKWORK_* variables; the operator sets them "
                        "from the spec (schedule, lease, redis, metrics, log)",
                    )
                ],
            ),
            "envFrom": _list(
                "ConfigMaps and Secrets whose keys all become environment variables "
                "(explicit env and the operator's TICKWORK_* variables win).",
                _env_from_source(),
                max_items=32,
                rules=[
                    _rule(
                        "self.all(e, !has(e.prefix) || !(e.prefix.startsWith('TICKWORK_') || "
                        "'TICKWORK_'.startsWith(e.prefix)) || e.prefix == '')",
                        message="envFrom prefix must not make TICKWORK_* variables; the "
                        "operator sets them from the spec",
                    )
                ],
            ),
            "resources": _resources(),
            "nodeSelector": _string_map("Node labels the pods must be scheduled on."),
            "tolerations": _list("Taints the pods tolerate.", _toleration(), max_items=64),
            "affinity": _affinity(),
            "imagePullSecrets": _list(
                "Secrets (names) the kubelet uses to pull the image.",
                _local_object_reference("A Secret of type kubernetes.io/dockerconfigjson."),
                max_items=16,
            ),
            "serviceAccountName": _string(
                "The pods' ServiceAccount. When unset the pods get the namespace's default "
                "one without a mounted API token (automountServiceAccountToken: false).",
                pattern=DNS_SUBDOMAIN_PATTERN,
                max_length=253,
            ),
            "podLabels": _with(
                _string_map(
                    "Extra labels of the pods. app.kubernetes.io/name, instance and "
                    "managed-by are the operator's.",
                    max_properties=64,
                ),
                rules=[
                    _rule(
                        f"!({reserved})",
                        message="podLabels must not set "
                        + ", ".join(RESERVED_POD_LABELS)
                        + "; the operator owns them",
                    )
                ],
            ),
            "podAnnotations": _string_map("Extra annotations of the pods.", max_properties=64),
            "podSecurityContext": _object(
                "Overrides of the restricted pod security context (the pods always run as "
                "non-root, with a RuntimeDefault seccomp profile, no privilege escalation, "
                "all capabilities dropped and a read-only root filesystem with a writable "
                "/tmp).",
                {
                    "runAsUser": _integer(
                        "UID the container runs as (default: the image's USER, which must "
                        "not be root).",
                        minimum=1,
                        bits=64,
                    ),
                    "runAsGroup": _integer("GID the container runs as.", minimum=0, bits=64),
                    "fsGroup": _integer("GID that owns mounted volumes.", minimum=0, bits=64),
                },
            ),
        },
        must_have=["image", "worker", "schedule"],
        rules=[
            _rule(
                "!has(self.replicas) || self.replicas <= 1 || has(self.redis)",
                message="replicas above 1 need spec.redis: with the in-process lease every "
                "replica would run every tick",
                field_path=".replicas",
            )
        ],
    )


# ------------------------------------------------------------------------- the status


def _condition() -> Schema:
    return _object(
        "One aspect of the current state (standard metav1.Condition).",
        {
            "type": _string("Ready, Progressing or Degraded.", min_length=1, max_length=316),
            "status": _string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "observedGeneration": _integer(
                "The metadata.generation this condition was computed for.", minimum=0, bits=64
            ),
            "lastTransitionTime": {
                "type": "string",
                "format": "date-time",
                "description": "When the status last changed.",
            },
            "reason": _string(
                "A CamelCase reason, e.g. RolloutComplete, SecretNotFound.",
                min_length=1,
                max_length=1024,
                pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
            ),
            "message": _string("A human-readable explanation.", max_length=MAX_CONDITION_MESSAGE),
        },
        required=["type", "status", "lastTransitionTime", "reason", "message"],
    )


def _status() -> Schema:
    return _object(
        "The observed state, kept current by the operator from the owned Deployment.",
        {
            "observedGeneration": _integer(
                "The metadata.generation the operator last acted on.", bits=64
            ),
            "replicas": _integer("Pods of the Deployment (all revisions)."),
            "readyReplicas": _integer("Pods passing their readiness probe (/readyz)."),
            "ready": _string("Ready replicas of the desired ones, e.g. 2/2 (the READY column)."),
            "updatedReplicas": _integer("Pods of the current revision."),
            "availableReplicas": _integer("Pods ready for at least minReadySeconds."),
            "selector": _string("Label selector of the pods (for the scale subresource and HPA)."),
            "suspended": _boolean("True while spec.suspend keeps the worker at zero replicas."),
            "schedule": _string("The schedule in one line (the SCHEDULE column)."),
            "deployment": _string("Name of the owned Deployment."),
            "conditions": _list(
                "Ready, Progressing and Degraded.", _condition(), map_keys=["type"]
            ),
        },
    )


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
                    "additionalPrinterColumns": [
                        {
                            "name": "Schedule",
                            "type": "string",
                            "jsonPath": ".status.schedule",
                            "description": "The schedule in one line.",
                        },
                        {
                            "name": "Replicas",
                            "type": "integer",
                            "jsonPath": ".spec.replicas",
                            "description": "Desired replicas.",
                        },
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": ".status.ready",
                            "description": "Ready replicas of the desired ones.",
                        },
                        {
                            "name": "Suspended",
                            "type": "boolean",
                            "jsonPath": ".spec.suspend",
                            "description": "Scaled to zero by spec.suspend.",
                        },
                        {
                            "name": "Age",
                            "type": "date",
                            "jsonPath": ".metadata.creationTimestamp",
                        },
                        {
                            "name": "Worker",
                            "type": "string",
                            "jsonPath": ".spec.worker",
                            "priority": 1,
                            "description": "MODULE:CLASS of the worker.",
                        },
                        {
                            "name": "Image",
                            "type": "string",
                            "jsonPath": ".spec.image",
                            "priority": 1,
                            "description": "The worker image.",
                        },
                    ],
                    "schema": {
                        "openAPIV3Schema": _object(
                            f"A BackgroundWorker ({API_VERSION}) runs one periodic worker "
                            "class of the tickwork runtime as a Deployment that the tickwork "
                            "operator owns: one replica executes each tick under a Redis "
                            "lease, every replica serves Prometheus metrics.",
                            {
                                "apiVersion": _string(
                                    "The versioned schema of this object: tickwork.dev/v1alpha1."
                                ),
                                "kind": _string("BackgroundWorker."),
                                "metadata": {"type": "object"},
                                "spec": _spec(),
                                "status": _status(),
                            },
                            must_have=["spec"],
                            rules=[
                                _rule(
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
