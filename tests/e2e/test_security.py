"""Security: Pod Security "restricted" admission, least-privilege RBAC, checkov.

The first two run against the real control plane: its API server enforces Pod Security
admission, and `kubectl auth can-i` with a token of the chart's ServiceAccount asks its RBAC
authorizer. checkov needs no cluster; `make checkov` installs it outside the repository.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.e2e.conftest import CACHE_DIR, HELM
from tests.e2e.test_chart import (
    REPO,
    OperatorAsServiceAccount,
    apply,
    background_worker,
    get,
    install,
    service_account_kubeconfig,
    uninstall,
    unique,
    wait_for_reconciled_deployment,
)
from worker_operator import rbac

if TYPE_CHECKING:
    from conftest import Tool

pytestmark = pytest.mark.e2e

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@pytest.fixture
def release(helm: Tool, namespace: str) -> Iterator[str]:
    name = unique("tw")
    yield name
    uninstall(helm, name, namespace)


# --------------------------------------------------------------------------- Pod Security


def privileged_pod_is_refused(kubectl: Tool, namespace: str) -> str:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged", "namespace": namespace},
        "spec": {
            "containers": [
                {"name": "c", "image": "busybox:1.36", "securityContext": {"privileged": True}}
            ]
        },
    }
    result = kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert result.returncode != 0, "a privileged pod was admitted: Pod Security is not enforced"
    return result.stderr


def test_in_a_namespace_enforcing_restricted_the_operator_and_its_worker_pods_are_admitted(
    helm: Tool, kubectl: Tool, namespace: str, release: str, tmp_path: Path
) -> None:
    kubectl("label", "namespace", namespace, *(f"{k}={v}" for k, v in RESTRICTED.items()))
    refusal = privileged_pod_is_refused(kubectl, namespace)

    install(helm, release, namespace, f"watchNamespaces={{{namespace}}}")
    operator_deployment = get(kubectl, "deployment", f"{release}-tickwork-operator", namespace)
    with OperatorAsServiceAccount(kubectl, operator_deployment, tmp_path) as operator:
        apply(
            kubectl,
            background_worker(
                "restricted-worker", namespace, replicas=2, redis={"url": "redis://redis:6379/0"}
            ),
        )
        wait_for_reconciled_deployment(kubectl, "restricted-worker", namespace, operator)
    pods = kubectl.json("get", "pods", "-n", namespace, "-o", "json")["items"]
    failed_creates = [
        e["message"]
        for e in kubectl.json("get", "events", "-n", namespace, "-o", "json")["items"]
        if e["reason"] == "FailedCreate"
    ]
    phases = {
        p["metadata"]["labels"].get("app.kubernetes.io/component"): p["status"]["phase"]
        for p in pods
    }

    assert 'violates PodSecurity "restricted:latest"' in refusal
    assert failed_creates == []
    assert len(pods) == 3
    assert phases == {"operator": "Running", "worker": "Running"}


# --------------------------------------------------------------------------- RBAC


def _can_i(tool: Tool, verb: str, resource: str, *scope: str) -> bool:
    name, _, subresource = resource.partition("/")
    extra = [f"--subresource={subresource}"] if subresource else []
    answer = tool("auth", "can-i", verb, name, *extra, *scope, check=False).stdout.strip()
    assert answer in ("yes", "no"), answer
    return answer == "yes"


def _resource(group: str, resource: str) -> str:
    name, _, subresource = resource.partition("/")
    qualified = f"{name}.{group}" if group else name
    return f"{qualified}/{subresource}" if subresource else qualified


#: What the operator must not be able to do (verb, resource, where).
MUST_NOT = [
    ("get", "secrets", "default"),
    ("list", "secrets", "--all-namespaces"),
    ("watch", "secrets", "default"),
    ("delete", "namespaces", "--all-namespaces"),
    ("create", "namespaces", "--all-namespaces"),
    ("delete", "deployments.apps", "default"),
    ("update", "deployments.apps", "default"),
    ("create", "pods", "default"),
    ("delete", "pods", "default"),
    ("create", "pods/exec", "default"),
    ("create", "backgroundworkers.tickwork.dev", "default"),
    ("delete", "backgroundworkers.tickwork.dev", "default"),
    ("update", "backgroundworkers.tickwork.dev", "default"),
    ("get", "configmaps", "default"),
    ("create", "serviceaccounts/token", "default"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", "--all-namespaces"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", "--all-namespaces"),
    ("bind", "clusterroles.rbac.authorization.k8s.io", "--all-namespaces"),
    ("impersonate", "users", "--all-namespaces"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", "--all-namespaces"),
    ("list", "nodes", "--all-namespaces"),
    # It reads other operators' election Leases anywhere (elections.py), but writes only its own.
    ("create", "leases.coordination.k8s.io", "default"),
    ("update", "leases.coordination.k8s.io", "default"),
    ("delete", "leases.coordination.k8s.io", "default"),
    ("*", "*", "--all-namespaces"),
]


def test_the_operator_service_account_can_do_what_reconciling_needs_and_nothing_else(
    helm: Tool, kubectl: Tool, namespace: str, release: str, tmp_path: Path
) -> None:
    install(helm, release, namespace, wait=False)
    kubeconfig = service_account_kubeconfig(
        kubectl,
        name=f"{release}-tickwork-operator",
        namespace=namespace,
        path=tmp_path / "operator.kubeconfig",
    )
    as_operator = kubectl.with_kubeconfig(kubeconfig)
    needed = [
        (verb, _resource(group, resource), where)
        for rule in rbac.cluster_role_rules()
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        for where in ("default", "--all-namespaces")
    ] + [
        (verb, _resource(group, resource), namespace)
        for rule in rbac.leader_election_rules()
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    ]

    def scope(where: str) -> list[str]:
        return [where] if where.startswith("--") else ["-n", where]

    denied = [n for n in needed if not _can_i(as_operator, n[0], n[1], *scope(n[2]))]
    allowed = [m for m in MUST_NOT if _can_i(as_operator, m[0], m[1], *scope(m[2]))]

    assert len(needed) > 20
    assert denied == []
    assert allowed == []


# --------------------------------------------------------------------------- checkov


def checkov_binary() -> Path:
    requirement = (REPO / "security" / "requirements.txt").read_text(encoding="utf-8")
    version = re.search(r"^checkov==(\S+)$", requirement, re.MULTILINE)
    assert version is not None
    binary = CACHE_DIR / f"checkov-{version.group(1)}" / "bin" / "checkov"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary} is missing: run `make checkov` (or `make test`)", pytrace=False)
    return binary


def json_documents(text: str) -> list[Any]:
    """checkov prints one JSON document per scanned directory, back to back."""
    decoder = json.JSONDecoder()
    documents, position = [], 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        document, position = decoder.raw_decode(text, position)
        documents.extend(document if isinstance(document, list) else [document])
    return documents


#: Values that switch on every optional part of the chart (checkov's own Helm pass renders
#: only the defaults).
EVERYTHING_ON = [
    "redis.enabled=true",
    "monitoring.create=always",
    "watchNamespaces={team-a,team-b}",
    "operator.checkSecretReferences=true",
]


SKIPPED = {
    s["id"]
    for s in yaml.safe_load((REPO / "security" / "checkov-skips.yaml").read_text("utf-8"))["skips"]
}


def run_checkov(*args: str) -> tuple[list[Any], list[str]]:
    """checkov without any skip: its reports and its failures (``ID resource (file)``)."""
    env = {**os.environ, "PATH": f"{HELM.parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [str(checkov_binary()), *args, "--output", "json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    reports = json_documents(result.stdout)
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for r in reports
        for c in r["results"]["failed_checks"]
    ]
    assert reports, result.stderr[-2000:]
    assert result.returncode == (1 if failed else 0), result.stderr[-2000:]
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)
    return reports, failed


def test_checkov_fails_nothing_but_the_listed_skips_and_each_skip_is_still_needed() -> None:
    reports, failed = run_checkov("--config-file", "security/checkov.yaml")
    scanned = {r["check_type"] for r in reports if r["summary"]["resource_count"] > 0}

    assert [f for f in failed if f.split()[0] not in SKIPPED] == []
    assert {f.split()[0] for f in failed} == SKIPPED, "a skip that nothing needs: remove it"
    assert {"helm", "kubernetes", "dockerfile"} <= scanned


def test_checkov_finds_no_problem_in_the_optional_parts_of_the_chart(tmp_path: Path) -> None:
    sets = [arg for value in EVERYTHING_ON for arg in ("--set", value)]
    rendered = subprocess.run(
        [str(HELM), "template", "tickwork", str(REPO / "charts" / "tickwork"), "-n", "ops", *sets],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    (tmp_path / "everything.yaml").write_text(rendered, encoding="utf-8")

    reports, failed = run_checkov(
        "--directory", str(tmp_path), "--framework", "kubernetes", "--skip-download", "--compact"
    )
    documents = [doc for doc in yaml.safe_load_all(rendered) if doc]
    monitors = [d for d in documents if d["apiVersion"].startswith("monitoring.coreos.com/")]

    assert {"Deployment", "Role", "NetworkPolicy", "PodMonitor", "Secret"} <= {
        d["kind"] for d in documents
    }
    assert [f for f in failed if f.split()[0] not in SKIPPED] == []
    # Every object but the Prometheus Operator's was scanned (checkov also counts pods).
    assert sum(r["summary"]["resource_count"] for r in reports) >= len(documents) - len(monitors)
