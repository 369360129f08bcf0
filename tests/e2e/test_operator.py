"""The operator against the real control plane (kube-apiserver, controller-manager, scheduler,
kwok nodes): the CRD applied with kubectl, the operator running as a process with its own
ServiceAccount kubeconfig (only the permissions of ``worker_operator.rbac``).

Each test gets its own namespace and, where it needs one, its own operator process serving
only that namespace.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.support import processes
from tests.support.processes import free_port
from worker_operator.crd import MAX_DURATION
from worker_operator.rbac import build_cluster_role, leader_election_rules, secret_check_rules

if TYPE_CHECKING:
    from conftest import Tool

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE = "registry.example.com/admin-workers:1.4.2"
WORKER = "admin_workers.passive_users:PassiveUserCheckerWorker"
#: Probes here are kubectl/API calls: poll at a gentler pace than the default.
wait_until = functools.partial(processes.wait_until, interval=0.1)


# --------------------------------------------------------------------------- helpers


def worker_manifest(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "tickwork.dev/v1alpha1",
        "kind": "BackgroundWorker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"image": IMAGE, "worker": WORKER, "schedule": {"period": "10m"}, **spec},
    }


def apply(kubectl: Tool, manifest: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(manifest))


def get(kubectl: Tool, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    result = kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise AssertionError(result.stderr)
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for item in ((obj or {}).get("status") or {}).get("conditions") or ():
        if item.get("type") == kind:
            return dict(item)
    return {}


def container_env(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def is_ready(kubectl: Tool, name: str, namespace: str, *, generation: int | None = None) -> bool:
    worker = get(kubectl, "bgw", name, namespace)
    if worker is None:
        return False
    observed = (worker.get("status") or {}).get("observedGeneration")
    wanted = worker["metadata"]["generation"] if generation is None else generation
    return observed == wanted and condition(worker, "Ready").get("status") == "True"


def metric_value(text: str, sample: str) -> float:
    """The value of one sample (name plus labels, exactly as exposed) in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {sample} in:\n{text}")


def events_for(kubectl: Tool, name: str, namespace: str) -> list[dict[str, Any]]:
    items = kubectl.json(
        "get",
        "events",
        "-n",
        namespace,
        "-o",
        "json",
        "--field-selector",
        f"involvedObject.kind=BackgroundWorker,involvedObject.name={name}",
    )["items"]
    return list(items)


# --------------------------------------------------------------------------- the operator


@dataclass
class OperatorAccount:
    """A ServiceAccount with exactly the operator's RBAC rules, and a kubeconfig for it."""

    namespace: str
    name: str
    kubeconfig: Path
    cluster_role: str


class OperatorProcess:
    """``python -m worker_operator`` as a child process, with its log in a file."""

    def __init__(
        self,
        *,
        account: OperatorAccount,
        namespaces: list[str],
        log_path: Path,
        lease_id: str,
        extra_args: list[str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.lease_id = lease_id
        self.log_path = log_path
        self.args = [
            sys.executable,
            "-m",
            "worker_operator",
            *[f"--namespace={ns}" for ns in namespaces],
            f"--http-port={self.port}",
            "--http-host=127.0.0.1",
            f"--leader-election-namespace={account.namespace}",
            f"--leader-election-id={lease_id}",
            "--lease-duration=4s",
            "--renew-deadline=3s",
            "--retry-period=500ms",
            "--degraded-recheck=2s",
            "--log-level=debug",
            *(extra_args or []),
        ]
        self.env = {
            **os.environ,
            "KUBECONFIG": str(account.kubeconfig),
            "POD_NAME": f"op-{uuid.uuid4().hex[:6]}",
            **(extra_env or {}),
        }
        self.identity = self.env["POD_NAME"]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO_ROOT
        )
        log.close()
        return self

    def health(self, path: str = "/readyz") -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=1) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")
        except (OSError, ValueError):
            return 0, {}

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            return str(r.read().decode())

    def is_leading(self) -> bool:
        status, body = self.health()
        return status == 200 and body.get("role") == "leader"

    def wait_leading(self, timeout: float = 20) -> OperatorProcess:
        wait_until(self.is_leading, timeout=timeout, what="the operator to lead", details=self.tail)
        return self

    def tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "operator log (tail):\n" + "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 15) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                pytest.fail(f"the operator ignored SIGTERM for {timeout:g}s\n{self.tail()}")
        return self.process.returncode


@pytest.fixture(scope="module")
def crd(kubectl: Tool) -> str:
    """The generated CRD, applied with kubectl as a user would."""
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=tickwork-e2e",
        "-f",
        str(REPO_ROOT / "manifests" / "01-crd.yaml"),
    )
    kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/backgroundworkers.tickwork.dev"
    )
    wait_until(
        lambda: kubectl("get", "bgw", "-A", check=False).returncode == 0,
        timeout=30,
        what="the API server to serve backgroundworkers",
    )
    return "backgroundworkers.tickwork.dev"


@pytest.fixture(scope="module")
def operator_account(
    kubectl: Tool, kubeconfig: Path, crd: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorAccount]:
    """A namespace for the operator, its ServiceAccount, ClusterRole (from rbac.py) and a
    kubeconfig holding the ServiceAccount's token."""
    suffix = uuid.uuid4().hex[:6]
    account = OperatorAccount(
        namespace=f"e2e-operator-{suffix}",
        name="tickwork-operator",
        kubeconfig=tmp_path_factory.mktemp("operator") / "kubeconfig",
        cluster_role=f"tickwork-operator-e2e-{suffix}",
    )
    subject = {"kind": "ServiceAccount", "name": account.name, "namespace": account.namespace}
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": account.namespace}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account.name, "namespace": account.namespace},
        },
        build_cluster_role(account.cluster_role),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": account.cluster_role},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": account.cluster_role,
            },
            "subjects": [subject],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "leader-election", "namespace": account.namespace},
            "rules": leader_election_rules(),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "leader-election", "namespace": account.namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "leader-election",
            },
            "subjects": [subject],
        },
    ]
    kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    )
    try:
        token = kubectl(
            "create", "token", account.name, "-n", account.namespace, "--duration=2h"
        ).stdout.strip()
        admin = kubectl.json("config", "view", "--raw", "--minify", "-o", "json")
        cluster = admin["clusters"][0]["cluster"]
        account.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "e2e", "cluster": cluster}],
                    "users": [{"name": "operator", "user": {"token": token}}],
                    "contexts": [
                        {"name": "operator", "context": {"cluster": "e2e", "user": "operator"}}
                    ],
                    "current-context": "operator",
                }
            )
        )
        account.kubeconfig.chmod(0o600)
        yield account
    finally:
        kubectl(
            "delete",
            "clusterrolebinding,clusterrole",
            account.cluster_role,
            "--ignore-not-found",
            "--wait=false",
        )
        kubectl("delete", "namespace", account.namespace, "--ignore-not-found", "--wait=false")


