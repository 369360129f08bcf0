"""kopf handlers (thin): they hand a resource to the ``Reconciler`` and map its errors.

* create / update (of ``spec``) / resume of a ``BackgroundWorker`` → reconcile it;
  ``InvalidSpec`` and the like become ``kopf.PermanentError`` (no retry until the spec
  changes), ``Unavailable`` becomes ``kopf.TemporaryError`` (retried after its delay).
* an event on an owned Deployment (changed, scaled or deleted by hand; rollout progress) →
  repair drift and refresh status at once, instead of waiting for the periodic resync.
* an event on a worker pod that reports a problem (image pull, missing Secret) → refresh
  status, so ``Degraded`` shows without delay.

The Deployment and pod watches are filtered on the server by the managed-by label.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping
from typing import Any

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
from worker_operator.reconciling import ReconcileError, Reconciler, Unavailable
from worker_operator.settings import OperatorSettings

__all__ = ["build_registry", "configure_logging", "kopf_settings", "run_kopf"]

log = logging.getLogger(__name__)

_MANAGED = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    """kopf's own settings, chosen for this operator."""
    ks = kopf.OperatorSettings()
    # Handler progress and the last handled spec go to annotations with our prefix: the
    # strict status schema has no room for kopf's status.kopf.
    ks.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    ks.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
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
    logging.getLogger().setLevel(settings.log_level.upper())
    if settings.log_level.upper() != "DEBUG":
        # kopf logs every handler call ("Handler 'owned-deployment' succeeded") at INFO; the
        # reconciler logs what changed instead.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # aiohttp's access log would print every probe and scrape.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def _reconcile(reconciler: Reconciler, body: Mapping[str, Any], *, trigger: str) -> None:
    try:
        await reconciler.reconcile(copy.deepcopy(dict(body)), trigger=trigger)
    except Unavailable as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay_seconds) from None
    except ReconcileError as exc:
        if exc.permanent:
            raise kopf.PermanentError(str(exc)) from None
        raise kopf.TemporaryError(str(exc), delay=5.0) from None


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

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id="reconcile-on-create")
    async def on_create(body: kopf.Body, **_: Any) -> None:
        await _reconcile(reconciler, body, trigger="create")

    @kopf.on.update(
        GROUP, VERSION, PLURAL, registry=registry, id="reconcile-on-update", field="spec"
    )
    async def on_update(body: kopf.Body, **_: Any) -> None:
        await _reconcile(reconciler, body, trigger="update")

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry, id="reconcile-on-resume")
    async def on_resume(body: kopf.Body, **_: Any) -> None:
        await _reconcile(reconciler, body, trigger="resume")

    @kopf.on.event(
        "apps",
        "v1",
        "deployments",
        registry=registry,
        id="owned-deployment",
        labels={LABEL_MANAGED_BY: MANAGED_BY},
    )
    async def on_deployment(event: kopf.RawEvent, **_: Any) -> None:
        event_type = event.get("type")
        if event_type is None:  # the initial listing: resume handlers cover it
            return
        await reconciler.on_deployment_event(event_type, event["object"])

    @kopf.on.event(
        "v1", "pods", registry=registry, id="worker-pod", labels={LABEL_MANAGED_BY: MANAGED_BY}
    )
    async def on_pod(event: kopf.RawEvent, **_: Any) -> None:
        if event.get("type") in (None, "DELETED"):
            return
        await reconciler.on_pod_event(event["object"])

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
