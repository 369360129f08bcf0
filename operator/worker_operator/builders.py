"""Pure builders: a ``WorkerSpec`` in, Kubernetes objects (plain dicts) out.

No I/O here, and neither kopf nor a Kubernetes client is imported (an import-linter contract
checks it). The reconciler sends what these functions return.
"""

from __future__ import annotations

import copy
import math
import re
from datetime import datetime
from typing import Any

from worker_operator.constants import (
    ANNOTATION_ELECTION,
    API_VERSION,
    CONTAINER_NAME,
    DEFAULTS,
    KIND,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PART_OF,
    LABEL_VERSION,
    MANAGED_BY,
    METRICS_PORT_NAME,
    OPERATOR_NAME,
    WORKER_APP_NAME,
)
from worker_operator.quantities import format_mebibytes, quantity_value
from worker_operator.settings import OperatorSettings
from worker_operator.spec import WorkerSpec

__all__ = [
    "build_deployment",
    "build_disruption_budget",
    "build_event",
    "container_env",
    "container_resources",
    "deployment_name",
    "disruption_budget_name",
    "image_version",
    "owner_reference",
    "selector_labels",
    "selector_string",
    "termination_grace_seconds",
    "worker_labels",
]

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DIGEST = re.compile(r"@sha256:([0-9a-f]{64})$")


def deployment_name(worker: WorkerSpec) -> str:
    return worker.name


def selector_labels(name: str) -> dict[str, str]:
    """The Deployment's selector (immutable): the app and the instance."""
    return {LABEL_NAME: WORKER_APP_NAME, LABEL_INSTANCE: name}