def grant(
    kubectl: Tool, account: OperatorAccount, namespace: str, name: str, rules: list[Any]
) -> None:
    """A Role ``name`` with ``rules`` in ``namespace``, bound to the operator's account."""
    subject = {"kind": "ServiceAccount", "name": account.name, "namespace": account.namespace}
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": rules,
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [subject],
    }
    kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [role, binding]}),
    )


@pytest.fixture
def start_operator(
    operator_account: OperatorAccount, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operator processes (stopped, and checked for a clean exit, after the test)."""
    started: list[OperatorProcess] = []

    def start(
        namespaces: list[str],
        *,
        lease_id: str | None = None,
        extra_args: list[str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> OperatorProcess:
        process = OperatorProcess(
            account=operator_account,
            namespaces=namespaces,
            log_path=tmp_path / f"operator-{len(started)}.log",
            lease_id=lease_id or f"op-{uuid.uuid4().hex[:8]}",
            extra_args=extra_args,
            extra_env=extra_env,
        ).start()
        started.append(process)
        return process

    yield start
    for process in started:
        code = process.stop()
        if code not in (None, 0, -signal.SIGKILL):
            pytest.fail(f"the operator exited with {code}\n{process.tail()}")


@pytest.fixture
def operator(start_operator: Callable[..., OperatorProcess], namespace: str) -> OperatorProcess:
    """One leading operator serving only this test's namespace."""
    return start_operator([namespace]).wait_leading()


# --------------------------------------------------------------------------- reconciling


def change_period(
    kubectl: Tool,
    operator: OperatorProcess,
    name: str,
    namespace: str,
    period: str,
    *,
    timeout: float,
) -> dict[str, Any]:
    """Patch the worker's period; return its Deployment once it carries the new one."""
    patch = {"spec": {"schedule": {"period": period}}}
    kubectl("patch", "bgw", name, "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    changed: dict[str, Any] = wait_until(
        lambda: (
            (d := get(kubectl, "deployment", name, namespace))
            and container_env(d)["TICKWORK_PERIOD"] == period
            and d
        ),
        timeout=timeout,
        what=f"period {period} in the Deployment",
        details=operator.tail,
    )
    return changed


def test_a_new_worker_gets_its_deployment_within_five_seconds_and_turns_ready(
    kubectl: Tool, namespace: str, operator: OperatorProcess
) -> None:
    apply(
        kubectl,
        worker_manifest(
            "passive-users",
            namespace,
            replicas=2,
            redis={"url": "redis://redis.example:6379/0"},
            schedule={"period": "10m", "runOnStart": True},
        ),
    )
    applied_at = time.monotonic()

    deployment = wait_until(
        lambda: get(kubectl, "deployment", "passive-users", namespace),
        timeout=5,
        what="the Deployment",
        details=operator.tail,
    )
    created_after = time.monotonic() - applied_at
    kubectl(
        "wait",
        "--for=condition=Available",
        "deployment/passive-users",
        "-n",
        namespace,
        "--timeout=60s",
    )
    wait_until(
        lambda: is_ready(kubectl, "passive-users", namespace),
        timeout=30,
        what="Ready=True",
        details=operator.tail,
    )
    worker = get(kubectl, "bgw", "passive-users", namespace)
    assert worker is not None
    env = container_env(deployment)
    pod_spec = deployment["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    table = kubectl("get", "bgw", "passive-users", "-n", namespace).stdout

    assert created_after < 5
    assert container["args"] == ["run", WORKER]
    assert env["TICKWORK_NAME"] == f"{namespace}.passive-users"
    assert env["TICKWORK_PERIOD"] == "10m"
    assert env["TICKWORK_RUN_ON_START"] == "true"
    assert env["TICKWORK_REPLICA_ID"] == {
        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["terminationGracePeriodSeconds"] == 40
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == worker["metadata"]["uid"]
    managers = {
        f["manager"]
        for f in kubectl.json(
            "get",
            "deployment",
            "passive-users",
            "-n",
            namespace,
            "-o",
            "json",
            "--show-managed-fields",
        )["metadata"]["managedFields"]
        if f["operation"] == "Apply"
    }
    assert managers == {"tickwork-operator"}
    assert worker["status"]["readyReplicas"] == 2
    assert worker["status"]["selector"] == (
        "app.kubernetes.io/instance=passive-users,app.kubernetes.io/name=tickwork-worker"
    )
    assert condition(worker, "Degraded")["status"] == "False"
    assert table.split("\n")[0].split() == [
        "NAME",
        "SCHEDULE",
        "READY",
        "STATUS",
        "REASON",
        "HOLDER",
        "LAST",
        "SUCCESS",
        "NEXT",
        "AGE",
    ]
    row = table.split("\n")[1].split()
    # kwok's pods serve no status document: HOLDER, LAST SUCCESS and NEXT stay empty.
    assert row[:6] == ["passive-users", "every", "10m", "2/2", "True", "ReplicasReady"]
    assert len(row) == 7  # the three empty cells, then AGE


def test_changing_the_period_changes_the_environment_and_rolls_the_deployment(
    kubectl: Tool, namespace: str, operator: OperatorProcess
) -> None:
    apply(kubectl, worker_manifest("reports", namespace))
    wait_until(
        lambda: is_ready(kubectl, "reports", namespace),
        timeout=30,
        what="Ready",
        details=operator.tail,
    )
    before = get(kubectl, "deployment", "reports", namespace)
    assert before is not None

    after = change_period(kubectl, operator, "reports", namespace, "2m", timeout=5)
    kubectl("rollout", "status", "deployment/reports", "-n", namespace, "--timeout=60s")
    wait_until(
        lambda: is_ready(kubectl, "reports", namespace, generation=2),
        timeout=30,
        what="Ready at generation 2",
        details=operator.tail,
    )
    pods = kubectl.json(
        "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=reports", "-o", "json"
    )["items"]
    hashes = {
        p["metadata"]["labels"]["pod-template-hash"]
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
    }

    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert hashes and before["metadata"]["uid"] == after["metadata"]["uid"]
    assert all(
        h != (before["spec"]["template"]["metadata"]["labels"].get("pod-template-hash"))
        for h in hashes
    )
    replica_sets = kubectl.json(
        "get",
        "replicasets",
        "-n",
        namespace,
        "-l",
        "app.kubernetes.io/instance=reports",
        "-o",
        "json",
    )["items"]
    assert len(replica_sets) == 2  # the rollout made a new ReplicaSet


def test_suspend_scales_to_zero_and_says_so_and_resume_restores_the_replicas(
    kubectl: Tool, namespace: str, operator: OperatorProcess
) -> None:
    apply(
        kubectl,
        worker_manifest(
            "nightly", namespace, replicas=2, redis={"url": "redis://redis.example:6379/0"}
        ),
    )
    wait_until(
        lambda: is_ready(kubectl, "nightly", namespace),
        timeout=30,
        what="Ready",
        details=operator.tail,
    )

    kubectl(
        "patch",
        "bgw",
        "nightly",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"suspend": true}}',
    )
    wait_until(
        lambda: (
            (get(kubectl, "deployment", "nightly", namespace) or {}).get("spec", {}).get("replicas")
            == 0
        ),
        timeout=5,
        what="zero replicas",
    )
    suspended = wait_until(
        lambda: (
            (w := get(kubectl, "bgw", "nightly", namespace))
            and (w.get("status") or {}).get("suspended") is True
            and condition(w, "Progressing").get("reason") == "Suspended"
            and w
        ),
        timeout=30,
        what="the suspended status",
        details=operator.tail,
    )

    kubectl(
        "patch",
        "bgw",
        "nightly",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"suspend": false}}',
    )
    wait_until(
        lambda: is_ready(kubectl, "nightly", namespace, generation=3),
        timeout=30,
        what="Ready again",
        details=operator.tail,
    )
    resumed = get(kubectl, "bgw", "nightly", namespace)
    deployment = get(kubectl, "deployment", "nightly", namespace)

    assert condition(suspended, "Ready")["reason"] == "Suspended"
    assert suspended["status"]["replicas"] == 0
    assert deployment is not None and deployment["spec"]["replicas"] == 2
    assert resumed is not None and resumed["status"]["readyReplicas"] == 2
    assert resumed["status"]["suspended"] is False


