"""kopf wiring: settings chosen for this operator, and errors mapped to kopf's retry model."""

from __future__ import annotations

from typing import Any, cast

import kopf
import pytest

from worker_operator.handlers import build_registry, kopf_settings
from worker_operator.reconciling import Reconciler
from worker_operator.settings import OperatorSettings


class StubReconciler:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, dict[str, Any]]] = []

    async def on_worker_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        self.seen.append(("worker", event_type, body))

    async def on_deployment_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        self.seen.append(("deployment", event_type, body))

    async def on_pod_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        self.seen.append(("pod", event_type, body))


def test_kopf_keeps_its_state_in_annotations_and_posts_no_events_of_its_own() -> None:
    settings = kopf_settings(OperatorSettings(identity="op-0"))

    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert settings.posting.enabled is False
    assert settings.scanning.disabled is True
    assert settings.peering.standalone is True


def test_kopf_lets_go_of_a_resources_last_event_within_a_second_of_quiet() -> None:
    # kopf's idle per-resource worker holds the last event's body: 5 s of them after a burst
    # of 1,000 new workers was tens of MiB of the operator's RSS.
    assert kopf_settings(OperatorSettings()).queueing.idle_timeout <= 1.0


def test_kopf_neither_copies_nor_stores_a_diff_base_of_the_resources_it_watches() -> None:
    storage = kopf_settings(OperatorSettings()).persistence.diffbase_storage
    body = kopf.Body(
        {
            "metadata": {"name": "w", "namespace": "ns", "annotations": {"a": "b"}},
            "spec": {"image": "i", "worker": "m:C", "env": [{"name": "X", "value": "1" * 4096}]},
        }
    )
    patch = kopf.Patch()

    essence = storage.build(body=body)
    storage.store(body=body, patch=patch, essence=essence)

    assert essence == {}
    assert storage.fetch(body=body) is None
    assert not patch


def test_owned_deployments_and_pods_are_filtered_on_the_server() -> None:
    settings = kopf_settings(OperatorSettings())
    selectors = {
        str(selector): value for selector, value in settings.watching.label_selectors.items()
    }

    assert list(selectors.values()) == ["app.kubernetes.io/managed-by=tickwork-operator"] * 2


def test_only_event_handlers_are_registered_so_kopf_writes_nothing_on_the_resources() -> None:
    registry = build_registry(cast(Reconciler, StubReconciler()))
    watching = {h.id for h in registry._watching.get_all_handlers()}

    assert watching == {"worker", "owned-deployment", "worker-pod"}
    # Changing handlers would keep progress and a copy of the spec in annotations (256 KiB).
    assert not registry._changing.get_all_handlers()
    assert not registry._spawning.get_all_handlers()  # timers/daemons would add finalizers


@pytest.mark.parametrize(
    ("handler_id", "kind"),
    [("worker", "worker"), ("owned-deployment", "deployment"), ("worker-pod", "pod")],
)
async def test_every_watch_event_goes_to_the_reconciler_as_it_came(
    handler_id: str, kind: str
) -> None:
    stub = StubReconciler()
    registry = build_registry(cast(Reconciler, stub))
    (handler,) = [h for h in registry._watching.get_all_handlers() if h.id == handler_id]
    body = {"metadata": {"name": "w", "namespace": "team-a"}}

    await handler.fn(event={"type": "MODIFIED", "object": body})
    await handler.fn(event={"type": None, "object": body})

    assert stub.seen == [(kind, "MODIFIED", body), (kind, None, body)]
