"""charts/tickwork and manifests/: rendered with the cached helm binary, no cluster.

`make test` fetches helm first (`make helm`, part of `make cluster-build`); a missing helm
fails these tests, it never skips them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import CACHE_DIR, HELM
from worker_operator import rbac
from worker_operator.cli import parse_args
from worker_operator.constants import (
    LABEL_MANAGED_BY,
    LABEL_NAME,
    MANAGED_BY,
    METRICS_PORT_NAME,
    WORKER_APP_NAME,
)
from worker_operator.manifests import render_crd

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tickwork"
MANIFESTS = REPO / "manifests"
ALERTS = REPO / "monitoring" / "alerts.yaml"
SKIPS = REPO / "security" / "checkov-skips.yaml"
#: Every file `make manifests` writes for the chart (the CRD files are the operator's).
GENERATED = (
    "charts/tickwork/files/rbac-rules.yaml",
    "charts/tickwork/files/alerts.yaml",
    "manifests/00-namespace.yaml",
    "manifests/01-crd.yaml",
    "manifests/02-operator.yaml",
)
RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "Namespace", "CustomResourceDefinition"}
MONITORING_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    if not os.access(HELM, os.X_OK):
        pytest.fail(f"{HELM} is missing: run `make helm` (or `make test`)", pytrace=False)
    home = CACHE_DIR / "helm-home"
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    env.pop("KUBECONFIG", None)
    return subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def render(*args: str, namespace: str = "tickwork-system") -> list[dict[str, Any]]:
    """``helm template`` of the chart: the objects, in helm's install order."""
    result = helm("template", "tickwork", str(CHART), "--namespace", namespace, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return [o["kind"] for o in objects]


def operator_args(objects: list[dict[str, Any]]) -> list[str]:
    deployment = only(objects, "Deployment", "tickwork-operator")
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


# ------------------------------------------------------------------------------ chart basics


def test_helm_lint_strict_accepts_the_chart() -> None:
    result = helm("lint", "--strict", str(CHART))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_the_chart_is_a_v2_chart_whose_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    version = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)

    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "tickwork"
    assert version is not None
    assert chart["appVersion"] == version.group(1)


def test_the_operator_image_is_tickwork_operator_at_the_app_version_unless_pinned() -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))["appVersion"]
    digest = "sha256:" + "ab" * 32

    def image(*args: str) -> str:
        deployment = only(render(*args), "Deployment", "tickwork-operator")
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    assert image() == f"tickwork/operator:{app_version}"
    assert image("--set", "image.tag=0.2.0-rc.1") == "tickwork/operator:0.2.0-rc.1"
    assert image("--set", f"image.digest={digest}") == f"tickwork/operator@{digest}"


def test_every_key_in_values_yaml_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    key = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.-]*):")
    undocumented = []
    for number, line in enumerate(lines):
        match = key.match(line)
        if not match or "#" in line.partition(":")[2]:
            continue
        previous = next((p for p in reversed(lines[:number]) if p.strip()), "")
        if not previous.strip().startswith("#"):
            undocumented.append(f"line {number + 1}: {match.group(1)}")

    assert undocumented == []


def _value_paths(values: Any, prefix: str = "") -> list[str]:
    if not isinstance(values, dict) or not values:
        return [prefix] if prefix else []
    paths = []
    for name, value in values.items():
        path = f"{prefix}.{name}" if prefix else name
        paths.append(path)
        if isinstance(value, dict):
            paths += _value_paths(value, path)
    return paths