def test_kubectl_scale_sets_the_replicas_of_the_worker(
    kubectl: Tool, namespace: str, operator: OperatorProcess
) -> None:
    apply(
        kubectl, worker_manifest("scaled", namespace, redis={"url": "redis://redis.example:6379/0"})
    )
    wait_until(
        lambda: is_ready(kubectl, "scaled", namespace),
        timeout=30,
        what="Ready",
        details=operator.tail,
    )

    kubectl("scale", "bgw/scaled", "--replicas=3", "-n", namespace)

    wait_until(
        lambda: is_ready(kubectl, "scaled", namespace, generation=2),
        timeout=30,
        what="Ready with 3 replicas",
        details=operator.tail,
    )
    scale = kubectl.json(
        "get",
        "--raw",
        f"/apis/tickwork.dev/v1alpha1/namespaces/{namespace}/backgroundworkers/scaled/scale",
    )
    deployment = get(kubectl, "deployment", "scaled", namespace)

    assert deployment is not None and deployment["spec"]["replicas"] == 3
    assert scale["spec"]["replicas"] == 3
    assert scale["status"]["replicas"] == 3
    assert scale["status"]["selector"] == (
        "app.kubernetes.io/instance=scaled,app.kubernetes.io/name=tickwork-worker"
    )


def test_deleting_the_worker_removes_its_deployment(
    kubectl: Tool, namespace: str, operator: OperatorProcess
) -> None:
    apply(kubectl, worker_manifest("short-lived", namespace))
    wait_until(
        lambda: get(kubectl, "deployment", "short-lived", namespace),
        timeout=5,
        what="the Deployment",
        details=operator.tail,
    )

    kubectl("delete", "bgw", "short-lived", "-n", namespace, "--wait=true")

    wait_until(
        lambda: get(kubectl, "deployment", "short-lived", namespace) is None,
        timeout=30,
        what="the garbage collector to delete the Deployment",
    )
    time.sleep(1)  # the operator saw the Deployment go; it must not bring it back
    assert get(kubectl, "deployment", "short-lived", namespace) is None


def test_the_worker_pods_get_a_disruption_budget_that_follows_the_spec_and_goes_with_it(
    kubectl: Tool, namespace: str, operator: OperatorProcess
) -> None:
    apply(kubectl, worker_manifest("single", namespace))
    wait_until(
        lambda: is_ready(kubectl, "single", namespace),
        timeout=30,
        what="the single-replica worker Ready",
        details=operator.tail,
    )
    apply(
        kubectl,
        worker_manifest(
            "drained", namespace, replicas=3, redis={"url": "redis://redis.example:6379/0"}
        ),
    )

    def budget(allowed: int) -> dict[str, Any] | None:
        found = get(kubectl, "poddisruptionbudget", "drained", namespace)
        status = (found or {}).get("status") or {}
        return found if status.get("disruptionsAllowed") == allowed else None

    # The disruption controller counts the Ready pods: 3 healthy, 1 may go.
    first = wait_until(
        lambda: budget(1), timeout=60, what="a budget allowing 1 disruption", details=operator.tail
    )
    assert first["spec"]["maxUnavailable"] == 1
    assert first["metadata"]["ownerReferences"][0]["kind"] == "BackgroundWorker"
    # One replica needs no budget (none could keep it up through a drain).
    assert get(kubectl, "poddisruptionbudget", "single", namespace) is None
    deployment = get(kubectl, "deployment", "drained", namespace)
    assert deployment is not None
    assert first["spec"]["selector"] == deployment["spec"]["selector"]

    kubectl(
        "patch", "bgw", "drained", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"podDisruptionBudget": {"maxUnavailable": 2}}}),
    )  # fmt: skip
    wait_until(lambda: budget(2), timeout=30, what="a budget allowing 2", details=operator.tail)

    kubectl(
        "patch", "bgw", "drained", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"podDisruptionBudget": {"enabled": False}}}),
    )  # fmt: skip
    unlimited = wait_until(lambda: budget(3), timeout=30, what="no limit", details=operator.tail)
    assert unlimited["spec"]["maxUnavailable"] == "100%"

    kubectl("delete", "bgw", "drained", "-n", namespace, "--wait=true")
    wait_until(
        lambda: get(kubectl, "poddisruptionbudget", "drained", namespace) is None,
        timeout=30,
        what="the garbage collector to delete the budget",
    )


def test_a_deployment_changed_or_deleted_by_hand_is_put_back_within_five_seconds(
    kubectl: Tool, namespace: str, operator: OperatorProcess
) -> None:
    apply(kubectl, worker_manifest("guarded", namespace))
    wait_until(
        lambda: is_ready(kubectl, "guarded", namespace),
        timeout=30,
        what="Ready",
        details=operator.tail,
    )
    original = get(kubectl, "deployment", "guarded", namespace)
    assert original is not None

    kubectl("scale", "deployment/guarded", "--replicas=4", "-n", namespace)
    kubectl("set", "env", "deployment/guarded", "-n", namespace, "TICKWORK_PERIOD=1s")
    repaired = wait_until(
        lambda: (
            (d := get(kubectl, "deployment", "guarded", namespace))
            and d["spec"]["replicas"] == 1
            and container_env(d)["TICKWORK_PERIOD"] == "10m"
            and d
        ),
        timeout=5,
        what="the edited Deployment to be put back",
        details=operator.tail,
    )

    kubectl("delete", "deployment", "guarded", "-n", namespace, "--wait=true")
    recreated = wait_until(
        lambda: (
            (d := get(kubectl, "deployment", "guarded", namespace))
            and d["metadata"]["uid"] != original["metadata"]["uid"]
            and d
        ),
        timeout=5,
        what="the deleted Deployment to be recreated",
        details=operator.tail,
    )
    reasons = [e["reason"] for e in events_for(kubectl, "guarded", namespace)]

    assert repaired["metadata"]["uid"] == original["metadata"]["uid"]
    assert container_env(recreated)["TICKWORK_PERIOD"] == "10m"
    assert "DeploymentRestored" in reasons
    assert metric_value(operator.metrics(), "tickwork_operator_drift_repairs_total") >= 2


