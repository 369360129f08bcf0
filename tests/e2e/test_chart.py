"""The Helm chart against the real control plane: install, reconcile, upgrade, uninstall.

Pods only run on simulated (kwok) nodes, so the chart's operator pod shows Running without
running anything. What the pod would do is done by a ``tickwork-operator`` process started
with the flags of the chart's Deployment and a kubeconfig holding a token of the chart's
ServiceAccount: if the chart's RBAC were short of anything, reconciling would fail.

The helpers here (``install``, ``OperatorAsServiceAccount`` ...) are shared with
test_manifests.py and test_security.py.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.support import processes
from tests.support.processes import free_port

if TYPE_CHECKING:
    from conftest import Tool

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tickwork"
#: The console script of the operator, installed into the same venv as pytest.
OPERATOR_COMMAND = Path(sys.executable).with_name("tickwork-operator")
WORKER_IMAGE = "tickwork/example-worker:0.1.0"
WORKER_CLASS = "examples.passive_users:PassiveUserCheckerWorker"
#: Probes here are kubectl/API calls: poll at a gentler pace than the default.
wait_until = functools.partial(processes.wait_until, interval=0.2)


# --------------------------------------------------------------------------- helpers


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:6]}"


def get(kubectl: Tool, kind: str, name: str, namespace: str | None = None) -> Any:
    """The object as JSON, or None when it does not exist."""
    scope = ["-n", namespace] if namespace else []
    result = kubectl("get", kind, name, *scope, "-o", "json", check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise AssertionError(result.stderr)
    return json.loads(result.stdout)


def apply(kubectl: Tool, *objects: dict[str, Any]) -> None:
    kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
    )


def background_worker(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "tickwork.dev/v1alpha1",
        "kind": "BackgroundWorker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": WORKER_IMAGE,
            "worker": WORKER_CLASS,
            "schedule": {"period": "10m"},
            **spec,
        },
    }


def make_namespace(kubectl: Tool, name: str, *, labels: dict[str, str] | None = None) -> str:
    apply(
        kubectl,
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": labels or {}},
        },
    )
    kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=30s")
    return name


def delete_namespace(kubectl: Tool, name: str) -> None:
    kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false")


def install(
    helm: Tool, release: str, namespace: str, *values: str, wait: bool = True
) -> subprocess.CompletedProcess[str]:
    """``helm install`` of the chart; ``values`` are ``--set`` expressions."""
    sets = [arg for value in values for arg in ("--set", value)]
    waiting = ["--wait", "--timeout=120s"] if wait else []
    return helm(
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        *sets,
        *waiting,
        timeout_seconds=180,
    )


def uninstall(helm: Tool, release: str, namespace: str) -> None:
    helm(
        "uninstall",
        release,
        "--namespace",
        namespace,
        "--wait",
        "--ignore-not-found",
        timeout_seconds=180,
    )


def container_args(deployment: dict[str, Any]) -> list[str]:
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def service_account_kubeconfig(kubectl: Tool, *, name: str, namespace: str, path: Path) -> Path:
    """A kubeconfig for the test cluster that authenticates with a ServiceAccount token."""
    token = kubectl("create", "token", name, "-n", namespace, "--duration=1h").stdout.strip()
    cluster = kubectl.json("config", "view", "--raw", "--minify", "-o", "json")["clusters"][0]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": cluster["cluster"]}],
                "users": [{"name": name, "user": {"token": token}}],
                "contexts": [{"name": name, "context": {"cluster": "test", "user": name}}],
                "current-context": name,
            }
        ),
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


class OperatorAsServiceAccount:
    """``tickwork-operator`` with the flags of an installed operator Deployment, run as a
    local process with a token of that Deployment's ServiceAccount (what its pod would do)."""

    def __init__(self, kubectl: Tool, deployment: dict[str, Any], workdir: Path) -> None:
        pod = deployment["spec"]["template"]["spec"]
        namespace = deployment["metadata"]["namespace"]
        self.service_account = f"system:serviceaccount:{namespace}:{pod['serviceAccountName']}"
        self.kubeconfig = service_account_kubeconfig(
            kubectl,
            name=pod["serviceAccountName"],
            namespace=namespace,
            path=workdir / f"{pod['serviceAccountName']}.kubeconfig",
        )
        self.port = free_port()
        # The Deployment's own flags; only the listen address moves to a free local port.
        self.args = [
            *container_args(deployment),
            "--http-host=127.0.0.1",
            f"--http-port={self.port}",
        ]
        self.env = {
            **os.environ,
            # kopf's login reads $KUBECONFIG; in the pod it would use the mounted token.
            "KUBECONFIG": str(self.kubeconfig),
            "POD_NAME": f"{deployment['metadata']['name']}-{uuid.uuid4().hex[:5]}",
            "POD_NAMESPACE": namespace,
        }
        self.env.pop("KUBERNETES_SERVICE_HOST", None)
        self.log_path = workdir / "operator.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> OperatorAsServiceAccount:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(OPERATOR_COMMAND), *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=REPO,
            )
        wait_until(self.is_leading, timeout=30, what="the operator to lead", details=self.tail)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                pytest.fail(f"the operator ignored SIGTERM\n{self.tail()}")

    def is_leading(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"the operator exited with {self.process.returncode}\n{self.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                return r.status == 200 and json.loads(r.read()).get("role") == "leader"
        except (OSError, ValueError, urllib.error.HTTPError):
            return False

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "operator log (tail):\n" + "\n".join(text.splitlines()[-lines:])

    def forbidden_calls(self) -> list[str]:
        """Log lines where the API server refused the operator (RBAC short of something)."""
        refused = re.compile(re.escape(self.service_account) + r"\W+cannot ")
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if refused.search(line)]


