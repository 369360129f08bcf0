"""kopf wiring: settings chosen for this operator, and errors mapped to kopf's retry model."""

from __future__ import annotations

from typing import Any, cast

import kopf
import pytest

from worker_operator.handlers import _reconcile, build_registry, kopf_settings
from worker_operator.metrics import Result
from worker_operator.reconciling import (
    DeploymentRejected,
    InvalidSpec,
    Outcome,
    Reconciler,
    Unavailable,
)
from worker_operator.settings import OperatorSettings


class StubReconciler:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.seen: list[tuple[dict[str, Any], str]] = []

    async def reconcile(self, body: dict[str, Any], *, trigger: str) -> Outcome:
        self.seen.append((body, trigger))
        if self.error is not None:
            raise self.error
        return Outcome(Result.SUCCESS)


def test_kopf_keeps_its_state_in_annotations_and_posts_no_events_of_its_own() -> None:
    settings = kopf_settings(OperatorSettings(identity="op-0"))

    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert settings.posting.enabled is False
    assert settings.scanning.disabled is True
    assert settings.peering.standalone is True


def test_owned_deployments_and_pods_are_filtered_on_the_server() -> None:
    settings = kopf_settings(OperatorSettings())
    selectors = {
        str(selector): value for selector, value in settings.watching.label_selectors.items()
    }

    assert list(selectors.values()) == ["app.kubernetes.io/managed-by=tickwork-operator"] * 2


def test_the_registry_has_every_handler_and_no_finalizer_causing_ones() -> None:
    registry = build_registry(cast(Reconciler, StubReconciler()))
    changing = {h.id for h in registry._changing.get_all_handlers()}
    watching = {h.id for h in registry._watching.get_all_handlers()}

    assert changing == {"reconcile-on-create", "reconcile-on-update/spec", "reconcile-on-resume"}
    assert watching == {"owned-deployment", "worker-pod"}
    assert not registry._spawning.get_all_handlers()  # timers/daemons would add finalizers
    assert not any(h.requires_finalizer for h in registry._changing.get_all_handlers())


async def test_a_bad_spec_is_a_permanent_error() -> None:
    stub = StubReconciler(InvalidSpec("spec.schedule.cron: never matches"))

    with pytest.raises(kopf.PermanentError, match="never matches"):
        await _reconcile(cast(Reconciler, stub), {"metadata": {}}, trigger="create")


async def test_a_refused_deployment_is_a_permanent_error() -> None:
    stub = StubReconciler(DeploymentRejected("the API server refused the Deployment"))

    with pytest.raises(kopf.PermanentError):
        await _reconcile(cast(Reconciler, stub), {"metadata": {}}, trigger="update")


async def test_an_unavailable_api_is_a_temporary_error_with_its_delay() -> None:
    stub = StubReconciler(Unavailable("HTTP 503: busy", delay_seconds=7.0))

    with pytest.raises(kopf.TemporaryError) as caught:
        await _reconcile(cast(Reconciler, stub), {"metadata": {}}, trigger="resume")

    assert caught.value.delay == 7.0


async def test_handlers_pass_a_plain_copy_of_the_body() -> None:
    stub = StubReconciler()
    body = {"metadata": {"name": "w"}, "spec": {"replicas": 1}}

    await _reconcile(cast(Reconciler, stub), body, trigger="create")

    ((seen, trigger),) = stub.seen
    assert seen == body and seen is not body
    assert trigger == "create"