def _wait_ready(
    kubectl: Tool,
    operator: OperatorProcess,
    name: str,
    namespace: str,
    *,
    generation: int | None = None,
) -> None:
    wait_until(
        lambda: is_ready(kubectl, name, namespace, generation=generation),
        timeout=30,
        what=f"Ready at generation {generation or 'current'}",
        details=operator.tail,
    )


def _ready_worker(kubectl: Tool, operator: OperatorProcess, name: str, namespace: str) -> None:
    apply(kubectl, worker_manifest(name, namespace))
    _wait_ready(kubectl, operator, name, namespace)


def _wait_degraded(
    kubectl: Tool,
    operator: OperatorProcess,
    name: str,
    namespace: str,
    reason: str,
    *,
    timeout: float,
) -> None:
    wait_until(
        lambda: condition(get(kubectl, "bgw", name, namespace), "Degraded").get("reason") == reason,
        timeout=timeout,
        what=f"Degraded={reason}",
        details=operator.tail,
    )


def _owned_deployment(
    kubectl: Tool, operator: OperatorProcess, name: str, namespace: str
) -> dict[str, Any]:
    """The Deployment once it has an owner reference again (within 5 s)."""
    found: dict[str, Any] = wait_until(
        lambda: (
            (d := get(kubectl, "deployment", name, namespace))
            and d["metadata"].get("ownerReferences")
            and d
        ),
        timeout=5,
        what=f"Deployment {name} owned by its worker",
        details=operator.tail,
    )
    return found


def _pod_template(kubectl: Tool, name: str, namespace: str) -> dict[str, Any]:
    deployment = get(kubectl, "deployment", name, namespace)
    assert deployment is not None
    return dict(deployment["spec"]["template"]["spec"])


def _reasons(kubectl: Tool, name: str, namespace: str) -> list[str]:
    return [e["reason"] for e in events_for(kubectl, name, namespace)]


def test_fields_added_to_the_deployment_by_hand_are_removed_and_the_event_says_which(
    kubectl: Tool, namespace: str, operator: OperatorProcess
) -> None:
    _ready_worker(kubectl, operator, "hardened", namespace)
    built = _pod_template(kubectl, "hardened", namespace)
    added = {
        "spec": {
            "template": {
                "spec": {
                    "hostNetwork": True,
                    "hostPID": True,
                    "containers": [
                        {"name": "worker", "env": [{"name": "INJECTED", "value": "1"}]},
                        {"name": "sidecar", "image": "registry.example.com/sidecar:1"},
                    ],
                }
            }
        }
    }

    kubectl("patch", "deployment", "hardened", "-n", namespace, "-p", json.dumps(added))

    def as_built() -> bool:
        return _pod_template(kubectl, "hardened", namespace) == built

    wait_until(
        as_built, timeout=5, what="the pod template as the operator built it", details=operator.tail
    )
    time.sleep(2)  # whatever the watches still deliver must not bring anything back
    restored = [
        e["message"]
        for e in events_for(kubectl, "hardened", namespace)
        if e["reason"] == "DeploymentRestored"
    ]

    assert as_built()
    assert len(restored) == 1
    for path in ("hostNetwork", "hostPID", "containers[name=sidecar]", "env[name=INJECTED]"):
        assert path in restored[0]
    assert metric_value(operator.metrics(), "tickwork_operator_drift_repairs_total") == 1


def test_a_worker_with_a_spec_of_320_kb_is_reconciled_and_changed_like_any_other(
    kubectl: Tool, namespace: str, operator: OperatorProcess
) -> None:
    env = [{"name": f"BIG_{i:03d}", "value": "x" * 2500} for i in range(128)]
    manifest = worker_manifest("big", namespace, env=env)
    assert len(json.dumps(manifest)) > 320_000
    kubectl("create", "-f", "-", input=json.dumps(manifest))
    _wait_ready(kubectl, operator, "big", namespace)

    changed = change_period(kubectl, operator, "big", namespace, "2m", timeout=10)
    _wait_ready(kubectl, operator, "big", namespace, generation=2)
    worker = get(kubectl, "bgw", "big", namespace)
    assert worker is not None
    log = operator.log_path.read_text(errors="replace")

    assert container_env(changed)["BIG_127"] == "x" * 2500
    assert not [k for k in worker["metadata"].get("annotations") or {} if "tickwork.dev" in k]
    assert "Too long" not in log
    assert "Traceback" not in log


def test_a_conflict_is_rechecked_as_soon_as_the_conflicting_deployment_is_deleted(
    kubectl: Tool, namespace: str, operator: OperatorProcess
) -> None:
    kubectl("create", "deployment", "taken", "-n", namespace, f"--image={IMAGE}")
    apply(kubectl, worker_manifest("taken", namespace))
    _wait_degraded(kubectl, operator, "taken", namespace, "DeploymentConflict", timeout=10)

    kubectl("delete", "deployment", "taken", "-n", namespace, "--wait=true")

    owned = _owned_deployment(kubectl, operator, "taken", namespace)
    _wait_ready(kubectl, operator, "taken", namespace)
    assert owned["metadata"]["ownerReferences"][0]["kind"] == "BackgroundWorker"


def test_one_hand_edit_gives_one_repair_and_one_event_however_many_watch_events_follow(
    kubectl: Tool, namespace: str, operator: OperatorProcess
) -> None:
    _ready_worker(kubectl, operator, "steady", namespace)

    kubectl("scale", "deployment/steady", "--replicas=4", "-n", namespace)
    wait_until(
        lambda: (get(kubectl, "deployment", "steady", namespace) or {})["spec"]["replicas"] == 1,
        timeout=5,
        what="one replica again",
        details=operator.tail,
    )
    time.sleep(3)  # the scale-up's own watch events (ReplicaSet, status) arrive meanwhile
    after_scale = _reasons(kubectl, "steady", namespace).count("DeploymentRestored")

    kubectl("set", "image", "deployment/steady", f"worker={IMAGE}-other", "-n", namespace)
    kubectl("delete", "deployment", "steady", "-n", namespace, "--wait=true")
    wait_until(
        lambda: get(kubectl, "deployment", "steady", namespace),
        timeout=5,
        what="the Deployment recreated",
        details=operator.tail,
    )
    time.sleep(3)
    reasons = _reasons(kubectl, "steady", namespace)
    repairs = metric_value(operator.metrics(), "tickwork_operator_drift_repairs_total")

    assert after_scale == 1
    assert 2 <= reasons.count("DeploymentRestored") <= 3  # the image may be seen changed
    assert repairs == reasons.count("DeploymentRestored")