def wait_for_reconciled_deployment(
    kubectl: Tool, name: str, namespace: str, operator: OperatorAsServiceAccount
) -> dict[str, Any]:
    """The worker's Deployment, once it is Available and its BackgroundWorker is Ready."""
    wait_until(
        lambda: get(kubectl, "deployment", name, namespace),
        timeout=30,
        what=f"the Deployment of BackgroundWorker {namespace}/{name}",
        details=operator.tail,
    )
    kubectl(
        "wait",
        "--for=condition=Available",
        f"deployment/{name}",
        "-n",
        namespace,
        "--timeout=60s",
    )
    kubectl(
        "wait",
        "--for=condition=Ready",
        f"backgroundworker/{name}",
        "-n",
        namespace,
        "--timeout=60s",
    )
    deployment: dict[str, Any] = get(kubectl, "deployment", name, namespace)
    return deployment


def release_objects(kubectl: Tool, release: str, namespace: str) -> list[str]:
    """Every object the release's label selects, in its namespace and cluster-wide."""
    selector = f"app.kubernetes.io/instance={release}"
    namespaced = kubectl(
        "get",
        "deployments,replicasets,pods,services,serviceaccounts,secrets,roles,rolebindings,"
        "networkpolicies,configmaps",
        "-n",
        namespace,
        "-l",
        selector,
        "-o",
        "name",
    ).stdout.split()
    cluster = kubectl(
        "get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name"
    ).stdout.split()
    return namespaced + cluster


@pytest.fixture
def release(helm: Tool, namespace: str) -> Iterator[str]:
    """A unique release name (its ClusterRole is cluster-wide); uninstalled after the test."""
    name = unique("tw")
    yield name
    uninstall(helm, name, namespace)


# --------------------------------------------------------------------------- tests


def test_a_background_worker_gets_its_deployment_from_the_chart_installed_operator(
    helm: Tool, kubectl: Tool, namespace: str, release: str, tmp_path: Path
) -> None:
    install(helm, release, namespace)
    operator_deployment = get(kubectl, "deployment", f"{release}-tickwork-operator", namespace)
    pods = kubectl.json(
        "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=operator", "-o", "json"
    )["items"]
    workers = make_namespace(kubectl, f"{namespace[:50]}-w")
    try:
        with OperatorAsServiceAccount(kubectl, operator_deployment, tmp_path) as operator:
            apply(kubectl, background_worker("passive-users", workers, replicas=1))
            deployment = wait_for_reconciled_deployment(kubectl, "passive-users", workers, operator)
            forbidden = operator.forbidden_calls()
    finally:
        delete_namespace(kubectl, workers)

    assert operator_deployment["status"]["availableReplicas"] == 1
    assert [p["status"]["phase"] for p in pods] == ["Running"]
    assert "--all-namespaces" in container_args(operator_deployment)
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "BackgroundWorker"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "tickwork-operator"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == WORKER_IMAGE
    assert forbidden == []