def _schema_node(schema: dict[str, Any], path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for part in path.split("."):
        properties = (node or {}).get("properties") or {}
        if part in properties:
            node = properties[part]
        elif isinstance((node or {}).get("additionalProperties"), dict):
            node = node["additionalProperties"]  # type: ignore[index]
        else:
            return None
    return node


def test_the_values_schema_describes_every_value_and_refuses_unknown_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    missing = [p for p in _value_paths(values) if _schema_node(schema, p) is None]
    undescribed = [
        p for p in _value_paths(values) if "description" not in (_schema_node(schema, p) or {})
    ]

    assert missing == []
    assert undescribed == []
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (["replicaCount=two"], "/replicaCount"),
        (["replicaCount=-1"], "/replicaCount"),
        (["replicaCount=2", "leaderElection.enabled=false"], "/leaderElection/enabled"),
        (["operator.logLevel=loud"], "/operator/logLevel"),
        (["operator.resyncInterval=5 minutes"], "/operator/resyncInterval"),
        (["operator.httpPort=80"], "/operator/httpPort"),
        (["watchNamespaces={Team_A}"], "/watchNamespaces/0"),
        (["monitoring.create=yes"], "/monitoring/create"),
        (["securityContext.allowPrivilegeEscalation=true"], "/securityContext"),
        (["podSecurityContext.seccompProfile.type=Unconfined"], "/podSecurityContext"),
        (["image.digest=latest"], "/image/digest"),
        (["image.tag=latest"], "/image/tag"),
        (["redis.image.tag=latest"], "/redis/image/tag"),
        (["podSecurityContext.seccompProfile.type=Localhost"], "localhostProfile"),
        (
            [
                "podSecurityContext.seccompProfile.type=Localhost",
                "podSecurityContext.seccompProfile.localhostProfile=",
            ],
            "/podSecurityContext/seccompProfile/localhostProfile",
        ),
        (
            ["podDisruptionBudget.enabled=true", "podDisruptionBudget.minAvailable=1"],
            "/podDisruptionBudget",
        ),
        (["podDisruptionBudget.maxUnavailable=one"], "/podDisruptionBudget/maxUnavailable"),
        (["redis.enabled=maybe"], "/redis/enabled"),
        (["replicas=2"], "'replicas' not allowed"),
    ],
)
def test_helm_refuses_a_value_of_the_wrong_type_or_out_of_range(
    values: list[str], complaint: str
) -> None:
    sets = [arg for value in values for arg in ("--set", value)]
    result = helm("template", "tickwork", str(CHART), *sets)

    assert result.returncode != 0
    assert "don't meet the specifications of the schema" in result.stderr
    assert complaint in result.stderr


# ------------------------------------------------------------------------------ conventions


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--set", "redis.enabled=true", "--set", "monitoring.create=always"],
        [
            "--set",
            "watchNamespaces={team-a,team-b}",
            "--set",
            "operator.checkSecretReferences=true",
        ],
    ],
    ids=["defaults", "redis-and-monitoring", "namespaced"],
)
def test_every_object_has_the_recommended_labels_and_a_namespace_from_the_release(
    args: list[str],
) -> None:
    objects = render(*args, namespace="ops")
    # Only the namespaced mode's Roles and RoleBindings live in the served namespaces.
    served = {"team-a", "team-b"} if "watchNamespaces" in " ".join(args) else set()

    for obj in objects:
        metadata = obj["metadata"]
        assert set(RECOMMENDED_LABELS) <= set(metadata["labels"]), (obj["kind"], metadata["name"])
        assert metadata["labels"]["app.kubernetes.io/instance"] == "tickwork"
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in metadata
        elif obj["kind"] in {"Role", "RoleBinding"} and metadata["namespace"] != "ops":
            assert metadata["namespace"] in served
            assert metadata["name"] == "tickwork-operator"
        else:
            assert metadata["namespace"] == "ops", (obj["kind"], metadata["name"])


def test_no_template_hard_codes_a_namespace() -> None:
    allowed = {"{{ .Release.Namespace }}", "{{ $.Release.Namespace }}", "{{ $namespace }}"}
    found = []
    for template in sorted((CHART / "templates").glob("*.yaml")):
        for number, line in enumerate(template.read_text(encoding="utf-8").splitlines(), 1):
            match = re.match(r"^\s*(?:- )?namespace:\s*(.+?)\s*$", line)
            if match and match.group(1) not in allowed:
                found.append(f"{template.name}:{number}: {line.strip()}")

    assert found == []


def test_every_helper_is_prefixed_with_the_chart_name() -> None:
    helpers = (CHART / "templates" / "_helpers.tpl").read_text(encoding="utf-8")
    names = re.findall(r'{{-?\s*define\s+"([^"]+)"', helpers)
    used = {
        name
        for path in (CHART / "templates").iterdir()
        for name in re.findall(r'(?:include|template)\s+"([^"]+)"', path.read_text("utf-8"))
    }

    assert names
    assert [n for n in names if not n.startswith("tickwork.")] == []
    assert used <= set(names)


# ------------------------------------------------------------------------------ RBAC