def selector_string(name: str) -> str:
    """``status.selector`` for the scale subresource, e.g. for ``kubectl scale`` and HPA."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(name).items()))


def image_version(image: str) -> str | None:
    """The tag (or a short digest) of an image, if it is a valid label value."""
    digest = _DIGEST.search(image)
    if digest:
        return f"sha256-{digest.group(1)[:12]}"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    tag = last.rsplit(":", 1)[1]
    if len(tag) <= 63 and _LABEL_VALUE.fullmatch(tag):
        return tag
    return None


def worker_labels(worker: WorkerSpec) -> dict[str, str]:
    """The recommended ``app.kubernetes.io/*`` labels of the Deployment and its pods."""
    labels = {
        **selector_labels(worker.name),
        LABEL_COMPONENT: "worker",
        LABEL_PART_OF: "tickwork",
        LABEL_MANAGED_BY: MANAGED_BY,
    }
    version = image_version(worker.image)
    if version:
        labels[LABEL_VERSION] = version
    return labels


def owner_reference(worker: WorkerSpec) -> dict[str, Any]:
    """The Deployment belongs to the BackgroundWorker: deleting one deletes the other (GC)."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": worker.name,
        "uid": worker.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def termination_grace_seconds(worker: WorkerSpec) -> int:
    """Above the runtime's shutdown grace, so it can finish ticks and release its lease."""
    return math.ceil(worker.shutdown_grace_seconds) + DEFAULTS.termination_margin_seconds


def _env(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def container_env(worker: WorkerSpec) -> list[dict[str, Any]]:
    """The ``TICKWORK_*`` variables ``tickwork run`` reads, then the user's own ``env``."""
    schedule = worker.schedule
    env = [
        _env("TICKWORK_NAME", worker.runtime_name),
        {
            "name": "TICKWORK_REPLICA_ID",
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
        },
    ]
    if schedule.period is not None:
        env.append(_env("TICKWORK_PERIOD", schedule.period))
        env.append(_env("TICKWORK_MODE", schedule.mode or DEFAULTS.mode))
    else:
        assert schedule.cron is not None
        env.append(_env("TICKWORK_CRON", schedule.cron))
        env.append(_env("TICKWORK_TIMEZONE", schedule.time_zone or DEFAULTS.time_zone))
    env.append(_env("TICKWORK_RUN_ON_START", "true" if schedule.run_on_start else "false"))
    if schedule.timeout is not None:
        env.append(_env("TICKWORK_TIMEOUT", schedule.timeout))
    if schedule.jitter is not None:
        env.append(_env("TICKWORK_JITTER", schedule.jitter))
    env.append(_env("TICKWORK_MISFIRE", schedule.misfire))
    if schedule.misfire_grace is not None:
        env.append(_env("TICKWORK_MISFIRE_GRACE", schedule.misfire_grace))
    if worker.services is not None:
        env.append(_env("TICKWORK_SERVICES", worker.services))
    redis = worker.redis
    if redis is not None:
        if redis.url_secret is not None:
            env.append(
                _secret_env("TICKWORK_REDIS_URL", redis.url_secret.name, redis.url_secret.key)
            )
        else:
            assert redis.url is not None
            env.append(_env("TICKWORK_REDIS_URL", redis.url))
        if redis.password_secret is not None:
            env.append(
                _secret_env(
                    "TICKWORK_REDIS_PASSWORD", redis.password_secret.name, redis.password_secret.key
                )
            )
        if redis.durable_writes is not None:
            env.append(
                _env("TICKWORK_REDIS_DURABLE_WRITES", "true" if redis.durable_writes else "false")
            )
    env.append(_env("TICKWORK_LEASE_TTL", worker.lease.ttl))
    if worker.lease.renew_interval is not None:
        env.append(_env("TICKWORK_LEASE_RENEW_INTERVAL", worker.lease.renew_interval))
    env.append(_env("TICKWORK_SHUTDOWN_GRACE", worker.shutdown_grace))
    env.append(_env("TICKWORK_METRICS_PORT", str(worker.metrics_port)))
    env.append(_env("TICKWORK_LOG_FORMAT", worker.log_format))
    env.append(_env("TICKWORK_LOG_LEVEL", worker.log_level))
    env.extend(copy.deepcopy(dict(e)) for e in worker.env)
    return env


def _probe(path: str, *, period_seconds: int, failure_threshold: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": METRICS_PORT_NAME, "scheme": "HTTP"},
        "periodSeconds": period_seconds,
        "timeoutSeconds": 2,
        "failureThreshold": failure_threshold,
    }


def _container(worker: WorkerSpec) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": worker.image,
        "args": ["run", worker.worker],
        "env": container_env(worker),
        "ports": [
            {"name": METRICS_PORT_NAME, "containerPort": worker.metrics_port, "protocol": "TCP"}
        ],
        "livenessProbe": _probe("/healthz", period_seconds=10, failure_threshold=3),
        "readinessProbe": _probe("/readyz", period_seconds=5, failure_threshold=2),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if worker.image_pull_policy is not None:
        container["imagePullPolicy"] = worker.image_pull_policy
    if worker.env_from:
        container["envFrom"] = [copy.deepcopy(dict(e)) for e in worker.env_from]
    container["resources"] = container_resources(worker)
    return container


_EPHEMERAL = "ephemeral-storage"


def container_resources(worker: WorkerSpec) -> dict[str, Any]:
    """``spec.resources``, with a local-disk request and limit when it names none.

    The limit covers the ``/tmp`` emptyDir at its ``sizeLimit`` plus room for the container's
    logs, so the kubelet evicts a pod that fills the node's disk, not one that uses its
    ``/tmp`` as allowed. A request or limit of ``ephemeral-storage`` in the spec is kept as
    written (Kubernetes then defaults a missing request to the limit).
    """
    resources = copy.deepcopy(dict(worker.resources or {}))
    requests = dict(resources.get("requests") or {})
    limits = dict(resources.get("limits") or {})
    if _EPHEMERAL not in requests and _EPHEMERAL not in limits:
        requests[_EPHEMERAL] = DEFAULTS.ephemeral_storage_request
        limits[_EPHEMERAL] = format_mebibytes(
            quantity_value(worker.tmp_size_limit)
            + quantity_value(DEFAULTS.ephemeral_storage_headroom)
        )
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return resources


def _pod_annotations(worker: WorkerSpec) -> dict[str, str]:
    annotations = dict(worker.pod_annotations)
    if worker.metrics_scrape:
        annotations.update(
            {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(worker.metrics_port),
                "prometheus.io/path": "/metrics",
            }
        )
    return annotations


def _pod_spec(worker: WorkerSpec) -> dict[str, Any]:
    security: dict[str, Any] = {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        **dict(worker.pod_security_context),
    }
    pod: dict[str, Any] = {
        "containers": [_container(worker)],
        "securityContext": security,
        "terminationGracePeriodSeconds": termination_grace_seconds(worker),
        "enableServiceLinks": False,
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": worker.tmp_size_limit}}],
    }
    if worker.service_account_name:
        pod["serviceAccountName"] = worker.service_account_name
    else:
        pod["automountServiceAccountToken"] = False
    if worker.node_selector:
        pod["nodeSelector"] = dict(worker.node_selector)
    if worker.tolerations:
        pod["tolerations"] = [copy.deepcopy(dict(t)) for t in worker.tolerations]
    if worker.affinity:
        pod["affinity"] = copy.deepcopy(dict(worker.affinity))
    if worker.image_pull_secrets:
        pod["imagePullSecrets"] = [copy.deepcopy(dict(s)) for s in worker.image_pull_secrets]
    return pod


def build_deployment(worker: WorkerSpec, settings: OperatorSettings) -> dict[str, Any]:
    """The Deployment the operator server-side applies for ``worker`` (its whole intent)."""
    labels = worker_labels(worker)
    annotations = _pod_annotations(worker)
    template_metadata: dict[str, Any] = {"labels": {**worker.pod_labels, **labels}}
    if annotations:
        template_metadata["annotations"] = annotations
    metadata: dict[str, Any] = {
        "name": deployment_name(worker),
        "namespace": worker.namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(worker)],
    }
    if settings.election:
        metadata["annotations"] = {ANNOTATION_ELECTION: settings.election}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": worker.desired_replicas,
            "selector": {"matchLabels": selector_labels(worker.name)},
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": settings.progress_deadline_seconds,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {"metadata": template_metadata, "spec": _pod_spec(worker)},
        },
    }


def disruption_budget_name(worker: WorkerSpec) -> str:
    return worker.name


def build_disruption_budget(worker: WorkerSpec) -> dict[str, Any]:
    """The PodDisruptionBudget of the worker's pods (applied when it has replicas > 1).

    A voluntary disruption (a node drain) takes down at most ``maxUnavailable`` pods at once,
    so it never takes every replica of a worker together. Turned off in the spec, the budget
    stays with no limit (``100%``): the operator deletes nothing.
    """
    limit: int | str = "100%" if worker.max_unavailable is None else worker.max_unavailable
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": disruption_budget_name(worker),
            "namespace": worker.namespace,
            "labels": worker_labels(worker),
            "ownerReferences": [owner_reference(worker)],
        },
        "spec": {
            "maxUnavailable": limit,
            "selector": {"matchLabels": selector_labels(worker.name)},
            # Pods that are not Ready (crash-looping, pending) may be evicted whatever the
            # budget says, so a broken rollout never blocks a drain.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def build_event(
    *,
    involved: dict[str, Any],
    event_type: str,
    reason: str,
    message: str,
    now: datetime,
    instance: str,
    action: str = "Reconcile",
) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` (``{apiVersion, kind, name, namespace, uid}``)."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    micro = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    name = str(involved["name"])
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{name[:200]}.",
            "namespace": involved["namespace"],
        },
        "involvedObject": dict(involved),
        "type": event_type,
        "reason": reason,
        "message": message[:1024],
        "action": action,
        "source": {"component": OPERATOR_NAME},
        "reportingComponent": f"tickwork.dev/{OPERATOR_NAME}",
        "reportingInstance": instance[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": micro,
        "count": 1,
    }