def test_a_deployment_whose_owner_reference_was_removed_by_hand_is_adopted_again(
    kubectl: Tool, namespace: str, operator: OperatorProcess
) -> None:
    _ready_worker(kubectl, operator, "orphaned", namespace)

    kubectl(
        "patch",
        "deployment",
        "orphaned",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op": "remove", "path": "/metadata/ownerReferences"}]',
    )
    adopted = _owned_deployment(kubectl, operator, "orphaned", namespace)
    worker = get(kubectl, "bgw", "orphaned", namespace)
    kubectl("delete", "bgw", "orphaned", "-n", namespace, "--wait=true")
    wait_until(
        lambda: get(kubectl, "deployment", "orphaned", namespace) is None,
        timeout=30,
        what="the garbage collector to delete the Deployment with its worker",
    )

    assert worker is not None
    assert adopted["metadata"]["ownerReferences"][0]["uid"] == worker["metadata"]["uid"]
    assert condition(worker, "Degraded")["reason"] == "AsExpected"
    assert "DeploymentAdopted" in _reasons(kubectl, "orphaned", namespace)


def _apiserver_reads(kubectl: Tool) -> float:
    """GETs and LISTs of workers, Deployments and pods the API server has served so far."""
    total = 0.0
    for line in kubectl("get", "--raw", "/metrics").stdout.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = line[line.index("{") + 1 : line.rindex("}")]
        if 'verb="GET"' not in labels and 'verb="LIST"' not in labels:
            continue
        if any(f'resource="{r}"' in labels for r in ("backgroundworkers", "deployments", "pods")):
            total += float(line.split()[-1])
    return total


def test_a_degraded_worker_is_looked_at_less_and_less_often_and_costs_no_reads(
    kubectl: Tool, namespace: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    operator = start_operator(
        [namespace], extra_args=["--degraded-recheck=500ms", "--degraded-recheck-max=4s"]
    ).wait_leading()
    apply(
        kubectl,
        worker_manifest("stuck", namespace, nodeSelector={"tickwork.dev/no-such-node": "true"}),
    )
    _wait_degraded(kubectl, operator, "stuck", namespace, "Unschedulable", timeout=30)
    time.sleep(3)  # past the first, short rechecks
    # Namespaces of earlier tests being deleted: their controllers' reads would count too.
    wait_until(
        lambda: (
            not [
                ns
                for ns in kubectl.json("get", "namespaces", "-o", "json")["items"]
                if ns.get("status", {}).get("phase") == "Terminating"
            ]
        ),
        timeout=180,
        interval=1,
        what="no namespace being deleted",
    )

    before_reads = _apiserver_reads(kubectl)
    before = metric_value(
        operator.metrics(),
        'tickwork_operator_reconciles_total{result="degraded",trigger="requeue"}',
    )
    time.sleep(12)  # nothing polled meanwhile: the operator alone reads
    reads = _apiserver_reads(kubectl) - before_reads
    rechecks = (
        metric_value(
            operator.metrics(),
            'tickwork_operator_reconciles_total{result="degraded",trigger="requeue"}',
        )
        - before
    )

    assert 2 <= rechecks <= 4  # every 4s at most, not every 500ms (24)
    assert reads <= 3  # the old rechecks read the worker, its Deployment and pods each time


def test_the_http_port_in_use_is_one_line_and_exit_2_before_anything_starts(
    operator_account: OperatorAccount, namespace: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = OperatorProcess(
            account=operator_account,
            namespaces=[namespace],
            log_path=tmp_path / "operator.log",
            lease_id=f"port-{uuid.uuid4().hex[:6]}",
            extra_args=[f"--http-port={port}"],
        ).start()
        assert process.process is not None
        code = process.process.wait(timeout=30)
    log = process.log_path.read_text()

    assert code == 2
    assert "Traceback" not in log
    assert [line for line in log.splitlines() if "ERROR" in line] == [
        line
        for line in log.splitlines()
        if f"cannot serve /healthz, /readyz and /metrics on 127.0.0.1:{port}" in line
    ]
    assert "leader" not in log.lower()  # no leader election started


def test_an_operator_that_cannot_use_its_lease_is_not_ready(
    namespace: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    # The operator's ServiceAccount may use Leases only in its own namespace, not in default.
    operator = start_operator([namespace], extra_args=["--leader-election-namespace=default"])
    wait_until(
        lambda: "cannot read or write the leader Lease" in operator.tail(),
        timeout=20,
        what="the operator to try the Lease",
        details=operator.tail,
    )
    time.sleep(1)

    status, body = operator.health("/readyz")

    assert (status, body.get("role")) == (503, "follower")


def test_deleting_a_namespace_with_workers_gives_no_recreation_and_no_misleading_warnings(
    kubectl: Tool, namespace: str, operator: OperatorProcess
) -> None:
    names = [f"doomed-{i:02d}" for i in range(20)]
    kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [worker_manifest(n, namespace) for n in names],
            }
        ),
    )
    wait_until(
        lambda: (
            len(kubectl("get", "deployments", "-n", namespace, "-o", "name").stdout.split()) == 20
        ),
        timeout=30,
        what="20 Deployments",
        details=operator.tail,
    )

    kubectl("delete", "namespace", namespace, "--wait=true", timeout_seconds=120)
    time.sleep(2)
    log = operator.log_path.read_text(errors="replace")

    assert "RBAC" not in log
    assert "Traceback" not in log
    assert operator.process is not None and operator.process.poll() is None


