"""``OperatorSettings``: the operator's configuration, built once (from the CLI) and passed in."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from worker_operator.constants import OPERATOR_NAME

__all__ = ["OperatorSettings", "default_identity", "default_lease_namespace"]

_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_identity(env: Mapping[str, str]) -> str:
    """This replica's name in the leader Lease and in Events: the pod name, else host + uuid."""
    pod = env.get("POD_NAME")
    if pod:
        return pod
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


def default_lease_namespace(env: Mapping[str, str], *, sa_file: Path | None = None) -> str | None:
    """The operator's own namespace: POD_NAMESPACE or the mounted ServiceAccount's.

    ``None`` outside a pod: there is no default that every operator of a cluster would
    agree on, and two operators with different Lease namespaces would both lead.
    """
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    path = sa_file or _SERVICE_ACCOUNT_NAMESPACE
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorSettings:
    """Everything ``tickwork-operator`` was told; units are in the names."""

    #: Namespaces to serve; empty means all namespaces (cluster-wide).
    namespaces: tuple[str, ...] = ()
    #: Address and port of /healthz, /readyz and /metrics (port 0 disables the server).
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    #: Every BackgroundWorker is reconciled at least this often, events or not.
    resync_interval_seconds: float = 300.0
    #: A Degraded worker is looked at again after this long (e.g. a Secret that appears).
    degraded_recheck_seconds: float = 15.0
    #: ... then after twice as long each time, at most this long (watches report the rest).
    degraded_recheck_max_seconds: float = 300.0
    #: A worker with Ready pods has its status document read at least this often.
    status_refresh_seconds: float = 30.0
    #: One read of a pod's status document gives up after this long.
    status_timeout_seconds: float = 2.0
    #: A worker whose pods did not answer is asked again after the refresh interval, then
    #: twice as long each time, at most this long.
    status_backoff_max_seconds: float = 300.0
    #: How many workers one resync reconciles at the same time.
    resync_concurrency: int = 8
    #: The Deployments' progressDeadlineSeconds (a stuck rollout turns Degraded after it).
    progress_deadline_seconds: int = 600
    #: Look up (metadata only) the Secrets a worker references, to report a missing one
    #: at once. Needs `get` on secrets; without it a missing Secret shows from the pods
    #: (CreateContainerConfigError) on a real kubelet.
    check_secret_references: bool = False
    #: Leader election through a coordination.k8s.io Lease: only the holder reconciles.
    leader_election: bool = True
    lease_name: str = OPERATOR_NAME
    lease_namespace: str = "default"
    lease_duration_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_period_seconds: float = 2.0
    identity: str = OPERATOR_NAME
    log_format: str = "text"
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if not 0 <= self.http_port <= 65535:
            raise ValueError(f"HTTP port {self.http_port} must be from 0 to 65535")
        if self.resync_interval_seconds <= 0:
            raise ValueError(
                f"resync interval {self.resync_interval_seconds:g}s must be greater than zero"
            )
        if self.degraded_recheck_seconds <= 0:
            raise ValueError(
                f"degraded recheck {self.degraded_recheck_seconds:g}s must be greater than zero"
            )
        if self.degraded_recheck_max_seconds < self.degraded_recheck_seconds:
            raise ValueError(
                f"the longest degraded recheck {self.degraded_recheck_max_seconds:g}s must not "
                f"be shorter than the first one {self.degraded_recheck_seconds:g}s"
            )
        if self.status_refresh_seconds <= 0:
            raise ValueError(
                f"status refresh {self.status_refresh_seconds:g}s must be greater than zero"
            )
        if self.status_timeout_seconds <= 0:
            raise ValueError(
                f"status timeout {self.status_timeout_seconds:g}s must be greater than zero"
            )
        if self.status_backoff_max_seconds < self.status_refresh_seconds:
            raise ValueError(
                f"the longest status backoff {self.status_backoff_max_seconds:g}s must not be "
                f"shorter than the status refresh {self.status_refresh_seconds:g}s"
            )
        if self.resync_concurrency < 1:
            raise ValueError(f"resync concurrency {self.resync_concurrency} must be at least 1")
        if self.progress_deadline_seconds < 1:
            raise ValueError(
                f"progress deadline {self.progress_deadline_seconds}s must be at least 1s"
            )
        if not (
            0
            < self.retry_period_seconds
            < self.renew_deadline_seconds
            < self.lease_duration_seconds
        ):
            raise ValueError(
                "leader election needs retry period < renew deadline < lease duration, got "
                f"{self.retry_period_seconds:g}s, {self.renew_deadline_seconds:g}s, "
                f"{self.lease_duration_seconds:g}s"
            )
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log format {self.log_format!r} is not one of: text, json")

    @property
    def election(self) -> str:
        """``<lease namespace>/<lease name>``; empty without leader election."""
        return f"{self.lease_namespace}/{self.lease_name}" if self.leader_election else ""

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces
