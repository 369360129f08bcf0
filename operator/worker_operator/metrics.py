"""The operator's own Prometheus metrics (``tickwork_operator_*``) on an injected registry."""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

__all__ = ["OperatorMetrics", "Result"]


class Result(StrEnum):
    """How one reconcile ended (the ``result`` label)."""

    SUCCESS = "success"
    DEGRADED = "degraded"  # applied, but the worker needs a human (Degraded=True)
    INVALID_SPEC = "invalid_spec"
    REJECTED = "rejected"  # the API server refused the Deployment (HTTP 4xx)
    CONFLICT = "conflict"  # a Deployment of that name belongs to something else
    TRANSIENT_ERROR = "transient_error"  # retried with backoff
    SKIPPED = "skipped"  # the resource is gone or being deleted


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # No `*_created` series (as the runtime): they double the series count and say only
        # when the process started. prometheus_client's switch is process-wide.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry
        self.reconciles = Counter(
            "tickwork_operator_reconciles_total",
            "Reconciles of BackgroundWorkers, by trigger and result.",
            ["trigger", "result"],
            registry=registry,
        )
        self.reconcile_duration = Histogram(
            "tickwork_operator_reconcile_duration_seconds",
            "Time one reconcile took (API calls included).",
            ["result"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.drift_repairs = Counter(
            "tickwork_operator_drift_repairs_total",
            "Owned Deployments put back after they were changed or deleted by hand.",
            registry=registry,
        )
        self.events_posted = Counter(
            "tickwork_operator_events_total",
            "Kubernetes Events posted, by type and reason.",
            ["type", "reason"],
            registry=registry,
        )
        self.api_requests = Counter(
            "tickwork_operator_api_requests_total",
            "Requests the operator's own client sent to the Kubernetes API (kopf's watches "
            "not included), by method and resource.",
            ["method", "resource"],
            registry=registry,
        )
        self.leader = Gauge(
            "tickwork_operator_leader",
            "1 while this replica holds the leader Lease and reconciles, else 0.",
            registry=registry,
        )
        self.status_reads = Counter(
            "tickwork_operator_status_reads_total",
            "Reads of a worker pod's status document (GET /status), by result (success, "
            "timeout, unreachable, refused, invalid).",
            ["result"],
            registry=registry,
        )
        self.last_resync = Gauge(
            "tickwork_operator_last_resync_timestamp_seconds",
            "When the last periodic resync of every BackgroundWorker finished (Unix time).",
            registry=registry,
        )

    def observe(self, *, trigger: str, result: Result, seconds: float) -> None:
        self.reconciles.labels(trigger=trigger, result=result.value).inc()
        self.reconcile_duration.labels(result=result.value).observe(seconds)
