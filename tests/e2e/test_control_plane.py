"""The test control plane behaves like a real cluster where the project relies on it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Binaries, Tool

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT = "--timeout=60s"


def apply(
    kubectl: Tool, manifest: dict[str, Any], *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", "-f", "-", input=json.dumps(manifest), check=check)


def kwok_node_names(kubectl: Tool) -> set[str]:
    nodes = kubectl.json("get", "nodes", "-o", "json")["items"]
    return {
        n["metadata"]["name"]
        for n in nodes
        if n["metadata"].get("annotations", {}).get("kwok.x-k8s.io/node") == "fake"
    }


def test_the_fixtures_use_the_binaries_that_the_build_script_caches(binaries: Binaries) -> None:
    script = 'source hack/lib.sh; for b in "${TW_ALL_BINARIES[@]}"; do echo "$b"; done'
    built = subprocess.run(
        ["bash", "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()

    assert built == [str(p) for p in vars(binaries).values()]
    assert binaries.missing() == []


def test_the_server_reports_kubernetes_1_34_and_is_ready(kubectl: Tool) -> None:
    version = kubectl.json("version", "-o", "json")

    assert version["serverVersion"]["gitVersion"].startswith("v1.34.")
    assert (version["serverVersion"]["major"], version["serverVersion"]["minor"]) == ("1", "34")
    assert kubectl("get", "--raw", "/readyz").stdout == "ok"


def test_the_cluster_has_at_least_two_ready_simulated_nodes(kubectl: Tool) -> None:
    names = kwok_node_names(kubectl)
    ready = kubectl("wait", "--for=condition=Ready", *(f"node/{n}" for n in sorted(names)), WAIT)

    assert len(names) >= 2
    assert ready.stdout.count("condition met") == len(names)


def test_a_deployment_with_three_replicas_becomes_available(kubectl: Tool, namespace: str) -> None:
    labels = {"app": "three"}
    apply(
        kubectl,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "three", "namespace": namespace},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "main", "image": "tickwork-e2e/idle:1"}]},
                },
            },
        },
    )

    kubectl("wait", "--for=condition=Available", "deployment/three", "-n", namespace, WAIT)
    deployment = kubectl.json("get", "deployment/three", "-n", namespace, "-o", "json")
    pods = kubectl.json("get", "pods", "-n", namespace, "-l", "app=three", "-o", "json")["items"]

    assert deployment["status"]["availableReplicas"] == 3
    assert deployment["status"]["readyReplicas"] == 3
    assert len(pods) == 3
    assert all(p["status"]["phase"] == "Running" for p in pods)
    assert all(
        c["status"] == "True"
        for p in pods
        for c in p["status"]["conditions"]
        if c["type"] == "Ready"
    )
    assert {p["spec"]["nodeName"] for p in pods} <= kwok_node_names(kubectl)


def test_deleting_an_owner_deletes_its_dependents(kubectl: Tool, namespace: str) -> None:
    kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = kubectl(
        "get", "configmap/owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout
    apply(
        kubectl,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "dependent",
                "namespace": namespace,
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}
                ],
            },
        },
    )

    kubectl("delete", "configmap/owner", "-n", namespace)
    kubectl("wait", "--for=delete", "configmap/dependent", "-n", namespace, WAIT)

    left = kubectl("get", "configmap/dependent", "-n", namespace, check=False)
    assert left.returncode != 0
    assert "NotFound" in left.stderr


def pod(
    name: str,
    namespace: str,
    *,
    container_security: dict[str, Any],
    pod_security: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            **({"securityContext": pod_security} if pod_security else {}),
            "containers": [
                {
                    "name": "main",
                    "image": "tickwork-e2e/idle:1",
                    "securityContext": container_security,
                }
            ],
        },
    }


def test_a_restricted_namespace_refuses_a_privileged_pod_and_admits_a_compliant_one(
    kubectl: Tool, namespace: str
) -> None:
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")

    refused = apply(
        kubectl,
        pod("privileged", namespace, container_security={"privileged": True}),
        check=False,
    )
    admitted = apply(
        kubectl,
        pod(
            "compliant",
            namespace,
            pod_security={
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            container_security={
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
        ),
    )

    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr
    assert "privileged" in refused.stderr
    assert "pod/compliant created" in admitted.stdout
    kubectl("wait", "--for=condition=Ready", "pod/compliant", "-n", namespace, WAIT)


def test_a_service_account_token_is_allowed_what_its_role_grants_and_nothing_else(
    kubectl: Tool, namespace: str, tmp_path: Path
) -> None:
    kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kubectl(
        "create",
        "role",
        "configmap-reader",
        "--verb=get,list",
        "--resource=configmaps",
        "-n",
        namespace,
    )
    kubectl(
        "create",
        "rolebinding",
        "reader",
        "--role=configmap-reader",
        f"--serviceaccount={namespace}:reader",
        "-n",
        namespace,
    )
    kubectl("create", "configmap", "visible", "--from-literal=k=v", "-n", namespace)
    token = kubectl("create", "token", "reader", "-n", namespace, "--duration=10m").stdout.strip()
    cluster = kubectl.json("config", "view", "--raw", "--minify", "-o", "json")["clusters"][0]
    sa_kubeconfig = tmp_path / "reader.kubeconfig"
    sa_kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster["cluster"]}],
                "users": [{"name": "reader", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "reader"}}],
                "current-context": "c",
            }
        )
    )
    as_reader = kubectl.with_kubeconfig(sa_kubeconfig)

    # The RBAC authorizer reads bindings from an informer cache: allow it a moment.
    deadline = time.monotonic() + 15
    while (
        listed := as_reader("get", "configmaps", "-n", namespace, "-o", "name", check=False)
    ).returncode:
        assert time.monotonic() < deadline, listed.stderr
        time.sleep(0.3)
    whoami = as_reader.json("auth", "whoami", "-o", "json")
    secrets = as_reader("get", "secrets", "-n", namespace, check=False)
    create = as_reader("create", "configmap", "forbidden", "-n", namespace, check=False)
    elsewhere = as_reader("get", "configmaps", "-n", "default", check=False)

    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:reader"
    assert "configmap/visible" in listed.stdout.split()
    assert secrets.returncode != 0
    assert "Forbidden" in secrets.stderr and 'cannot list resource "secrets"' in secrets.stderr
    assert create.returncode != 0
    assert 'cannot create resource "configmaps"' in create.stderr
    assert elsewhere.returncode != 0
    assert 'in the namespace "default"' in elsewhere.stderr


def test_helm_is_version_4(helm: Tool) -> None:
    assert helm("version", "--short").stdout.startswith("v4.")


def test_helm_installs_and_uninstalls_a_chart(
    helm: Tool, kubectl: Tool, namespace: str, tmp_path: Path
) -> None:
    chart = tmp_path / "throwaway"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: throwaway\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\nreplicas: 2\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    (chart / "templates" / "deployment.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n"
        "spec:\n  replicas: {{ .Values.replicas }}\n"
        "  selector: {matchLabels: {app: {{ .Release.Name }}}}\n"
        "  template:\n    metadata: {labels: {app: {{ .Release.Name }}}}\n"
        "    spec: {containers: [{name: main, image: tickwork-e2e/idle:1}]}\n"
    )

    helm(
        "install",
        "demo",
        str(chart),
        "-n",
        namespace,
        "--set",
        "greeting=from-e2e",
        "--wait",
        "--timeout=60s",
    )
    status = helm.json("status", "demo", "-n", namespace, "-o", "json")
    greeting = kubectl(
        "get", "configmap/demo-greeting", "-n", namespace, "-o", "jsonpath={.data.greeting}"
    ).stdout
    deployment = kubectl.json("get", "deployment/demo", "-n", namespace, "-o", "json")
    helm("uninstall", "demo", "-n", namespace, "--wait", "--timeout=60s")
    after = kubectl("get", "configmap/demo-greeting", "-n", namespace, check=False)

    assert status["info"]["status"] == "deployed"
    assert greeting == "from-e2e"
    assert deployment["status"]["availableReplicas"] == 2
    assert after.returncode != 0 and "NotFound" in after.stderr