def test_in_namespaced_mode_the_operator_serves_only_the_listed_namespaces(
    helm: Tool, kubectl: Tool, namespace: str, release: str, tmp_path: Path
) -> None:
    served = make_namespace(kubectl, f"{namespace[:50]}-s")
    try:
        install(helm, release, namespace, f"watchNamespaces={{{served}}}")
        operator_deployment = get(kubectl, "deployment", f"{release}-tickwork-operator", namespace)
        with OperatorAsServiceAccount(kubectl, operator_deployment, tmp_path) as operator:
            as_operator = kubectl.with_kubeconfig(operator.kubeconfig)
            apply(
                kubectl,
                background_worker("in-served", served),
                background_worker("in-release-namespace", namespace),
            )
            wait_for_reconciled_deployment(kubectl, "in-served", served, operator)
            time.sleep(3)  # the other worker had as long, and more, to get a Deployment
            unserved = get(kubectl, "deployment", "in-release-namespace", namespace)
            can_list_served = as_operator(
                "auth", "can-i", "list", "backgroundworkers", "-n", served, check=False
            )
            can_list_other = as_operator(
                "auth", "can-i", "list", "backgroundworkers", "-n", namespace, check=False
            )
            can_list_all = as_operator(
                "auth", "can-i", "list", "backgroundworkers", "-A", check=False
            )
        cluster_roles = kubectl(
            "get", "clusterroles", "-l", f"app.kubernetes.io/instance={release}", "-o", "name"
        ).stdout.split()
    finally:
        delete_namespace(kubectl, served)

    assert f"--namespace={served}" in container_args(operator_deployment)
    assert unserved is None
    assert can_list_served.stdout.strip() == "yes"
    assert can_list_other.stdout.strip() == "no"
    assert can_list_all.stdout.strip() == "no"
    assert cluster_roles == []


def test_helm_upgrade_rolls_out_a_changed_value_and_uninstall_leaves_no_operator_objects(
    helm: Tool, kubectl: Tool, namespace: str, release: str
) -> None:
    install(helm, release, namespace)
    name = f"{release}-tickwork-operator"
    before = get(kubectl, "deployment", name, namespace)

    helm(
        "upgrade",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--reuse-values",
        "--set",
        "operator.logLevel=debug",
        "--set",
        "replicaCount=2",
        "--wait",
        "--timeout=120s",
        timeout_seconds=180,
    )
    after = get(kubectl, "deployment", name, namespace)
    history = helm.json("history", release, "--namespace", namespace, "-o", "json")
    objects_before_uninstall = release_objects(kubectl, release, namespace)

    helm("uninstall", release, "--namespace", namespace, "--wait", timeout_seconds=180)
    wait_until(
        lambda: not release_objects(kubectl, release, namespace),
        timeout=60,
        what="the release's objects to be gone",
        details=lambda: "\n".join(release_objects(kubectl, release, namespace)),
    )
    status = helm("status", release, "--namespace", namespace, check=False)

    assert "--log-level=info" in container_args(before)
    assert "--log-level=debug" in container_args(after)
    assert "--log-level=info" not in container_args(after)
    assert after["status"]["availableReplicas"] == 2
    assert after["status"]["updatedReplicas"] == 2
    assert [h["revision"] for h in history] == [1, 2]
    assert history[-1]["status"] == "deployed"
    assert f"clusterrole.rbac.authorization.k8s.io/{name}" in objects_before_uninstall
    assert f"serviceaccount/{name}" in objects_before_uninstall
    assert status.returncode != 0
    assert "not found" in status.stderr
    # helm never deletes CRDs: BackgroundWorkers elsewhere outlive the operator's release.
    assert get(kubectl, "crd", "backgroundworkers.tickwork.dev") is not None


def test_helm_install_refuses_a_value_of_the_wrong_type_and_creates_nothing(
    helm: Tool, kubectl: Tool, namespace: str, release: str
) -> None:
    result = helm(
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--set",
        "replicaCount=two",
        check=False,
    )

    assert result.returncode != 0
    assert "at '/replicaCount': got string, want integer" in result.stderr
    assert helm.json("list", "--namespace", namespace, "-o", "json") == []
    assert release_objects(kubectl, release, namespace) == []
