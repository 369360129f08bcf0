"""The event recorder: Kubernetes Events about BackgroundWorkers, posted once per news.

A Warning is posted when a worker's problem is new (the same reason and message are posted
once, however often the worker is looked at); a Normal event after a Warning clears it. An
Event that cannot be posted is logged and dropped: it is worth less than the reconcile that
posts it. In a namespace being deleted nothing is posted (and nothing is logged above debug).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from worker_operator.builders import build_event
from worker_operator.constants import API_VERSION, KIND
from worker_operator.kubeapi import ApiError, KubeApi, NamespaceTerminating
from worker_operator.metrics import OperatorMetrics

__all__ = ["EventRecorder", "involved"]

log = logging.getLogger(__name__)

Key = tuple[str, str]


def involved(namespace: str, name: str, uid: str) -> dict[str, Any]:
    """The ``involvedObject`` of an Event about one BackgroundWorker."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "namespace": namespace,
        "uid": uid,
    }


class EventRecorder:
    def __init__(
        self,
        *,
        api: KubeApi,
        metrics: OperatorMetrics,
        instance: str,
        now: Callable[[], datetime],
    ) -> None:
        self._api = api
        self._metrics = metrics
        self._instance = instance
        self._now = now
        #: The last Warning posted per resource, so a repeated assessment posts it once.
        self._last_warning: dict[Key, tuple[str, str]] = {}

    def forget(self, key: Key) -> None:
        self._last_warning.pop(key, None)

    async def warning(self, about: Mapping[str, Any], reason: str, message: str) -> None:
        key = (str(about["namespace"]), str(about["name"]))
        if self._last_warning.get(key) == (reason, message):
            return
        self._last_warning[key] = (reason, message)
        log.warning("%s/%s is degraded: %s: %s", *key, reason, message)
        await self._post(about, "Warning", reason, message)

    async def normal(
        self, about: Mapping[str, Any], reason: str, message: str, *, clears: bool = False
    ) -> None:
        """A Normal event; ``clears`` ends the current Warning (the next one is news again)."""
        if clears:
            self.forget((str(about["namespace"]), str(about["name"])))
        await self._post(about, "Normal", reason, message)

    async def _post(
        self, about: Mapping[str, Any], event_type: str, reason: str, message: str
    ) -> None:
        event = build_event(
            involved=dict(about),
            event_type=event_type,
            reason=reason,
            message=message,
            now=self._now(),
            instance=self._instance,
        )
        try:
            await self._api.create_event(event)
        except NamespaceTerminating:
            log.debug(
                "%s/%s: no %s Event: the namespace is being deleted",
                about["namespace"],
                about["name"],
                reason,
            )
            return
        except ApiError as exc:
            log.warning("could not post the %s Event %s: %s", event_type, reason, exc)
            return
        self._metrics.events_posted.labels(type=event_type, reason=reason).inc()
