"""The Deployment builder: a WorkerSpec in, the whole Deployment intent out (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.unit.operator.conftest import worker_body
from worker_operator.builders import (
    build_deployment,
    build_disruption_budget,
    build_event,
    container_env,
    image_version,
    selector_string,
)
from worker_operator.settings import OperatorSettings
from worker_operator.spec import SpecError, parse_worker

SETTINGS = OperatorSettings()


def deployment_for(**spec: Any) -> dict[str, Any]:
    return build_deployment(parse_worker(worker_body(**spec)), SETTINGS)


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_deployment_runs_tickwork_with_the_worker_class() -> None:
    deployment = deployment_for()
    container = deployment["spec"]["template"]["spec"]["containers"][0]

    assert deployment["metadata"]["name"] == "passive-users"
    assert deployment["metadata"]["namespace"] == "team-a"
    assert container["image"] == "registry.example.com/admin-workers:1.4.2"
    assert container["args"] == ["run", "admin_workers.passive_users:PassiveUserCheckerWorker"]
    assert "command" not in container  # the image's entrypoint is tickwork


def test_a_period_schedule_becomes_tickwork_variables() -> None:
    env = env_of(
        deployment_for(
            schedule={
                "period": "30s",
                "mode": "rate",
                "runOnStart": True,
                "timeout": "20s",
                "jitter": "2s",
                "misfire": "skip",
            }
        )
    )

    assert env["TICKWORK_NAME"] == "team-a.passive-users"
    assert env["TICKWORK_PERIOD"] == "30s"
    assert env["TICKWORK_MODE"] == "rate"
    assert env["TICKWORK_RUN_ON_START"] == "true"
    assert env["TICKWORK_TIMEOUT"] == "20s"
    assert env["TICKWORK_JITTER"] == "2s"
    assert env["TICKWORK_MISFIRE"] == "skip"
    assert "TICKWORK_CRON" not in env
    assert "TICKWORK_TIMEZONE" not in env


def test_a_cron_schedule_becomes_cron_and_time_zone_variables() -> None:
    env = env_of(
        deployment_for(
            schedule={
                "cron": "*/10 * * * *",
                "timeZone": "Europe/Berlin",
                "misfire": "catch_up",
                "misfireGrace": "5m",
            }
        )
    )

    assert env["TICKWORK_CRON"] == "*/10 * * * *"
    assert env["TICKWORK_TIMEZONE"] == "Europe/Berlin"
    assert env["TICKWORK_MISFIRE"] == "catch_up"
    assert env["TICKWORK_MISFIRE_GRACE"] == "5m"
    assert "TICKWORK_PERIOD" not in env
    assert "TICKWORK_MODE" not in env


def test_the_redis_url_comes_from_its_secret_and_is_never_copied() -> None:
    deployment = deployment_for(
        replicas=2,
        redis={
            "urlSecretRef": {"name": "redis", "key": "url"},
            "passwordSecretRef": {"name": "redis-auth", "key": "password"},
        },
    )
    env = env_of(deployment)

    assert env["TICKWORK_REDIS_URL"] == {"secretKeyRef": {"name": "redis", "key": "url"}}
    assert env["TICKWORK_REDIS_PASSWORD"] == {
        "secretKeyRef": {"name": "redis-auth", "key": "password"}
    }
    assert "redis://" not in str(deployment)


def test_the_replica_id_is_the_pod_name_from_the_downward_api() -> None:
    env = env_of(deployment_for())

    assert env["TICKWORK_REPLICA_ID"] == {
        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}
    }


def test_lease_shutdown_metrics_and_log_settings_are_passed() -> None:
    env = env_of(
        deployment_for(
            lease={"ttl": "6s", "renewInterval": "2s"},
            shutdownGrace="45s",
            metrics={"port": 9200, "scrape": True},
            log={"format": "text", "level": "debug"},
            services="admin_workers.services:register",
        )
    )

    assert env["TICKWORK_LEASE_TTL"] == "6s"
    assert env["TICKWORK_LEASE_RENEW_INTERVAL"] == "2s"
    assert env["TICKWORK_SHUTDOWN_GRACE"] == "45s"
    assert env["TICKWORK_METRICS_PORT"] == "9200"
    assert env["TICKWORK_LOG_FORMAT"] == "text"
    assert env["TICKWORK_LOG_LEVEL"] == "debug"
    assert env["TICKWORK_SERVICES"] == "admin_workers.services:register"


def test_the_user_env_follows_the_tickwork_variables() -> None:
    worker = parse_worker(worker_body(env=[{"name": "DATABASE_URL", "value": "sqlite:///tmp/x"}]))
    names = [e["name"] for e in container_env(worker)]

    assert names[-1] == "DATABASE_URL"
    assert all(n.startswith("TICKWORK_") for n in names[:-1])


def test_the_metrics_port_is_declared_probed_and_advertised_for_scraping() -> None:
    deployment = deployment_for(metrics={"port": 9200, "scrape": True})
    template = deployment["spec"]["template"]
    container = template["spec"]["containers"][0]

    assert container["ports"] == [{"name": "metrics", "containerPort": 9200, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {
        "path": "/healthz",
        "port": "metrics",
        "scheme": "HTTP",
    }
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9200",
        "prometheus.io/path": "/metrics",
    }


def test_scraping_can_be_left_unadvertised() -> None:
    template = deployment_for(metrics={"port": 9100, "scrape": False})["spec"]["template"]

    assert "annotations" not in template["metadata"]


def test_the_pods_are_restricted_by_default() -> None:
    pod = deployment_for()["spec"]["template"]["spec"]
    container = pod["containers"][0]

    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod


def test_a_service_account_brings_its_token_back() -> None:
    pod = deployment_for(serviceAccountName="workers")["spec"]["template"]["spec"]

    assert pod["serviceAccountName"] == "workers"
    assert "automountServiceAccountToken" not in pod


def test_run_as_user_and_groups_can_be_set_but_not_root() -> None:
    pod = deployment_for(podSecurityContext={"runAsUser": 10001, "fsGroup": 10001})["spec"][
        "template"
    ]["spec"]

    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["fsGroup"] == 10001
    assert pod["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize(("grace", "expected"), [("30s", 40), ("1m", 70), ("2.5s", 13)])
def test_termination_grace_is_above_the_shutdown_grace(grace: str, expected: int) -> None:
    pod = deployment_for(shutdownGrace=grace)["spec"]["template"]["spec"]

    assert pod["terminationGracePeriodSeconds"] == expected


def test_the_kubelet_waits_past_the_runtimes_own_bound_on_a_shutdown() -> None:
    """``tickwork run`` exits at the latest ``STOP_OVERRUN_SECONDS`` after its grace: before
    the kubelet would kill it (it then exits on its own, saying which tick did not stop)."""
    from worker_operator.constants import DEFAULTS
    from worker_runtime.rules import STOP_OVERRUN_SECONDS

    assert DEFAULTS.termination_margin_seconds >= STOP_OVERRUN_SECONDS + 1


def test_recommended_labels_and_an_immutable_selector() -> None:
    deployment = deployment_for(podLabels={"team": "admin"})
    labels = deployment["metadata"]["labels"]

    assert labels == {
        "app.kubernetes.io/name": "tickwork-worker",
        "app.kubernetes.io/instance": "passive-users",
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/part-of": "tickwork",
        "app.kubernetes.io/managed-by": "tickwork-operator",
        "app.kubernetes.io/version": "1.4.2",
    }
    assert deployment["spec"]["selector"] == {
        "matchLabels": {
            "app.kubernetes.io/name": "tickwork-worker",
            "app.kubernetes.io/instance": "passive-users",
        }
    }
    assert deployment["spec"]["template"]["metadata"]["labels"] == {**labels, "team": "admin"}
    assert selector_string("passive-users") == (
        "app.kubernetes.io/instance=passive-users,app.kubernetes.io/name=tickwork-worker"
    )


def test_the_deployment_is_owned_by_its_worker() -> None:
    owner = deployment_for()["metadata"]["ownerReferences"]

    assert owner == [
        {
            "apiVersion": "tickwork.dev/v1alpha1",
            "kind": "BackgroundWorker",
            "name": "passive-users",
            "uid": "0b7c7e1e-4c2f-4b8e-9d55-2f0f8f6b9a01",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_suspend_scales_to_zero_and_keeps_everything_else() -> None:
    running = deployment_for(replicas=3, redis={"url": "redis://redis:6379/0"})
    suspended = deployment_for(replicas=3, redis={"url": "redis://redis:6379/0"}, suspend=True)

    assert running["spec"]["replicas"] == 3
    assert suspended["spec"]["replicas"] == 0
    assert suspended["spec"]["template"] == running["spec"]["template"]


def test_placement_and_identity_overrides_reach_the_pod() -> None:
    tolerations = [
        {"key": "dedicated", "operator": "Equal", "value": "workers", "effect": "NoSchedule"}
    ]
    affinity = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}
            ]
        }
    }
    deployment = deployment_for(
        imagePullPolicy="Always",
        nodeSelector={"kubernetes.io/os": "linux"},
        tolerations=tolerations,
        affinity=affinity,
        imagePullSecrets=[{"name": "registry"}],
        resources={"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        envFrom=[{"configMapRef": {"name": "worker-config"}}],
        podAnnotations={"example.com/owner": "admin"},
    )
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]

    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == tolerations
    assert pod["affinity"] == affinity
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"]["requests"]["cpu"] == "50m"
    assert container["resources"]["limits"]["memory"] == "256Mi"
    assert container["envFrom"] == [{"configMapRef": {"name": "worker-config"}}]
    assert deployment["spec"]["template"]["metadata"]["annotations"]["example.com/owner"] == "admin"


def test_the_progress_deadline_comes_from_the_operator_settings() -> None:
    worker = parse_worker(worker_body())

    deployment = build_deployment(worker, OperatorSettings(progress_deadline_seconds=90))

    assert deployment["spec"]["progressDeadlineSeconds"] == 90


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("registry.example.com/admin-workers:1.4.2", "1.4.2"),
        ("localhost:5000/workers", None),
        ("workers:latest", "latest"),
        ("workers@sha256:" + "ab" * 32, "sha256-abababababab"),
        ("workers:" + "x" * 70, None),
    ],
)
def test_the_version_label_is_the_image_tag_when_it_is_a_valid_label(
    image: str, version: str | None
) -> None:
    assert image_version(image) == version


def test_an_event_names_the_worker_and_the_reporting_operator() -> None:
    event = build_event(
        involved={
            "apiVersion": "tickwork.dev/v1alpha1",
            "kind": "BackgroundWorker",
            "name": "passive-users",
            "namespace": "team-a",
            "uid": "u1",
        },
        event_type="Warning",
        reason="SecretNotFound",
        message='Secret "redis" does not exist',
        now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        instance="tickwork-operator-0",
    )

    assert event["metadata"] == {"generateName": "passive-users.", "namespace": "team-a"}
    assert event["involvedObject"]["uid"] == "u1"
    assert (event["type"], event["reason"]) == ("Warning", "SecretNotFound")
    assert event["source"] == {"component": "tickwork-operator"}
    assert event["reportingInstance"] == "tickwork-operator-0"
    assert event["lastTimestamp"] == "2026-01-02T03:04:05Z"


def _resources(deployment: dict[str, Any]) -> dict[str, Any]:
    resources: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    return resources


def test_the_pods_request_local_disk_and_are_limited_to_their_tmp_plus_room_for_logs() -> None:
    resources = _resources(deployment_for())

    assert resources == {
        "requests": {"ephemeral-storage": "64Mi"},
        "limits": {"ephemeral-storage": "192Mi"},
    }


def test_a_bigger_tmp_raises_the_local_disk_limit_with_it() -> None:
    deployment = deployment_for(tmpSizeLimit="1Gi")

    assert deployment["spec"]["template"]["spec"]["volumes"] == [
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}
    ]
    assert _resources(deployment)["limits"] == {"ephemeral-storage": "1152Mi"}


@pytest.mark.parametrize(
    "resources",
    [
        {"limits": {"ephemeral-storage": "2Gi"}},
        {"requests": {"ephemeral-storage": "10Mi"}},
        {"requests": {"ephemeral-storage": "10Mi"}, "limits": {"ephemeral-storage": "20Mi"}},
    ],
)
def test_local_disk_set_in_the_spec_is_kept_as_written(resources: dict[str, Any]) -> None:
    assert _resources(deployment_for(resources=resources)) == resources


@pytest.mark.parametrize("size", ["0", "512Ki", "-1Gi", "lots", True])
def test_a_tmp_size_below_one_mebibyte_or_not_a_size_is_refused(size: object) -> None:
    with pytest.raises(SpecError, match=r"spec\.tmpSizeLimit .* at least 1Mi"):
        parse_worker(worker_body(tmpSizeLimit=size))


def test_the_pods_get_a_disruption_budget_owned_by_the_worker() -> None:
    worker = parse_worker(worker_body(replicas=3, redis={"url": "redis://redis:6379/0"}))
    budget = build_disruption_budget(worker)

    assert budget["apiVersion"] == "policy/v1"
    assert (budget["metadata"]["name"], budget["metadata"]["namespace"]) == (
        "passive-users",
        "team-a",
    )
    assert budget["metadata"]["ownerReferences"][0]["uid"] == worker.uid
    assert budget["spec"]["maxUnavailable"] == 1
    deployment = build_deployment(worker, SETTINGS)
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]


def test_the_disruption_budget_can_be_widened_or_turned_off() -> None:
    wider = parse_worker(worker_body(podDisruptionBudget={"maxUnavailable": 2}))
    off = parse_worker(worker_body(podDisruptionBudget={"enabled": False}))

    assert build_disruption_budget(wider)["spec"]["maxUnavailable"] == 2
    assert build_disruption_budget(off)["spec"]["maxUnavailable"] == "100%"


@pytest.mark.parametrize(("durable", "expected"), [(True, "true"), (False, "false")])
def test_durable_writes_set_in_the_spec_reach_the_runtime(durable: bool, expected: str) -> None:
    redis = {"url": "redis+sentinel://s1:26379,s2:26379/main", "durableWrites": durable}

    assert env_of(deployment_for(redis=redis))["TICKWORK_REDIS_DURABLE_WRITES"] == expected


def test_unset_durable_writes_leave_the_runtime_its_default() -> None:
    env = env_of(deployment_for(redis={"url": "redis+sentinel://s1:26379/main"}))

    assert "TICKWORK_REDIS_DURABLE_WRITES" not in env  # on with Sentinel, off otherwise
