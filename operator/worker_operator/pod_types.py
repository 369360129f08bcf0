"""The standard Kubernetes pod types a BackgroundWorker passes through to its pods.

Resource requirements, environment variables, tolerations, affinity, object references: the
same shapes as core/v1, with the schema's own checks (no CEL inside their unbounded lists,
which would exceed the API server's cost budget for the whole CRD).
"""

from __future__ import annotations

from worker_operator.schemas import Schema, array, boolean, integer, obj, rule, string, string_map

__all__ = [
    "DNS_SUBDOMAIN_PATTERN",
    "QUANTITY_PATTERN",
    "affinity",
    "env_from_source",
    "env_var",
    "local_object_reference",
    "quantity",
    "resources",
    "toleration",
]

DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
    r"|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def local_object_reference(description: str) -> Schema:
    return obj(
        description,
        {"name": string("Name of the referent.", min_length=1, max_length=253)},
        required=["name"],
        atomic=True,
    )


def quantity(description: str) -> Schema:
    return {
        "description": description,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": QUANTITY_PATTERN,
        "maxLength": 64,
        "x-kubernetes-int-or-string": True,
    }


def resources() -> Schema:
    quantities = {
        "type": "object",
        "maxProperties": 8,
        "additionalProperties": quantity("A resource quantity, e.g. 100m, 128Mi, 1."),
    }
    return obj(
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
            rule(
                "!has(self.requests) || !has(self.limits) || self.requests.all(k, "
                "!(k in self.limits) || !isQuantity(string(self.requests[k])) || "
                "!isQuantity(string(self.limits[k])) || "
                "quantity(string(self.requests[k])).compareTo("
                "quantity(string(self.limits[k]))) <= 0)",
                message="resources.requests must not exceed resources.limits for any resource",
            )
        ],
    )


