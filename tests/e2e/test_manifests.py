"""``kubectl apply -f manifests/`` against the real control plane, then the example.

manifests/ installs into the fixed namespace tickwork-system and a cluster-wide ClusterRole
named tickwork-operator, so the test removes them again (all but the CRD, which other
BackgroundWorkers may use) and waits until they are gone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.test_chart import (
    REPO,
    OperatorAsServiceAccount,
    get,
    wait_for_reconciled_deployment,
    wait_until,
)

if TYPE_CHECKING:
    from conftest import Tool

pytestmark = pytest.mark.e2e

MANIFESTS = REPO / "manifests"
OPERATOR_NAMESPACE = "tickwork-system"
OPERATOR = "tickwork-operator"


def remove_the_installation(kubectl: Tool) -> None:
    """Everything `kubectl apply -f manifests/` created, except the CRD."""
    kubectl(
        "delete",
        "-f",
        str(MANIFESTS / "02-operator.yaml"),
        "-f",
        str(MANIFESTS / "00-namespace.yaml"),
        "--ignore-not-found",
        "--wait=true",
        "--timeout=90s",
        timeout_seconds=120,
    )


@pytest.fixture
def clean_installation(kubectl: Tool) -> Iterator[None]:
    """No leftover of an earlier run before the test; nothing left after it."""
    remove_the_installation(kubectl)
    yield
    remove_the_installation(kubectl)


@pytest.mark.usefixtures("clean_installation")
def test_kubectl_apply_of_manifests_installs_an_operator_that_runs_the_example(
    kubectl: Tool, namespace: str, tmp_path: Path
) -> None:
    applied = kubectl("apply", "-f", str(MANIFESTS)).stdout.splitlines()
    kubectl(
        "rollout", "status", f"deployment/{OPERATOR}", "-n", OPERATOR_NAMESPACE, "--timeout=90s"
    )
    operator_deployment = get(kubectl, "deployment", OPERATOR, OPERATOR_NAMESPACE)
    cluster_role = get(kubectl, "clusterrole", OPERATOR)

    with OperatorAsServiceAccount(kubectl, operator_deployment, tmp_path) as operator:
        example = kubectl("apply", "-n", namespace, "-f", str(MANIFESTS / "examples"))
        started = time.monotonic()
        deployment = wait_for_reconciled_deployment(
            kubectl, "passive-user-checker", namespace, operator
        )
        elapsed = time.monotonic() - started
        forbidden = operator.forbidden_calls()
    worker = get(kubectl, "backgroundworker", "passive-user-checker", namespace)
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}

    assert f"namespace/{OPERATOR_NAMESPACE} created" in applied
    assert "customresourcedefinition.apiextensions.k8s.io/backgroundworkers.tickwork.dev" in (
        " ".join(applied)
    )
    assert f"deployment.apps/{OPERATOR} created" in applied
    assert operator_deployment["status"]["availableReplicas"] == 1
    assert cluster_role["metadata"]["labels"]["app.kubernetes.io/instance"] == "tickwork"
    assert "backgroundworker.tickwork.dev/passive-user-checker created" in example.stdout
    assert "secret/passive-user-checker-redis created" in example.stdout
    assert deployment["status"]["availableReplicas"] == 2
    assert env["TICKWORK_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "passive-user-checker-redis",
        "key": "url",
    }
    assert worker["status"]["readyReplicas"] == 2
    assert forbidden == []
    assert elapsed < 60


@pytest.mark.usefixtures("clean_installation")
def test_deleting_the_manifests_removes_the_operator_but_keeps_the_crd(kubectl: Tool) -> None:
    kubectl("apply", "-f", str(MANIFESTS))

    remove_the_installation(kubectl)
    wait_until(
        lambda: get(kubectl, "namespace", OPERATOR_NAMESPACE) is None,
        timeout=60,
        what=f"namespace {OPERATOR_NAMESPACE} to be gone",
    )

    assert get(kubectl, "clusterrole", OPERATOR) is None
    assert get(kubectl, "clusterrolebinding", OPERATOR) is None
    assert get(kubectl, "crd", "backgroundworkers.tickwork.dev") is not None