def test_a_missing_redis_secret_gives_degraded_and_a_warning_event(
    kubectl: Tool,
    namespace: str,
    operator_account: OperatorAccount,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    # Only this test's operator may look up Secrets (metadata only), only in this namespace.
    grant(kubectl, operator_account, namespace, "secret-check", secret_check_rules())
    operator = start_operator([namespace], extra_args=["--check-secret-references"])
    operator.wait_leading()

    apply(
        kubectl,
        worker_manifest(
            "needs-redis",
            namespace,
            replicas=2,
            redis={"urlSecretRef": {"name": "redis", "key": "url"}},
        ),
    )
    degraded = wait_until(
        lambda: (
            (w := get(kubectl, "bgw", "needs-redis", namespace))
            and condition(w, "Degraded").get("status") == "True"
            and w
        ),
        timeout=10,
        what="Degraded=True",
        details=operator.tail,
    )
    warnings = wait_until(
        lambda: [
            e for e in events_for(kubectl, "needs-redis", namespace) if e["type"] == "Warning"
        ],
        timeout=5,
        what="a Warning Event",
    )
    deployment = get(kubectl, "deployment", "needs-redis", namespace)

    kubectl(
        "create",
        "secret",
        "generic",
        "redis",
        "-n",
        namespace,
        "--from-literal=url=redis://redis.example:6379/0",
    )
    recovered = wait_until(
        lambda: (
            (w := get(kubectl, "bgw", "needs-redis", namespace))
            and condition(w, "Degraded").get("status") == "False"
            and w
        ),
        timeout=15,
        what="Degraded=False once the Secret exists",
        details=operator.tail,
    )

    assert condition(degraded, "Degraded")["reason"] == "SecretNotFound"
    assert condition(degraded, "Degraded")["message"].startswith(
        f'Secret "redis" (key "url", from spec.redis.urlSecretRef) does not exist in namespace '
        f"{namespace}"
    )
    assert [(e["reason"], e["source"]["component"]) for e in warnings] == [
        ("SecretNotFound", "tickwork-operator")
    ]
    assert deployment is not None
    assert container_env(deployment)["TICKWORK_REDIS_URL"] == {
        "secretKeyRef": {"name": "redis", "key": "url"}
    }
    assert "redis://" not in json.dumps(deployment)
    assert condition(recovered, "Degraded")["reason"] == "AsExpected"
    assert operator.process is not None and operator.process.poll() is None  # no crash


def test_a_spec_the_schema_cannot_refuse_is_degraded_with_an_event_and_no_deployment(
    kubectl: Tool, namespace: str, operator: OperatorProcess
) -> None:
    apply(kubectl, worker_manifest("never", namespace, schedule={"cron": "0 0 31 2 *"}))

    degraded = wait_until(
        lambda: (
            (w := get(kubectl, "bgw", "never", namespace))
            and condition(w, "Degraded").get("status") == "True"
            and w
        ),
        timeout=10,
        what="Degraded=True",
        details=operator.tail,
    )
    events = wait_until(lambda: events_for(kubectl, "never", namespace), timeout=5, what="an Event")

    assert condition(degraded, "Degraded")["reason"] == "InvalidSpec"
    assert "never matches" in condition(degraded, "Degraded")["message"]
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "InvalidSpec")]
    assert get(kubectl, "deployment", "never", namespace) is None
    assert operator.process is not None and operator.process.poll() is None