def test_the_cluster_role_holds_exactly_the_rules_of_the_operators_rbac_module() -> None:
    objects = render()
    cluster_role = only(objects, "ClusterRole")
    binding = only(objects, "ClusterRoleBinding")
    leader = only(objects, "Role", "tickwork-operator-leader-election")

    assert cluster_role["rules"] == rbac.cluster_role_rules()
    assert leader["rules"] == rbac.leader_election_rules()
    assert binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "tickwork-operator", "namespace": "tickwork-system"}
    ]
    assert "secrets" not in json.dumps([o for o in objects if "rules" in o])


def test_checking_secret_references_adds_only_the_secret_rule_and_the_flag() -> None:
    objects = render("--set", "operator.checkSecretReferences=true")

    assert only(objects, "ClusterRole")["rules"] == (
        rbac.cluster_role_rules() + rbac.secret_check_rules()
    )
    assert "--check-secret-references" in operator_args(objects)


def test_the_namespaced_mode_grants_roles_only_in_the_listed_namespaces() -> None:
    objects = render("--set", "watchNamespaces={team-b,team-a}")
    roles = [
        o for o in objects if o["kind"] == "Role" and not o["metadata"]["name"].endswith("election")
    ]
    bindings = [
        o
        for o in objects
        if o["kind"] == "RoleBinding" and not o["metadata"]["name"].endswith("election")
    ]

    assert "ClusterRole" not in kinds(objects)
    assert "ClusterRoleBinding" not in kinds(objects)
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(r["rules"] == rbac.cluster_role_rules() for r in roles)
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert all(
        b["subjects"][0]
        == {
            "kind": "ServiceAccount",
            "name": "tickwork-operator",
            "namespace": "tickwork-system",
        }
        for b in bindings
    )
    assert [a for a in operator_args(objects) if a.startswith("--namespace")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]


def test_without_leader_election_there_is_no_lease_role() -> None:
    objects = render("--set", "leaderElection.enabled=false")

    assert [o for o in objects if "leader-election" in o["metadata"]["name"]] == []
    assert "--no-leader-election" in operator_args(objects)


# ------------------------------------------------------------------------------ the operator


@pytest.mark.parametrize(
    ("args", "namespaces", "leader_election"),
    [
        ([], (), True),
        (["--set", "watchNamespaces={b,a}"], ("a", "b"), True),
        (["--set", "leaderElection.enabled=false"], (), False),
    ],
)
def test_tickwork_operator_accepts_the_flags_the_deployment_passes(
    args: list[str], namespaces: tuple[str, ...], leader_election: bool
) -> None:
    objects = render(*args)
    settings, kubeconfig = parse_args(
        operator_args(objects), {"POD_NAME": "op-0", "POD_NAMESPACE": "tickwork-system"}
    )
    container = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]

    assert settings.namespaces == namespaces
    assert settings.leader_election is leader_election
    assert settings.lease_namespace == "tickwork-system"
    assert settings.lease_name == "tickwork-operator"
    assert settings.http_port == container["ports"][0]["containerPort"]
    assert settings.log_format == "json"
    assert kubeconfig is None


