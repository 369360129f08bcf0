"""Exactly which API permissions the operator needs (one source for the Helm chart and tests).

* ``cluster_role_rules()``: what reconciling needs in every served namespace (a ClusterRole,
  bound cluster-wide or per namespace with RoleBindings).
* ``leader_election_rules()``: the coordination Lease, in the operator's own namespace only.
* ``secret_check_rules()``: only with ``--check-secret-references``. Without it the operator
  never touches Secrets: the Redis URL reaches the pods through ``secretKeyRef``.

Nothing here deletes a Deployment: the garbage collector does, through the owner reference.
"""

from __future__ import annotations

from typing import Any

from worker_operator.constants import GROUP, OPERATOR_NAME, PLURAL

__all__ = [
    "build_cluster_role",
    "cluster_role_rules",
    "leader_election_rules",
    "secret_check_rules",
]

Rule = dict[str, list[str]]


def _rule(api_group: str, resources: list[str], verbs: list[str]) -> Rule:
    return {"apiGroups": [api_group], "resources": resources, "verbs": verbs}


def cluster_role_rules() -> list[Rule]:
    return [
        # Watch the resources (kopf's event handlers write nothing on them).
        _rule(GROUP, [PLURAL], ["get", "list", "watch"]),
        _rule(GROUP, [f"{PLURAL}/status"], ["get", "patch"]),
        # The owner reference has blockOwnerDeletion (OwnerReferencesPermissionEnforcement).
        _rule(GROUP, [f"{PLURAL}/finalizers"], ["update"]),
        # Server-side apply creates (create) and updates (patch) the owned Deployments.
        _rule("apps", ["deployments"], ["get", "list", "watch", "create", "patch"]),
        # Each worker's PodDisruptionBudget, server-side applied like the Deployment.
        _rule("policy", ["poddisruptionbudgets"], ["create", "patch"]),
        # Pod states explain a Degraded worker (image pull errors, missing Secrets).
        _rule("", ["pods"], ["list", "watch"]),
        _rule("", ["events"], ["create", "patch"]),
        # Whether the operator whose election a Deployment names is alive (elections.py):
        # read-only, any namespace, since that operator's Lease may live anywhere.
        _rule("coordination.k8s.io", ["leases"], ["get"]),
    ]


def leader_election_rules() -> list[Rule]:
    return [_rule("coordination.k8s.io", ["leases"], ["get", "create", "update"])]


def secret_check_rules() -> list[Rule]:
    return [_rule("", ["secrets"], ["get"])]


def build_cluster_role(
    name: str = OPERATOR_NAME, *, check_secret_references: bool = False
) -> dict[str, Any]:
    rules = cluster_role_rules()
    if check_secret_references:
        rules += secret_check_rules()
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": OPERATOR_NAME}},
        "rules": rules,
    }
