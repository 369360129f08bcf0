"""Which Deployment fields only other managers own (read from managedFields), and who owns it."""

from __future__ import annotations

from typing import Any

from worker_operator.ownership import controller_of, foreign_fields, labelled_for

WORKER = 'k:{"name":"worker"}'
SIDECAR = 'k:{"name":"sidecar"}'


def deployment(managed: list[dict[str, Any]], *, host_network: bool = True) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "containers": [
            {
                "name": "worker",
                "image": "w:1",
                "env": [{"name": "A", "value": "1"}, {"name": "INJECTED", "value": "1"}],
            },
            {"name": "sidecar", "image": "s:1"},
        ]
    }
    if host_network:
        pod["hostNetwork"] = True
    return {
        "metadata": {"name": "w", "managedFields": managed},
        "spec": {"replicas": 1, "template": {"spec": pod}},
    }


def entry(manager: str, spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"manager": manager, "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": spec}, **extra}


OURS = entry(
    "tickwork-operator",
    {
        "f:replicas": {},
        "f:template": {
            "f:spec": {
                "f:containers": {
                    WORKER: {
                        ".": {},
                        "f:name": {},
                        "f:image": {},
                        "f:env": {'k:{"name":"A"}': {".": {}, "f:name": {}, "f:value": {}}},
                    }
                }
            }
        },
    },
    operation="Apply",
)
PATCHED = entry(
    "kubectl-patch",
    {
        "f:replicas": {},
        "f:template": {
            "f:spec": {
                "f:hostNetwork": {},
                "f:containers": {
                    WORKER: {
                        "f:env": {'k:{"name":"INJECTED"}': {".": {}, "f:name": {}, "f:value": {}}}
                    },
                    SIDECAR: {".": {}, "f:name": {}, "f:image": {}},
                },
            }
        },
    },
    operation="Update",
)


def test_fields_only_another_manager_owns_are_listed_once_each_by_their_top() -> None:
    found = foreign_fields(deployment([OURS, PATCHED]), own_manager="tickwork-operator")

    assert found == [
        "spec.template.spec.hostNetwork",
        "spec.template.spec.containers[name=sidecar]",
        "spec.template.spec.containers[name=worker].env[name=INJECTED]",
    ]


def test_fields_the_operator_owns_too_and_status_updates_are_not_foreign() -> None:
    scaled = entry("kubectl", {"f:replicas": {}}, operation="Update", subresource="scale")
    status = entry("kube-controller-manager", {"f:paused": {}}, subresource="status")
    repair = entry("tickwork-operator-repair", {"f:template": {"f:spec": {"f:hostNetwork": {}}}})

    found = foreign_fields(
        deployment([OURS, scaled, status, repair]), own_manager="tickwork-operator"
    )

    assert found == []


def test_a_field_a_manager_still_lists_but_that_is_gone_is_not_foreign() -> None:
    hand = entry("kubectl-patch", {"f:template": {"f:spec": {"f:hostNetwork": {}}}})

    found = foreign_fields(
        deployment([OURS, hand], host_network=False), own_manager="tickwork-operator"
    )

    assert found == []


def test_the_operators_labels_mark_its_deployment_and_the_controller_is_found() -> None:
    labels = {
        "app.kubernetes.io/managed-by": "tickwork-operator",
        "app.kubernetes.io/instance": "w",
    }
    ref = {"kind": "BackgroundWorker", "name": "w", "uid": "u1", "controller": True}
    owned = {"metadata": {"labels": labels, "ownerReferences": [{"uid": "x"}, ref]}}

    assert labelled_for(owned, "w")
    assert not labelled_for(owned, "other")
    assert not labelled_for({"metadata": {"labels": {"app.kubernetes.io/instance": "w"}}}, "w")
    assert controller_of(owned) == ref
    assert controller_of({"metadata": {}}) is None