def test_the_operator_pod_is_hardened_with_probes_and_resources() -> None:
    deployment = only(render(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    port = container["ports"][0]["name"]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 10000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert set(container["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    assert pod["serviceAccountName"] == "tickwork-operator"
    assert {e["name"] for e in container["env"]} >= {"POD_NAME", "POD_NAMESPACE"}


def test_the_metrics_service_selects_the_operator_pods() -> None:
    objects = render()
    service = only(objects, "Service")
    pod = only(objects, "Deployment")["spec"]["template"]

    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert (
        service["spec"]["ports"][0]["targetPort"]
        == pod["spec"]["containers"][0]["ports"][0]["name"]
    )


def test_a_localhost_seccomp_profile_with_its_file_is_accepted_and_passed_on() -> None:
    objects = render(
        "--set",
        "podSecurityContext.seccompProfile.type=Localhost",
        "--set",
        "podSecurityContext.seccompProfile.localhostProfile=profiles/tickwork.json",
    )
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]

    assert pod["securityContext"]["seccompProfile"] == {
        "type": "Localhost",
        "localhostProfile": "profiles/tickwork.json",
    }


def test_several_operator_replicas_prefer_different_nodes_unless_affinity_is_set() -> None:
    def affinity(*args: str) -> Any:
        pod = only(render(*args), "Deployment")["spec"]["template"]
        return pod["spec"].get("affinity"), pod["metadata"]["labels"]

    single, _ = affinity()
    spread, labels = affinity("--set", "replicaCount=2")
    own, _ = affinity("--set", "replicaCount=2", "--set", "affinity.nodeAffinity.x=y")
    (term,) = spread["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]

    assert single is None
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= labels.items()
    assert own == {"nodeAffinity": {"x": "y"}}


def test_there_is_no_pod_disruption_budget_unless_asked_for() -> None:
    assert [o for o in render() if o["kind"] == "PodDisruptionBudget"] == []


@pytest.mark.parametrize(
    ("args", "budget"),
    [
        ([], {"maxUnavailable": 1}),
        (
            [
                "--set",
                "podDisruptionBudget.minAvailable=50%",
                "--set",
                "podDisruptionBudget.maxUnavailable=",
            ],
            {"minAvailable": "50%"},
        ),
        (
            [
                "--set",
                "replicaCount=3",
                "--set",
                "podDisruptionBudget.minAvailable=2",
                "--set",
                "podDisruptionBudget.maxUnavailable=",
            ],
            {"minAvailable": 2},
        ),
    ],
    ids=["default-max-unavailable", "min-available-percent", "min-available-count"],
)
def test_the_pod_disruption_budget_covers_exactly_the_operator_pods(
    args: list[str], budget: dict[str, Any]
) -> None:
    objects = render("--set", "podDisruptionBudget.enabled=true", *args)
    pdb = only(objects, "PodDisruptionBudget")
    pod = only(objects, "Deployment")["spec"]["template"]

    assert pdb["apiVersion"] == "policy/v1"
    assert {
        k: v for k, v in pdb["spec"].items() if k in ("minAvailable", "maxUnavailable")
    } == budget
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


# ------------------------------------------------------------------------------ monitoring


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], set()),
        (["--api-versions", "monitoring.coreos.com/v1"], MONITORING_KINDS),
        (["--set", "monitoring.create=always"], MONITORING_KINDS),
        (
            ["--api-versions", "monitoring.coreos.com/v1", "--set", "monitoring.create=never"],
            set(),
        ),
        (
            [
                "--api-versions",
                "monitoring.coreos.com/v1",
                "--set",
                "monitoring.podMonitor.enabled=false",
            ],
            {"ServiceMonitor", "PrometheusRule"},
        ),
    ],
    ids=["no-api", "api-served", "forced", "api-but-never", "api-without-podmonitor"],
)
def test_prometheus_operator_objects_exist_only_when_the_api_is_served_or_forced(
    args: list[str], expected: set[str]
) -> None:
    assert set(kinds(render(*args))) & MONITORING_KINDS == expected


def test_the_prometheus_rule_holds_the_runtime_alert_rules() -> None:
    rule = only(render("--set", "monitoring.create=always"), "PrometheusRule")

    assert rule["spec"] == yaml.safe_load(ALERTS.read_text(encoding="utf-8"))


def test_the_pod_monitor_scrapes_the_metrics_port_of_the_workers_the_operator_creates() -> None:
    cluster_wide = only(render("--set", "monitoring.create=always"), "PodMonitor")
    namespaced = only(
        render("--set", "monitoring.create=always", "--set", "watchNamespaces={a,b}"),
        "PodMonitor",
    )

    assert cluster_wide["spec"]["selector"]["matchLabels"] == {
        LABEL_NAME: WORKER_APP_NAME,
        LABEL_MANAGED_BY: MANAGED_BY,
    }
    assert cluster_wide["spec"]["podMetricsEndpoints"][0]["port"] == METRICS_PORT_NAME
    assert cluster_wide["spec"]["namespaceSelector"] == {"any": True}
    assert namespaced["spec"]["namespaceSelector"] == {"matchNames": ["a", "b"]}


def test_the_service_monitor_scrapes_the_operator_service() -> None:
    objects = render("--set", "monitoring.create=always")
    monitor = only(objects, "ServiceMonitor")
    service = only(objects, "Service")

    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["tickwork-system"]}


# ------------------------------------------------------------------------------ try-it Redis


