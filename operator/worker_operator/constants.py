"""Names and defaults shared by the CRD, the builders and the operator (one place for each)."""

from __future__ import annotations

from typing import Final

from worker_runtime.durations import format_duration
from worker_runtime.rules import MAX_SHUTDOWN_GRACE_SECONDS

__all__ = [
    "ANNOTATION_ELECTION",
    "API_VERSION",
    "CATEGORY",
    "CONTAINER_NAME",
    "CRD_NAME",
    "DEFAULTS",
    "FIELD_MANAGER",
    "GROUP",
    "KIND",
    "LABEL_COMPONENT",
    "LABEL_INSTANCE",
    "LABEL_MANAGED_BY",
    "LABEL_NAME",
    "LABEL_PART_OF",
    "LABEL_VERSION",
    "LIST_KIND",
    "MANAGED_BY",
    "MAX_CONDITION_MESSAGE",
    "MAX_REPLICAS",
    "MAX_SHUTDOWN_GRACE",
    "METRICS_PORT_NAME",
    "MIN_TMP_SIZE",
    "OPERATOR_NAME",
    "PLURAL",
    "RESERVED_POD_LABELS",
    "SHORT_NAMES",
    "SINGULAR",
    "STATUS_DOCUMENT_VERSION",
    "STATUS_PATH",
    "VERSION",
    "WORKER_APP_NAME",
]

GROUP: Final = "tickwork.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "BackgroundWorker"
LIST_KIND: Final = "BackgroundWorkerList"
PLURAL: Final = "backgroundworkers"
SINGULAR: Final = "backgroundworker"
SHORT_NAMES: Final = ("bgw",)
CATEGORY: Final = "tickwork"
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

OPERATOR_NAME: Final = "tickwork-operator"
#: The one field manager of every server-side apply the operator sends.
FIELD_MANAGER: Final = OPERATOR_NAME

# Recommended labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_VERSION: Final = "app.kubernetes.io/version"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
WORKER_APP_NAME: Final = "tickwork-worker"
MANAGED_BY: Final = OPERATOR_NAME
#: Pod labels a user may not set: every app.kubernetes.io/* label the operator sets.
RESERVED_POD_LABELS: Final = (
    LABEL_NAME,
    LABEL_INSTANCE,
    LABEL_VERSION,
    LABEL_COMPONENT,
    LABEL_PART_OF,
    LABEL_MANAGED_BY,
)
#: Bounds of spec fields (documented in the CRD and the README).
#: On each Deployment: the leader election (``<lease namespace>/<lease name>``) of the
#: operator that applied it (see ``elections.py``).
ANNOTATION_ELECTION: Final = f"{GROUP}/election"

MAX_REPLICAS: Final = 100
MAX_SHUTDOWN_GRACE: Final = format_duration(MAX_SHUTDOWN_GRACE_SECONDS)
#: The smallest ``spec.tmpSizeLimit``.
MIN_TMP_SIZE: Final = "1Mi"
#: The longest condition message in status (metav1.Condition's bound).
MAX_CONDITION_MESSAGE: Final = 32768

CONTAINER_NAME: Final = "worker"
METRICS_PORT_NAME: Final = "metrics"
#: Where every worker replica serves its JSON status document, on the metrics port, and the
#: document version the operator reads (the runtime's ``worker_runtime.status``; a unit test
#: checks that both agree).
STATUS_PATH: Final = "/status"
STATUS_DOCUMENT_VERSION: Final = 1


class DEFAULTS:
    """Defaults of optional spec fields; the CRD schema declares the same values."""

    replicas: Final = 1
    suspend: Final = False
    run_on_start: Final = False
    mode: Final = "delay"
    misfire: Final = "skip"
    time_zone: Final = "UTC"
    lease_ttl: Final = "15s"
    metrics_port: Final = 9100
    metrics_scrape: Final = True
    shutdown_grace: Final = "30s"
    log_format: Final = "json"
    log_level: Final = "info"
    redis_url_key: Final = "url"
    redis_password_key: Final = "password"
    #: Extra seconds the kubelet waits after the runtime's own shutdown grace.
    termination_margin_seconds: Final = 10
    #: The writable ``/tmp`` (an emptyDir) of each worker pod.
    tmp_size_limit: Final = "64Mi"
    #: Local disk a worker pod is scheduled with, and what its container may write beyond
    #: ``/tmp`` (its logs, kept by the kubelet) before it is evicted; used when
    #: ``spec.resources`` names no ``ephemeral-storage``.
    ephemeral_storage_request: Final = "64Mi"
    ephemeral_storage_headroom: Final = "128Mi"
    #: Worker pods a voluntary disruption (a node drain) may take down at once.
    max_unavailable: Final = 1