def env_var() -> Schema:
    selector_key = {
        "key": string("The key to select.", min_length=1),
        "name": string("Name of the referent.", min_length=1, max_length=253),
        "optional": boolean("Whether the referent or its key may be missing."),
    }
    return obj(
        "One environment variable (the standard EnvVar).",
        {
            "name": string("Name of the variable.", min_length=1, max_length=256),
            "value": string("Literal value (may reference $(OTHER_VAR))."),
            "valueFrom": obj(
                "Source of the value; exactly one of its fields.",
                {
                    "configMapKeyRef": obj(
                        "A key of a ConfigMap.", selector_key, required=["key"], atomic=True
                    ),
                    "secretKeyRef": obj(
                        "A key of a Secret.", selector_key, required=["key"], atomic=True
                    ),
                    "fieldRef": obj(
                        "A field of the pod (downward API), e.g. metadata.name.",
                        {
                            "apiVersion": string("Schema version of fieldPath (default v1)."),
                            "fieldPath": string("Path of the field, e.g. status.podIP."),
                        },
                        required=["fieldPath"],
                        atomic=True,
                    ),
                    "resourceFieldRef": obj(
                        "A resource limit or request of a container, e.g. limits.memory.",
                        {
                            "containerName": string("Container name (default: this one)."),
                            "resource": string("Resource to select, e.g. limits.cpu."),
                            "divisor": quantity("Output unit, e.g. 1Mi (default 1)."),
                        },
                        required=["resource"],
                        atomic=True,
                    ),
                },
                rules=[
                    rule(
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
            rule(
                "!(has(self.value) && has(self.valueFrom))",
                message="an env entry has either value or valueFrom, not both",
            )
        ],
    )


def env_from_source() -> Schema:
    ref = {
        "name": string("Name of the referent.", min_length=1, max_length=253),
        "optional": boolean("Whether the referent may be missing."),
    }
    return obj(
        "A ConfigMap or Secret whose keys all become environment variables "
        "(the standard EnvFromSource).",
        {
            "prefix": string(
                "Prefix added to every variable name (not one that makes TICKWORK_* names).",
                max_length=253,
            ),
            "configMapRef": obj("The ConfigMap.", ref, required=["name"], atomic=True),
            "secretRef": obj("The Secret.", ref, required=["name"], atomic=True),
        },
        rules=[
            rule(
                "has(self.configMapRef) != has(self.secretRef)",
                message="an envFrom entry needs exactly one of configMapRef and secretRef",
            )
        ],
    )


def toleration() -> Schema:
    return obj(
        "The pod tolerates taints that match (the standard Toleration).",
        {
            "key": string("Taint key to match; empty with operator Exists matches all."),
            "operator": string(
                "How key and value are compared (default Equal).", enum=["Exists", "Equal"]
            ),
            "value": string("Taint value to match (empty with operator Exists)."),
            "effect": string(
                "Taint effect to match; empty matches all.",
                enum=["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ),
            "tolerationSeconds": integer(
                "With effect NoExecute: how long the pod stays bound after the taint appears.",
                bits=64,
            ),
        },
    )


def _label_selector(description: str) -> Schema:
    return obj(
        description,
        {
            "matchLabels": string_map("Labels that must all match."),
            "matchExpressions": array(
                "Requirements that must all match.",
                obj(
                    "One label requirement.",
                    {
                        "key": string("The label key."),
                        "operator": string(
                            "The relation.", enum=["In", "NotIn", "Exists", "DoesNotExist"]
                        ),
                        "values": array("Values for In and NotIn.", {"type": "string"}),
                    },
                    required=["key", "operator"],
                ),
            ),
        },
        atomic=True,
    )


def _node_selector_term() -> Schema:
    requirement = obj(
        "One node requirement.",
        {
            "key": string("The label (or field) key."),
            "operator": string(
                "The relation.", enum=["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
            ),
            "values": array("Values (one integer for Gt and Lt).", {"type": "string"}),
        },
        required=["key", "operator"],
    )
    return obj(
        "Node requirements that must all match.",
        {
            "matchExpressions": array("Requirements on node labels.", requirement),
            "matchFields": array("Requirements on node fields.", requirement),
        },
        atomic=True,
    )


def _pod_affinity_term() -> Schema:
    return obj(
        "Pods (selected by labels, in some namespaces) this pod should be co-located with, "
        "or away from, within a topology domain.",
        {
            "labelSelector": _label_selector("Which pods."),
            "namespaceSelector": _label_selector("Which namespaces (with namespaces: union)."),
            "namespaces": array("Namespace names (default: this pod's).", {"type": "string"}),
            "topologyKey": string(
                "Node label whose value defines a domain, e.g. kubernetes.io/hostname.",
                min_length=1,
            ),
            "matchLabelKeys": array(
                "Label keys whose values (from this pod) are added to labelSelector.",
                {"type": "string"},
            ),
            "mismatchLabelKeys": array(
                "Label keys whose values (from this pod) must differ.", {"type": "string"}
            ),
        },
        required=["topologyKey"],
    )


def _weighted(description: str, field: str, term: Schema) -> Schema:
    return obj(
        description,
        {
            "weight": integer("Weight, 1-100.", minimum=1, maximum=100),
            field: term,
        },
        required=["weight", field],
    )


def _pod_affinity(description: str) -> Schema:
    return obj(
        description,
        {
            "requiredDuringSchedulingIgnoredDuringExecution": array(
                "Hard requirements.", _pod_affinity_term()
            ),
            "preferredDuringSchedulingIgnoredDuringExecution": array(
                "Soft preferences.",
                _weighted("A weighted preference.", "podAffinityTerm", _pod_affinity_term()),
            ),
        },
    )


def affinity() -> Schema:
    return obj(
        "Scheduling constraints of the worker pods (the standard Affinity).",
        {
            "nodeAffinity": obj(
                "Which nodes the pods may (or prefer to) run on.",
                {
                    "requiredDuringSchedulingIgnoredDuringExecution": obj(
                        "Hard requirement: one of the terms must match.",
                        {
                            "nodeSelectorTerms": array(
                                "Terms, ORed.", _node_selector_term(), max_items=64
                            )
                        },
                        required=["nodeSelectorTerms"],
                        atomic=True,
                    ),
                    "preferredDuringSchedulingIgnoredDuringExecution": array(
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