def test_the_try_it_redis_is_off_by_default_and_marked_not_for_production() -> None:
    default = render()
    objects = render("--set", "redis.enabled=true", "--set", "redis.password=s3cret")
    redis = [o for o in objects if o["metadata"]["name"] == "tickwork-redis"]
    secret = only(objects, "Secret", "tickwork-redis")
    values = (CHART / "values.yaml").read_text(encoding="utf-8")

    assert [o for o in default if "redis" in o["metadata"]["name"]] == []
    assert sorted(kinds(redis)) == ["Deployment", "NetworkPolicy", "Secret", "Service"]
    assert all(
        "tickwork.dev/not-for-production" in o["metadata"]["annotations"]
        for o in redis
        if o["kind"] != "NetworkPolicy"
    )
    assert "NOT FOR PRODUCTION" in values
    assert secret["stringData"]["url"] == "redis://tickwork-redis.tickwork-system.svc:6379/0"
    assert secret["stringData"]["password"] == "s3cret"
    assert "requirepass s3cret\n" in secret["stringData"]["redis.conf"]


def test_the_try_it_redis_runs_as_non_root_with_a_generated_password() -> None:
    objects = render("--set", "redis.enabled=true")
    pod = only(objects, "Deployment", "tickwork-redis")["spec"]["template"]["spec"]
    container = pod["containers"][0]

    assert len(only(objects, "Secret", "tickwork-redis")["stringData"]["password"]) == 32
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 10000
    assert "env" not in container  # the password reaches Redis as a file, never as a variable
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


# ------------------------------------------------------------------------------ NOTES.txt


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], ["every namespace", "rollout status deployment/tickwork-operator", "kind: Backgr"]),
        (["--set", "watchNamespaces={team-a}"], ["these namespaces: team-a"]),
        (["--set", "redis.enabled=true"], ["NOT FOR PRODUCTION", "secret tickwork-redis"]),
    ],
)
def test_the_install_notes_say_what_to_do_next(args: list[str], expected: list[str]) -> None:
    result = helm(
        "install",
        "tickwork",
        str(CHART),
        "--namespace",
        "tickwork-system",
        "--dry-run=client",
        *args,
    )
    notes = result.stdout.partition("NOTES:")[2]

    assert result.returncode == 0, result.stderr
    for text in expected:
        assert text in notes


# ------------------------------------------------------------------------------ generated files


def test_the_generated_chart_files_and_manifests_are_up_to_date(tmp_path: Path) -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "-s", "chart-render", f"CHART_RENDER_ROOT={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    stale = [p for p in GENERATED if (REPO / p).read_bytes() != (tmp_path / p).read_bytes()]
    extra = sorted(
        str(p.relative_to(REPO))
        for p in [*MANIFESTS.glob("*.yaml"), *(CHART / "files").iterdir()]
        if not (tmp_path / p.relative_to(REPO)).exists()
    )

    assert stale == [], "stale: run `make manifests`"
    assert extra == [], "not generated any more: delete them"


def test_the_chart_files_come_from_their_one_source() -> None:
    rules = yaml.safe_load((CHART / "files" / "rbac-rules.yaml").read_text(encoding="utf-8"))
    alerts = (CHART / "files" / "alerts.yaml").read_text(encoding="utf-8")

    assert rules == {
        "reconcile": rbac.cluster_role_rules(),
        "leaderElection": rbac.leader_election_rules(),
        "secretCheck": rbac.secret_check_rules(),
    }
    assert alerts.startswith("# generated by make manifests; do not edit")
    assert alerts.partition("\n")[2] == ALERTS.read_text(encoding="utf-8")


def test_kubectl_apply_of_manifests_creates_the_namespace_then_the_crd_then_the_operator() -> None:
    files = sorted(p.name for p in MANIFESTS.glob("*.yaml"))
    namespace = yaml.safe_load((MANIFESTS / "00-namespace.yaml").read_text(encoding="utf-8"))
    crd = (MANIFESTS / "01-crd.yaml").read_text(encoding="utf-8")
    operator = [
        d for d in yaml.safe_load_all((MANIFESTS / "02-operator.yaml").read_text("utf-8")) if d
    ]

    assert files == ["00-namespace.yaml", "01-crd.yaml", "02-operator.yaml"]
    assert namespace["kind"] == "Namespace"
    assert namespace["metadata"]["name"] == "tickwork-system"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert crd == render_crd()
    assert operator == render()
    assert all(o["metadata"].get("namespace") in (None, "tickwork-system") for o in operator)


