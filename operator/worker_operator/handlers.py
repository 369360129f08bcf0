"""kopf handlers (thin): every watch event goes to the ``Reconciler`` as it came.

* an event on a ``BackgroundWorker`` (the initial listing, added, changed, deleted) →
  reconcile it. Only event-watching handlers are used: kopf keeps no handler progress and no
  copy of the spec (its ``last-handled-configuration`` annotation, limited to 256 KiB) on
  the resource, so a spec of any size the API server accepts is handled, and retries are the
  reconciler's (with a growing delay), not kopf's.
* an event on an owned Deployment (changed, scaled or deleted by hand; rollout progress) →
  repair drift and refresh status at once, instead of waiting for the periodic resync.
* an event on a worker pod → remember whether it reports a problem (image pull, missing
  Secret) and refresh status when that changed, so ``Degraded`` shows without delay.

The Deployment and pod watches are filtered on the server by the managed-by label.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, cast

import kopf

from worker_operator.constants import (
    GROUP,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    OPERATOR_NAME,
    PLURAL,
    VERSION,
)
from worker_operator.kubeapi import Credentials
from worker_operator.reconciling import Reconciler
from worker_operator.settings import OperatorSettings
from worker_runtime.logs import JsonFormatter

__all__ = [
    "KOPF_IDLE_SECONDS",
    "NoDiffBase",
    "build_registry",
    "configure_logging",
    "kopf_settings",
    "run_kopf",
]

log = logging.getLogger(__name__)

_MANAGED = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
#: How long kopf's worker for one resource waits for that resource's next event.
KOPF_IDLE_SECONDS = 0.5


class NoDiffBase(kopf.DiffBaseStorage):
    """No "last handled" copy of a resource: only event handlers are registered, and they
    read no diff.

    kopf builds the diff base of every event it sees (a deep copy of the whole body, for the
    changing and spawning handlers this operator does not have): in a burst of new workers
    that copy was an eighth of the operator's CPU time.
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    """kopf's own settings, chosen for this operator."""
    ks = kopf.OperatorSettings()
    # Handler progress goes to annotations with our prefix (the strict status schema has no
    # room for kopf's status.kopf); only event handlers are registered, so kopf writes none.
    ks.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    ks.persistence.diffbase_storage = NoDiffBase()
    # Events are posted by the reconciler (deduplicated, with clear reasons), not per log line.
    ks.posting.enabled = False
    ks.posting.reporting_component = f"{GROUP}/{OPERATOR_NAME}"
    ks.posting.reporting_instance = settings.identity
    # The CRD is installed before the operator starts (the CLI checks it); watching CRDs and
    # namespaces would need cluster-wide rights the operator otherwise does not need.
    ks.scanning.disabled = True
    # High availability comes from our coordination Lease, not from kopf's peering CRDs.
    ks.peering.standalone = True
    ks.watching.label_selectors["apps", "v1", "deployments"] = _MANAGED
    ks.watching.label_selectors["v1", "pods"] = _MANAGED
    # kopf keeps one worker per resource that has just had an event, and that worker holds
    # the last event's whole body while it waits for the next one (5 s by default): after a
    # burst of new workers, thousands of Deployment and BackgroundWorker bodies at once. An
    # object's events in a row still go to one worker; a later one starts a new worker.
    ks.queueing.idle_timeout = KOPF_IDLE_SECONDS
    ks.watching.reconnect_backoff = 1.0
    ks.watching.server_timeout = 300
    ks.networking.request_timeout = 60
    ks.networking.connect_timeout = 10
    return ks


def configure_logging(settings: OperatorSettings) -> None:
    """One place chooses the log format (text or JSON) and level of the whole process."""
    kopf.configure(
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
        log_refkey="object",
    )
    if settings.log_format == "json":
        # The runtime's JSON shape (worker_runtime.logs) instead of kopf's own
        # (timestamp/severity): one shape for every Tickwork process. kopf's object reference
        # (`k8s_ref`) becomes `object`, as kopf's log_refkey would; its internals are dropped.
        formatter = JsonFormatter(rename={"k8s_ref": "object"}, hide=("k8s_skip", "settings"))
        for handler in logging.getLogger().handlers:
            handler.setFormatter(formatter)
    logging.getLogger().setLevel(settings.log_level.upper())
    if settings.log_level.upper() != "DEBUG":
        # kopf logs every handler call ("Handler 'owned-deployment' succeeded") at INFO; the
        # reconciler logs what changed instead.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # aiohttp's access log would print every probe and scrape.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _connection_info(credentials: Credentials, *, trust_env: bool) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(
        server=credentials.server,
        ca_path=credentials.ca_path,
        insecure=credentials.insecure,
        scheme=credentials.scheme,
        token=credentials.token,
        username=credentials.username,
        password=credentials.password,
        certificate_path=credentials.certificate_path,
        private_key_path=credentials.private_key_path,
        proxy_url=credentials.proxy_url,
        trust_env=trust_env,
    )


def build_registry(reconciler: Reconciler) -> kopf.OperatorRegistry:
    """A fresh registry with every handler of the operator (nothing global)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    async def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
        # kopf's watches use the very credentials of the operator's own client (--kubeconfig,
        # $KUBECONFIG or in-cluster, chosen once in KubeApi.connect), never a second guess.
        credentials = await reconciler.api.credentials()
        return _connection_info(credentials, trust_env=settings.networking.trust_env)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, id="worker")
    async def on_worker(event: kopf.RawEvent, **_: Any) -> None:
        await reconciler.on_worker_event(event.get("type"), event["object"])

    @kopf.on.event(
        "apps",
        "v1",
        "deployments",
        registry=registry,
        id="owned-deployment",
        labels={LABEL_MANAGED_BY: MANAGED_BY},
    )
    async def on_deployment(event: kopf.RawEvent, **_: Any) -> None:
        await reconciler.on_deployment_event(event.get("type"), event["object"])

    @kopf.on.event(
        "v1", "pods", registry=registry, id="worker-pod", labels={LABEL_MANAGED_BY: MANAGED_BY}
    )
    async def on_pod(event: kopf.RawEvent, **_: Any) -> None:
        await reconciler.on_pod_event(event.get("type"), event["object"])

    return registry


async def run_kopf(
    reconciler: Reconciler,
    settings: OperatorSettings,
    *,
    stop_flag: asyncio.Event,
    ready_flag: asyncio.Event,
) -> None:
    """Run kopf with this operator's handlers until ``stop_flag`` (or SIGINT/SIGTERM)."""
    await kopf.operator(
        registry=build_registry(reconciler),
        settings=kopf_settings(settings),
        clusterwide=settings.clusterwide,
        namespaces=list(settings.namespaces),
        standalone=True,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