def test_pods_that_cannot_be_scheduled_and_a_stuck_rollout_show_as_degraded(
    kubectl: Tool, namespace: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    operator = start_operator([namespace], extra_args=["--progress-deadline=3s"]).wait_leading()
    apply(
        kubectl,
        worker_manifest("nowhere", namespace, nodeSelector={"tickwork.dev/no-such-node": "true"}),
    )

    degraded = wait_until(
        lambda: (
            (w := get(kubectl, "bgw", "nowhere", namespace))
            and condition(w, "Degraded").get("reason") == "Unschedulable"
            and condition(w, "Progressing").get("reason") == "ProgressDeadlineExceeded"
            and w
        ),
        timeout=30,
        what="Degraded=Unschedulable and a rollout past its deadline",
        details=operator.tail,
    )
    warnings = [(e["type"], e["reason"]) for e in events_for(kubectl, "nowhere", namespace)]

    assert condition(degraded, "Degraded")["status"] == "True"
    assert "didn't match Pod's node affinity/selector" in condition(degraded, "Degraded")["message"]
    assert condition(degraded, "Progressing")["status"] == "False"
    assert condition(degraded, "Ready")["status"] == "False"
    assert ("Warning", "Unschedulable") in warnings


def test_without_namespaces_the_operator_serves_every_namespace(
    kubectl: Tool, namespace: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    operator = start_operator([]).wait_leading()

    apply(kubectl, worker_manifest("anywhere", namespace))

    wait_until(
        lambda: is_ready(kubectl, "anywhere", namespace),
        timeout=30,
        what="Ready",
        details=operator.tail,
    )
    assert get(kubectl, "deployment", "anywhere", namespace) is not None


def test_the_operator_killed_during_a_burst_of_fifty_workers_converges_after_restart(
    kubectl: Tool, namespace: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    lease = f"burst-{uuid.uuid4().hex[:6]}"
    first = start_operator([namespace], lease_id=lease).wait_leading()
    names = [f"burst-{i:02d}" for i in range(50)]
    burst = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [worker_manifest(n, namespace, schedule={"period": "1m"}) for n in names],
    }
    applying = threading.Thread(
        target=lambda: kubectl("apply", "-f", "-", input=json.dumps(burst)), daemon=True
    )

    def deployments() -> int:
        out = kubectl("get", "deployments", "-n", namespace, "-o", "name").stdout
        return len(out.split())

    applying.start()
    wait_until(
        lambda: deployments() >= 5,
        timeout=20,
        what="the first Deployments",
        details=first.tail,
        interval=0.05,
    )
    first.kill()
    killed_with = deployments()
    applying.join(timeout=60)
    second = start_operator([namespace], lease_id=lease).wait_leading(timeout=30)

    def all_ready() -> bool:
        items = kubectl.json("get", "bgw", "-n", namespace, "-o", "json")["items"]
        return len(items) == 50 and all(
            (i.get("status") or {}).get("observedGeneration") == i["metadata"]["generation"]
            and condition(i, "Ready").get("status") == "True"
            for i in items
        )

    wait_until(all_ready, timeout=120, interval=1, what="all 50 workers Ready", details=second.tail)
    owned = kubectl.json("get", "deployments", "-n", namespace, "-o", "json")["items"]

    assert killed_with < 50  # the first operator really died mid-burst
    assert sorted(d["metadata"]["name"] for d in owned) == names
    assert all(d["status"].get("availableReplicas") == 1 for d in owned)


def test_kubeconfig_flag_is_used_for_the_watches_too_even_when_kubeconfig_env_names_another(
    kubectl: Tool,
    namespace: str,
    operator_account: OperatorAccount,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    # $KUBECONFIG names the same cluster with a token the API server refuses (401).
    refused = yaml.safe_load(operator_account.kubeconfig.read_text())
    refused["users"][0]["user"]["token"] = "not-a-valid-token"
    wrong = tmp_path / "refused-kubeconfig"
    wrong.write_text(yaml.safe_dump(refused))
    operator = start_operator(
        [namespace],
        extra_args=[f"--kubeconfig={operator_account.kubeconfig}"],
        extra_env={"KUBECONFIG": str(wrong)},
    ).wait_leading()

    apply(kubectl, worker_manifest("flagged", namespace))

    wait_until(
        lambda: get(kubectl, "deployment", "flagged", namespace),
        timeout=10,
        what="the Deployment (kopf's watches must use --kubeconfig)",
        details=operator.tail,
    )


def test_only_one_of_two_operators_reconciles_and_the_other_takes_over(
    kubectl: Tool, namespace: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    lease = f"ha-{uuid.uuid4().hex[:6]}"
    first = start_operator([namespace], lease_id=lease).wait_leading()
    second = start_operator([namespace], lease_id=lease)
    wait_until(
        lambda: second.health()[1].get("role") == "follower",
        timeout=20,
        what="the second operator to follow",
        details=second.tail,
    )
    apply(kubectl, worker_manifest("ha", namespace))
    wait_until(
        lambda: is_ready(kubectl, "ha", namespace), timeout=30, what="Ready", details=first.tail
    )
    follower_metrics = second.metrics()

    first.kill()
    second.wait_leading(timeout=20)
    kubectl(
        "patch",
        "bgw",
        "ha",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"schedule": {"period": "3m"}}}',
    )
    wait_until(
        lambda: (
            (d := get(kubectl, "deployment", "ha", namespace))
            and container_env(d)["TICKWORK_PERIOD"] == "3m"
        ),
        timeout=10,
        what="the new leader to apply the change",
        details=second.tail,
    )
    holder = kubectl.json("get", "lease", lease, "-n", _lease_namespace(first), "-o", "json")[
        "spec"
    ]["holderIdentity"]

    assert "tickwork_operator_leader 0.0" in follower_metrics
    assert "tickwork_operator_reconciles_total{" not in follower_metrics
    assert "tickwork_operator_leader 1.0" in second.metrics()
    assert holder == second.identity


def test_two_operators_under_different_leases_do_not_both_reconcile_a_worker(
    kubectl: Tool,
    namespace: str,
    operator_account: OperatorAccount,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    # A second install: the same rights, its Lease in another namespace (this test's).
    grant(kubectl, operator_account, namespace, "second-election", leader_election_rules())
    first = start_operator([namespace]).wait_leading()
    apply(kubectl, worker_manifest("contested", namespace))
    wait_until(
        lambda: is_ready(kubectl, "contested", namespace),
        timeout=30,
        what="Ready",
        details=first.tail,
    )
    second = start_operator(
        [namespace], extra_args=[f"--leader-election-namespace={namespace}"]
    ).wait_leading()
    change_period(kubectl, first, "contested", namespace, "3m", timeout=10)
    wait_until(
        lambda: 'result="conflict"' in second.metrics(),
        timeout=20,
        what="the second operator to stand aside",
        details=second.tail,
    )
    deployment = get(kubectl, "deployment", "contested", namespace)
    assert deployment is not None
    election = deployment["metadata"]["annotations"]["tickwork.dev/election"]
    assert election == f"{_lease_namespace(first)}/{first.lease_id}"
    assert "kept by another tickwork operator" in second.tail()
    assert 'result="success"' not in second.metrics()

    # The first install goes: the second takes the worker over once its Lease stops.
    first.kill()
    change_period(kubectl, second, "contested", namespace, "4m", timeout=40)
    taken = get(kubectl, "deployment", "contested", namespace)
    assert taken is not None
    assert taken["metadata"]["annotations"]["tickwork.dev/election"] == (
        f"{namespace}/{second.lease_id}"
    )
    created = [
        e for e in events_for(kubectl, "contested", namespace) if e["reason"] == "DeploymentCreated"
    ]
    assert len(created) == 1


def _lease_namespace(process: OperatorProcess) -> str:
    for arg in process.args:
        if arg.startswith("--leader-election-namespace="):
            return arg.split("=", 1)[1]
    raise AssertionError("no lease namespace")


def test_the_operator_serves_health_and_reconcile_metrics_and_stops_cleanly(
    kubectl: Tool, namespace: str, operator: OperatorProcess
) -> None:
    apply(kubectl, worker_manifest("observed", namespace))
    wait_until(
        lambda: is_ready(kubectl, "observed", namespace),
        timeout=30,
        what="Ready",
        details=operator.tail,
    )

    status, health = operator.health("/healthz")
    metrics = operator.metrics()
    code = operator.stop()

    assert (status, health["role"]) == (200, "leader")
    assert 'tickwork_operator_reconciles_total{result="success",trigger="create"} 1.0' in metrics
    assert "tickwork_operator_reconcile_duration_seconds_count" in metrics
    assert "tickwork_operator_leader 1.0" in metrics
    assert code == 0


def test_the_operator_account_cannot_read_secrets(
    kubectl: Tool, operator_account: OperatorAccount
) -> None:
    account = f"system:serviceaccount:{operator_account.namespace}:{operator_account.name}"

    def can(verb: str, resource: str) -> str:
        result = kubectl("auth", "can-i", verb, resource, "--as", account, "-A", check=False)
        return result.stdout.strip()

    assert can("get", "secrets") == "no"
    assert can("list", "secrets") == "no"
    assert can("delete", "deployments.apps") == "no"
    assert can("patch", "deployments.apps") == "yes"
    status = kubectl(
        "auth",
        "can-i",
        "patch",
        "backgroundworkers.tickwork.dev",
        "--subresource=status",
        "--as",
        account,
        "-A",
        check=False,
    ).stdout.strip()
    assert status == "yes"
    assert can("patch", "backgroundworkers.tickwork.dev") == "no"  # spec and metadata: never


def test_kubectl_explain_documents_the_schedule(kubectl: Tool, crd: str) -> None:
    explained = kubectl("explain", "backgroundworker.spec.schedule").stdout

    assert "exactly one of period and cron" in explained.lower()
    for field in (
        "period",
        "mode",
        "cron",
        "timeZone",
        "runOnStart",
        "timeout",
        "jitter",
        "misfire",
        "misfireGrace",
    ):
        assert f"  {field}\t" in explained or f"  {field} " in explained


# --------------------------------------------------------------------------- refused resources

BASE: dict[str, Any] = {"image": IMAGE, "worker": WORKER, "schedule": {"period": "10m"}}


def _spec(**changes: Any) -> dict[str, Any]:
    spec = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


REDIS = {"url": "redis://redis.example:6379/0"}
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("no-schedule", _spec(schedule=None), "spec.schedule: Required value"),
    ("no-image", _spec(image=None), "spec.image: Required value"),
    (
        "period-and-cron",
        _spec(schedule={"period": "1m", "cron": "* * * * *"}),
        "schedule needs exactly one of period and cron",
    ),
    (
        "neither-period-nor-cron",
        _spec(schedule={"runOnStart": True}),
        "schedule needs exactly one of period and cron",
    ),
    (
        "time-zone-with-period",
        _spec(schedule={"period": "1m", "timeZone": "Europe/Berlin"}),
        "schedule.timeZone applies only to a cron schedule",
    ),
    (
        "mode-with-cron",
        _spec(schedule={"cron": "*/5 * * * *", "mode": "rate"}),
        "schedule.mode applies only to a period schedule",
    ),
    (
        "period-in-words",
        _spec(schedule={"period": "ten minutes"}),
        "schedule.period ten minutes is not a duration",
    ),
    (
        "period-too-short",
        _spec(schedule={"period": "50ms"}),
        "schedule.period 50ms is shorter than the minimum 100ms",
    ),
    (
        "cron-with-four-fields",
        _spec(schedule={"cron": "*/5 * * *"}),
        "is not a cron expression; expected 5 fields",
    ),
    (
        "unknown-mode",
        _spec(schedule={"period": "1m", "mode": "fast"}),
        'spec.schedule.mode: Invalid value: "string": fast is not one of: delay, rate',
    ),
    (
        "unknown-misfire-policy",
        _spec(schedule={"period": "1m", "misfire": "later"}),
        "later is not one of: skip, catch_up",
    ),
    (
        "misfire-grace-without-catch-up",
        _spec(schedule={"period": "1m", "misfireGrace": "30s"}),
        "schedule.misfireGrace applies only with misfire: catch_up",
    ),
    (
        "jitter-as-long-as-the-rate",
        _spec(schedule={"period": "1m", "mode": "rate", "jitter": "1m"}),
        "schedule.jitter must be shorter than schedule.period in rate mode",
    ),
    (
        "zero-timeout",
        _spec(schedule={"period": "1m", "timeout": "0s"}),
        "schedule.timeout 0s must be greater than zero",
    ),
    (
        "worker-without-class",
        _spec(worker="admin_workers.passive_users"),
        "worker admin_workers.passive_users is not MODULE:CLASS",
    ),
    ("worker-with-spaces", _spec(worker="admin workers:Checker"), "is not MODULE:CLASS"),
    (
        "lease-ttl-too-short",
        _spec(lease={"ttl": "200ms"}),
        "lease.ttl 200ms is shorter than the minimum 500ms",
    ),
    (
        "renewal-over-half-the-ttl",
        _spec(lease={"ttl": "15s", "renewInterval": "10s"}),
        "lease.renewInterval must be at most half of lease.ttl",
    ),
    ("negative-replicas", _spec(replicas=-1), "should be greater than or equal to 0"),
    ("replicas-without-redis", _spec(replicas=3), "replicas above 1 need spec.redis"),
    (
        "redis-url-and-secret",
        _spec(redis={**REDIS, "urlSecretRef": {"name": "redis"}}),
        "redis needs exactly one of url and urlSecretRef",
    ),
    (
        "redis-url-not-redis",
        _spec(redis={"url": "http://redis.example:6379"}),
        "redis.url must start with redis://, rediss://, redis+sentinel://",
    ),
    (
        "redis-url-with-password",
        _spec(redis={"url": "redis://:hunter2@redis.example:6379"}),
        "redis.url must not contain a password",
    ),
    (
        "privileged-metrics-port",
        _spec(metrics={"port": 80}),
        "should be greater than or equal to 1024",
    ),
    (
        "tickwork-variable-in-env",
        _spec(env=[{"name": "TICKWORK_PERIOD", "value": "1s"}]),
        "env must not set TICKWORK_* variables",
    ),
    (
        "operator-label-on-pods",
        _spec(podLabels={"app.kubernetes.io/instance": "other"}),
        "podLabels must not set app.kubernetes.io/name, app.kubernetes.io/instance",
    ),
    (
        "requests-above-limits",
        _spec(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}),
        "resources.requests must not exceed resources.limits",
    ),
    (
        "unknown-pull-policy",
        _spec(imagePullPolicy="Sometimes"),
        'spec.imagePullPolicy: Invalid value: "string": Sometimes is not one of: Always, '
        "IfNotPresent, Never",
    ),
    (
        "root-user",
        _spec(podSecurityContext={"runAsUser": 0}),
        "should be greater than or equal to 1",
    ),
    (
        "shutdown-grace-in-words",
        _spec(shutdownGrace="forever"),
        "shutdownGrace forever is not a duration",
    ),
    ("misspelled-field", {**_spec(), "shedule": {"period": "1m"}}, 'unknown field "spec.shedule"'),
    (
        "image-in-upper-case",
        _spec(image="Registry.Example.com/Admin-Workers:1.4.2"),
        "image Registry.Example.com/Admin-Workers:1.4.2 is not an image reference",
    ),
    ("image-of-punctuation", _spec(image="!!!"), "image !!! is not an image reference"),
    (
        "a-million-replicas",
        _spec(replicas=1_000_000, redis=REDIS),
        "should be less than or equal to 100",
    ),
    (
        "a-period-past-any-clock",
        _spec(schedule={"period": "99999999999h"}),
        f"schedule.period 99999999999h is longer than the maximum {MAX_DURATION}",
    ),
    (
        "shutdown-grace-of-a-day",
        _spec(shutdownGrace="24h"),
        "shutdownGrace 24h is longer than the maximum 1h",
    ),
    (
        "env-from-with-a-tickwork-prefix",
        _spec(envFrom=[{"prefix": "TICKWORK_", "configMapRef": {"name": "settings"}}]),
        "envFrom prefix must not make TICKWORK_* variables",
    ),
    (
        "operator-component-label-on-pods",
        _spec(podLabels={"app.kubernetes.io/component": "other"}),
        "podLabels must not set app.kubernetes.io/name, app.kubernetes.io/instance, "
        "app.kubernetes.io/version, app.kubernetes.io/component, app.kubernetes.io/part-of",
    ),
]


@pytest.mark.parametrize(("case", "spec", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_an_invalid_worker_is_refused_by_the_api_server_and_nothing_is_applied(
    kubectl: Tool, namespace: str, crd: str, case: str, spec: dict[str, Any], message: str
) -> None:
    manifest = {
        "apiVersion": "tickwork.dev/v1alpha1",
        "kind": "BackgroundWorker",
        "metadata": {"name": case, "namespace": namespace},
        "spec": spec,
    }

    refused = kubectl("apply", "-f", "-", input=json.dumps(manifest), check=False)
    left = kubectl("get", "backgroundworkers,deployments", "-n", namespace, "-o", "name")

    assert refused.returncode != 0
    assert message in refused.stderr
    assert "some validation rules were not checked" not in refused.stderr
    assert left.stdout.strip() == ""


def test_the_table_of_refused_resources_is_long_enough() -> None:
    assert len(INVALID) >= 20
    assert len({case for case, _, _ in INVALID}) == len(INVALID)


@pytest.mark.parametrize(
    ("values", "accepted"),
    [
        (["leaderElection.renewDeadline=15s"], False),
        (["leaderElection.renewDeadline=20s"], False),
        (["leaderElection.retryPeriod=10s"], False),
        (["leaderElection.renewDeadline=1m30s", "leaderElection.leaseDuration=2m"], True),
        (["leaderElection.enabled=false", "leaderElection.renewDeadline=20s"], True),
    ],
)
def test_the_chart_refuses_leader_election_timings_the_operator_would_exit_on(
    helm: Tool, values: list[str], accepted: bool
) -> None:
    sets = [arg for value in values for arg in ("--set", value)]

    rendered = helm("template", "t", str(REPO_ROOT / "charts" / "tickwork"), *sets, check=False)

    assert (rendered.returncode == 0) == accepted, rendered.stderr
    if not accepted:
        assert "leaderElection needs retryPeriod < renewDeadline < leaseDuration" in rendered.stderr