def test_the_examples_are_a_background_worker_and_its_redis_secret_without_a_namespace() -> None:
    docs = [
        doc
        for path in sorted((MANIFESTS / "examples").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc
    ]
    by_kind = {d["kind"]: d for d in docs}
    worker = by_kind["BackgroundWorker"]
    secret = by_kind["Secret"]
    ref = worker["spec"]["redis"]["urlSecretRef"]

    assert sorted(by_kind) == ["BackgroundWorker", "Secret"]
    assert all("namespace" not in d["metadata"] for d in docs)
    assert worker["spec"]["worker"] == "examples.passive_users:PassiveUserCheckerWorker"
    assert ref == {"name": secret["metadata"]["name"], "key": "url"}
    assert secret["stringData"]["url"].startswith("redis://")


# ------------------------------------------------------------------------------ security


def test_every_skipped_checkov_check_is_listed_once_with_its_reason() -> None:
    skips = yaml.safe_load(SKIPS.read_text(encoding="utf-8"))["skips"]
    ids = [s["id"] for s in skips]
    config = yaml.safe_load((REPO / "security" / "checkov.yaml").read_text(encoding="utf-8"))
    inline = [
        str(p.relative_to(REPO))
        for root in ("charts", "manifests", "images", "examples")
        for p in (REPO / root).rglob("*")
        if p.is_file() and "checkov:skip" in p.read_text(encoding="utf-8", errors="replace")
    ]

    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"CKV2?_[A-Z0-9]+_[0-9]+", i) for i in ids)
    assert all(len(s["reason"].split()) >= 12 and s["where"] for s in skips)
    assert "skip-check" not in config
    assert inline == []


def test_worker_namespaces_get_a_policy_that_admits_only_the_operator_to_the_metrics_port() -> None:
    from tests.unit.operator.conftest import worker_body
    from worker_operator.builders import build_deployment
    from worker_operator.constants import LABEL_MANAGED_BY, MANAGED_BY, METRICS_PORT_NAME
    from worker_operator.settings import OperatorSettings
    from worker_operator.spec import parse_worker

    objects = render(
        "--set",
        "networkPolicy.workerNamespaces={shop,billing}",
        "--set",
        "networkPolicy.workerMetricsFrom[0].podSelector.matchLabels.app=prometheus",
    )
    policies = [
        o
        for o in objects
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "tickwork-operator-workers"
    ]
    operator = only(objects, "Deployment", "tickwork-operator")
    operator_labels = operator["spec"]["template"]["metadata"]["labels"]
    pod = build_deployment(parse_worker(worker_body()), OperatorSettings())["spec"]["template"]
    ports = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}

    assert sorted(p["metadata"]["namespace"] for p in policies) == ["billing", "shop"]
    for policy in policies:
        spec = policy["spec"]
        assert spec["podSelector"] == {"matchLabels": {LABEL_MANAGED_BY: MANAGED_BY}}
        assert all(
            pod["metadata"]["labels"][k] == v for k, v in spec["podSelector"]["matchLabels"].items()
        )
        assert spec["policyTypes"] == ["Ingress"]
        (rule,) = spec["ingress"]
        assert rule["ports"] == [{"port": METRICS_PORT_NAME, "protocol": "TCP"}]
        assert METRICS_PORT_NAME in ports
        operator_peer, prometheus = rule["from"]
        assert operator_peer["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": "tickwork-system"}
        }
        selector = operator_peer["podSelector"]["matchLabels"]
        assert all(operator_labels[k] == v for k, v in selector.items())
        assert prometheus == {"podSelector": {"matchLabels": {"app": "prometheus"}}}


def test_no_worker_policy_is_made_unless_namespaces_are_named() -> None:
    names = [o["metadata"]["name"] for o in render() if o["kind"] == "NetworkPolicy"]

    assert "tickwork-operator-workers" not in names


def test_the_operator_reads_status_documents_as_often_as_the_chart_says() -> None:
    assert "--status-refresh=30s" in operator_args(render())
    assert "--status-refresh=5s" in operator_args(render("--set", "operator.statusRefresh=5s"))
