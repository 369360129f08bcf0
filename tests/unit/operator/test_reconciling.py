"""The reconciler against an in-memory API: apply, status, drift, errors, ordering."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from tests.unit.operator.conftest import FakeKubeApi, transient, worker_body
from worker_operator.kubeapi import (
    Forbidden,
    KubeApi,
    NamespaceTerminating,
    Rejected,
    RetryPolicy,
    TransientApiError,
)
from worker_operator.metrics import OperatorMetrics, Result
from worker_operator.reconciling import (
    DeploymentConflict,
    DeploymentRejected,
    InvalidSpec,
    Reconciler,
    Unavailable,
)
from worker_operator.settings import OperatorSettings

KEY = ("team-a", "passive-users")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_reconciler(
    api: FakeKubeApi, **settings: Any
) -> tuple[Reconciler, CollectorRegistry, Clock]:
    registry = CollectorRegistry()
    clock = Clock()
    reconciler = Reconciler(
        api=cast(KubeApi, api),
        settings=OperatorSettings(**settings),
        metrics=OperatorMetrics(registry),
        now=lambda: datetime(2026, 3, 1, tzinfo=UTC),
        monotonic=clock,
    )
    return reconciler, registry, clock


def reconciles(registry: CollectorRegistry, trigger: str, result: Result) -> float:
    value = registry.get_sample_value(
        "tickwork_operator_reconciles_total", {"trigger": trigger, "result": result.value}
    )
    return value or 0.0


def conditions(api: FakeKubeApi) -> dict[str, tuple[str, str]]:
    status = api.workers[KEY]["status"]
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


async def test_a_new_worker_gets_its_deployment_status_and_an_event(fake_api: FakeKubeApi) -> None:
    body = fake_api.add_worker(worker_body())
    reconciler, registry, _ = make_reconciler(fake_api)

    outcome = await reconciler.reconcile(body, trigger="create")

    assert KEY in fake_api.deployments
    assert fake_api.deployments[KEY]["spec"]["replicas"] == 1
    assert outcome.result is Result.SUCCESS
    assert fake_api.workers[KEY]["status"]["observedGeneration"] == 1
    assert conditions(fake_api)["Progressing"] == ("True", "RollingOut")
    assert fake_api.event_reasons() == [("Normal", "DeploymentCreated")]
    assert reconciles(registry, "create", Result.SUCCESS) == 1


async def test_a_rolled_out_deployment_turns_the_worker_ready(fake_api: FakeKubeApi) -> None:
    body = fake_api.add_worker(worker_body())
    reconciler, _, clock = make_reconciler(fake_api)
    await reconciler.reconcile(body, trigger="create")

    rolled = fake_api.roll_out(*KEY)
    await reconciler.on_deployment_event("MODIFIED", rolled)
    clock.now += 0.3
    await reconciler.run_due()

    assert conditions(fake_api) == {
        "Ready": ("True", "ReplicasReady"),
        "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"),
    }
    assert len(fake_api.applies) == 1  # a status refresh, not another apply


async def test_a_burst_of_rollout_changes_gives_one_status_patch(fake_api: FakeKubeApi) -> None:
    body = fake_api.add_worker(worker_body(replicas=3, redis={"url": "redis://r:6379/0"}))
    reconciler, _, clock = make_reconciler(fake_api)
    await reconciler.reconcile(body, trigger="create")
    patches = len(fake_api.status_patches)

    for ready in (1, 2, 3):  # the pods turn Ready one after another, 0.1 s apart
        await reconciler.on_deployment_event("MODIFIED", fake_api.roll_out(*KEY, ready=ready))
        clock.now += 0.1
    assert len(fake_api.status_patches) == patches  # nothing yet: the burst settles first
    clock.now += 0.3
    await reconciler.run_due()

    assert len(fake_api.status_patches) == patches + 1
    assert fake_api.status_patches[-1][2]["readyReplicas"] == 3
    assert len(fake_api.applies) == 1


async def test_a_deployment_changed_by_hand_is_repaired_at_once_without_waiting(
    fake_api: FakeKubeApi,
) -> None:
    body = fake_api.add_worker(worker_body())
    reconciler, _, _ = make_reconciler(fake_api)
    await reconciler.reconcile(body, trigger="create")
    scaled = fake_api.roll_out(*KEY)
    scaled["spec"]["replicas"] = 5
    scaled["metadata"]["generation"] += 1

    await reconciler.on_deployment_event("MODIFIED", scaled)

    assert len(fake_api.applies) == 2


async def test_a_changed_spec_is_applied_again(fake_api: FakeKubeApi) -> None:
    body = fake_api.add_worker(worker_body())
    reconciler, _, _ = make_reconciler(fake_api)
    await reconciler.reconcile(body, trigger="create")

    changed = worker_body(schedule={"period": "2m"})
    changed["metadata"]["generation"] = 2
    changed = fake_api.add_worker(changed)
    await reconciler.reconcile(changed, trigger="update")

    env = fake_api.deployments[KEY]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "TICKWORK_PERIOD", "value": "2m"} in env
    assert fake_api.deployments[KEY]["metadata"]["generation"] == 2


async def test_a_deployment_edited_by_hand_is_put_back(fake_api: FakeKubeApi) -> None:
    body = fake_api.add_worker(worker_body())
    reconciler, registry, _ = make_reconciler(fake_api)
    await reconciler.reconcile(body, trigger="create")

    edited = fake_api.deployments[KEY]
    edited["spec"]["replicas"] = 5
    edited["metadata"]["generation"] += 1
    edited["metadata"]["resourceVersion"] = "5000"
    await reconciler.on_deployment_event("MODIFIED", copy.deepcopy(edited))

    assert fake_api.deployments[KEY]["spec"]["replicas"] == 1
    assert registry.get_sample_value("tickwork_operator_drift_repairs_total") == 1
    assert ("Normal", "DeploymentRestored") in fake_api.event_reasons()


async def test_a_deployment_deleted_by_hand_is_recreated(fake_api: FakeKubeApi) -> None:
    body = fake_api.add_worker(worker_body())
    reconciler, registry, _ = make_reconciler(fake_api)
    await reconciler.reconcile(body, trigger="create")

    gone = fake_api.deployments.pop(KEY)
    gone["metadata"]["resourceVersion"] = "9999"  # a deletion is a change of its own
    await reconciler.on_deployment_event("DELETED", gone)

    assert KEY in fake_api.deployments
    assert registry.get_sample_value("tickwork_operator_drift_repairs_total") == 1


async def test_the_deployment_of_a_deleted_worker_is_left_to_the_garbage_collector(
    fake_api: FakeKubeApi,
) -> None:
    body = fake_api.add_worker(worker_body())
    reconciler, registry, _ = make_reconciler(fake_api)
    await reconciler.reconcile(body, trigger="create")

    del fake_api.workers[KEY]
    gone = fake_api.deployments.pop(KEY)
    gone["metadata"]["resourceVersion"] = "9999"  # a deletion is a change of its own
    await reconciler.on_deployment_event("DELETED", gone)

    assert KEY not in fake_api.deployments
    assert reconciles(registry, "deployment", Result.SKIPPED) == 1


async def test_an_older_generation_never_overwrites_a_newer_one(fake_api: FakeKubeApi) -> None:
    old = worker_body()
    new = worker_body(schedule={"period": "2m"})
    new["metadata"]["generation"] = 2
    fake_api.add_worker(new)
    reconciler, _, _ = make_reconciler(fake_api)
    await reconciler.reconcile(new, trigger="update")

    outcome = await reconciler.reconcile(old, trigger="resume")

    env = fake_api.deployments[KEY]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert outcome.result is Result.SKIPPED
    assert {"name": "TICKWORK_PERIOD", "value": "2m"} in env


async def test_suspend_scales_to_zero_and_says_so(fake_api: FakeKubeApi) -> None:
    body = fake_api.add_worker(worker_body(suspend=True))
    reconciler, _, _ = make_reconciler(fake_api)

    await reconciler.reconcile(body, trigger="create")

    assert fake_api.deployments[KEY]["spec"]["replicas"] == 0
    assert fake_api.workers[KEY]["status"]["suspended"] is True
    assert conditions(fake_api)["Ready"] == ("False", "Suspended")


async def test_an_invalid_spec_is_reported_and_is_permanent(fake_api: FakeKubeApi) -> None:
    body = fake_api.add_worker(worker_body(schedule={"cron": "0 0 31 2 *"}))
    reconciler, registry, _ = make_reconciler(fake_api)

    with pytest.raises(InvalidSpec, match="never matches") as caught:
        await reconciler.reconcile(body, trigger="create")

    assert caught.value.permanent
    assert KEY not in fake_api.deployments
    assert conditions(fake_api)["Degraded"] == ("True", "InvalidSpec")
    assert fake_api.event_reasons() == [("Warning", "InvalidSpec")]
    assert reconciles(registry, "create", Result.INVALID_SPEC) == 1


async def test_a_deployment_refused_by_the_server_is_reported(fake_api: FakeKubeApi) -> None:
    body = fake_api.add_worker(worker_body())
    fake_api.fail["apply_deployment"] = [
        Rejected(422, 'Deployment.apps "passive-users" is invalid: spec.template...')
    ]
    reconciler, _, _ = make_reconciler(fake_api)

    with pytest.raises(DeploymentRejected, match="is invalid"):
        await reconciler.reconcile(body, trigger="create")

    assert conditions(fake_api)["Degraded"] == ("True", "DeploymentRejected")


async def test_a_foreign_deployment_of_the_same_name_is_not_taken_over(
    fake_api: FakeKubeApi,
) -> None:
    body = fake_api.add_worker(worker_body())
    fake_api.deployments[KEY] = {
        "metadata": {"name": "passive-users", "namespace": "team-a", "generation": 1},
        "spec": {"replicas": 1},
    }
    reconciler, _, _ = make_reconciler(fake_api)

    with pytest.raises(DeploymentConflict, match="not owned by this BackgroundWorker"):
        await reconciler.reconcile(body, trigger="create")

    assert fake_api.applies == []
    assert conditions(fake_api)["Degraded"] == ("True", "DeploymentConflict")


async def test_transient_and_rbac_failures_ask_to_come_back_later(fake_api: FakeKubeApi) -> None:
    body = fake_api.add_worker(worker_body())
    reconciler, _, _ = make_reconciler(fake_api)
    fake_api.fail["apply_deployment"] = [
        TransientApiError(503, "unavailable"),
        Forbidden(403, 'deployments.apps is forbidden: User "x" cannot patch'),
    ]

    with pytest.raises(Unavailable) as first:
        await reconciler.reconcile(body, trigger="create")
    with pytest.raises(Unavailable, match="RBAC") as second:
        await reconciler.reconcile(body, trigger="create")

    assert not first.value.permanent
    assert second.value.delay_seconds > first.value.delay_seconds


async def test_missing_secrets_are_found_only_when_asked(fake_api: FakeKubeApi) -> None:
    spec = {"redis": {"urlSecretRef": {"name": "redis", "key": "url"}}}
    body = fake_api.add_worker(worker_body(**spec))
    quiet, _, _ = make_reconciler(fake_api)
    await quiet.reconcile(body, trigger="create")
    assert conditions(fake_api)["Degraded"] == ("False", "AsExpected")

    body = fake_api.workers[KEY]
    checking, _, _ = make_reconciler(fake_api, check_secret_references=True)
    outcome = await checking.reconcile(body, trigger="resume")

    message = fake_api.workers[KEY]["status"]["conditions"][2]["message"]
    assert outcome.degraded
    assert conditions(fake_api)["Degraded"] == ("True", "SecretNotFound")
    assert 'Secret "redis" (key "url", from spec.redis.urlSecretRef) does not exist' in message
    assert ("Warning", "SecretNotFound") in fake_api.event_reasons()


async def test_a_degraded_worker_is_looked_at_again_and_recovers(fake_api: FakeKubeApi) -> None:
    fake_api.add_worker(worker_body(redis={"urlSecretRef": {"name": "redis"}}))
    reconciler, _, clock = make_reconciler(
        fake_api, check_secret_references=True, degraded_recheck_seconds=5
    )
    await reconciler.reconcile(fake_api.workers[KEY], trigger="create")
    fake_api.roll_out(*KEY)
    fake_api.secrets.add(("team-a", "redis"))
    stop = asyncio.Event()
    loop_task = asyncio.create_task(reconciler.run_periodic(stop))

    clock.now += 6
    reconciler.queue.add_after(("nobody", "else"), 0)  # wakes the loop
    for _ in range(50):
        await asyncio.sleep(0.01)
        if conditions(fake_api)["Degraded"][0] == "False":
            break
    stop.set()
    await loop_task

    assert conditions(fake_api)["Degraded"] == ("False", "AsExpected")
    assert ("Normal", "Recovered") in fake_api.event_reasons()


async def test_events_about_a_degraded_worker_do_not_push_its_recheck_further_away(
    fake_api: FakeKubeApi,
) -> None:
    fake_api.add_worker(
        worker_body(
            replicas=3, redis={"url": "redis://r:6379/0", "passwordSecretRef": {"name": "pw"}}
        )
    )
    reconciler, _, clock = make_reconciler(
        fake_api, check_secret_references=True, degraded_recheck_seconds=5
    )
    await reconciler.reconcile(fake_api.workers[KEY], trigger="create")
    assert reconciler.queue.deadline(KEY) == pytest.approx(1005.0)

    for ready in (1, 2, 3):  # its pods and Deployment keep changing meanwhile
        await reconciler.on_deployment_event("MODIFIED", fake_api.roll_out(*KEY, ready=ready))
        clock.now += 0.4
        await reconciler.run_due()
    assert reconciler.queue.deadline(KEY) == pytest.approx(1005.0)

    clock.now = 1005.0
    await reconciler.run_due()  # the recheck: still degraded, so the next one is 10 s away
    assert reconciler.queue.deadline(KEY) == pytest.approx(1015.0)


async def test_a_warning_is_posted_once_even_if_the_status_looks_new(
    fake_api: FakeKubeApi,
) -> None:
    fake_api.add_worker(worker_body(redis={"urlSecretRef": {"name": "redis"}}))
    reconciler, _, _ = make_reconciler(fake_api, check_secret_references=True)
    stale = copy.deepcopy(fake_api.workers[KEY])

    await reconciler.reconcile(stale, trigger="create")
    await reconciler.reconcile(stale, trigger="resume")  # the same old body, no status in it

    assert fake_api.event_reasons().count(("Warning", "SecretNotFound")) == 1


async def test_a_resync_reconciles_every_worker(fake_api: FakeKubeApi) -> None:
    for name in ("a", "b", "c"):
        body = worker_body()
        body["metadata"]["name"] = name
        fake_api.add_worker(body)
    reconciler, registry, _ = make_reconciler(fake_api)

    await reconciler.resync_all()

    assert sorted(fake_api.deployments) == [("team-a", "a"), ("team-a", "b"), ("team-a", "c")]
    assert reconciles(registry, "resync", Result.SUCCESS) == 3
    assert registry.get_sample_value("tickwork_operator_last_resync_timestamp_seconds")


async def test_a_status_patch_that_fails_transiently_is_counted_and_retried_with_backoff(
    fake_api: FakeKubeApi,
) -> None:
    body = fake_api.add_worker(worker_body())
    reconciler, registry, clock = make_reconciler(fake_api)
    await reconciler.reconcile(body, trigger="create")
    fake_api.fail["patch_worker_status"] = [TransientApiError(503, "busy"), transient()]

    await reconciler.on_deployment_event("MODIFIED", fake_api.roll_out(*KEY))
    clock.now += 0.3
    await reconciler.run_due()
    first = reconciler.queue.deadline(KEY)
    clock.now += 5
    await reconciler.run_due()
    second = reconciler.queue.deadline(KEY)

    assert first == pytest.approx(1000.3 + 5.0)
    assert second == pytest.approx(1005.3 + 10.0)
    assert reconciles(registry, "requeue", Result.TRANSIENT_ERROR) == 2


def test_the_retry_policy_backs_off_exponentially_within_its_cap() -> None:
    policy = RetryPolicy(initial_delay_seconds=0.2, max_delay_seconds=1.0)

    delays = [policy.delay(attempt) for attempt in range(6)]

    assert 0.1 <= delays[0] <= 0.2
    assert 0.2 <= delays[1] <= 0.4
    assert all(0.5 <= d <= 1.0 for d in delays[3:])
    assert policy.delay(0, hint_seconds=30) == 1.0


async def test_a_deployment_event_older_than_what_was_applied_changes_nothing(
    fake_api: FakeKubeApi,
) -> None:
    body = fake_api.add_worker(worker_body())
    reconciler, registry, _ = make_reconciler(fake_api)
    await reconciler.reconcile(body, trigger="create")
    applied = copy.deepcopy(fake_api.deployments[KEY])
    stale = copy.deepcopy(applied)
    stale["spec"]["replicas"] = 4
    stale["metadata"]["generation"] += 1
    stale["metadata"]["resourceVersion"] = str(int(applied["metadata"]["resourceVersion"]) - 1)

    await reconciler.on_deployment_event("MODIFIED", stale)
    await reconciler.on_deployment_event("MODIFIED", applied)  # the operator's own write
    await reconciler.on_deployment_event(
        "DELETED", {**stale, "metadata": {**stale["metadata"], "uid": "an-earlier-deployment"}}
    )

    assert len(fake_api.applies) == 1
    assert registry.get_sample_value("tickwork_operator_drift_repairs_total") == 0
    assert ("Normal", "DeploymentRestored") not in fake_api.event_reasons()


async def test_a_deployment_with_the_operators_labels_and_no_owner_is_adopted(
    fake_api: FakeKubeApi,
) -> None:
    body = fake_api.add_worker(worker_body())
    reconciler, _, _ = make_reconciler(fake_api)
    await reconciler.reconcile(body, trigger="create")
    orphan = copy.deepcopy(fake_api.deployments[KEY])
    del orphan["metadata"]["ownerReferences"]
    orphan["metadata"]["resourceVersion"] = "9000"
    fake_api.deployments[KEY] = orphan

    await reconciler.on_deployment_event("MODIFIED", orphan)

    owners = fake_api.deployments[KEY]["metadata"]["ownerReferences"]
    assert [o["uid"] for o in owners] == [body["metadata"]["uid"]]
    assert ("Normal", "DeploymentAdopted") in fake_api.event_reasons()
    assert conditions(fake_api)["Degraded"] == ("False", "AsExpected")


async def test_a_namespace_being_deleted_is_skipped_without_a_retry_or_a_warning(
    fake_api: FakeKubeApi, caplog: pytest.LogCaptureFixture
) -> None:
    fake_api.add_worker(worker_body())
    reconciler, registry, _ = make_reconciler(fake_api)
    fake_api.fail["apply_deployment"] = [
        NamespaceTerminating(403, "unable to create new content in namespace team-a")
    ]

    await reconciler.on_worker_event("ADDED", fake_api.workers[KEY])

    assert reconciler.queue.deadline(KEY) is None
    assert reconciles(registry, "create", Result.SKIPPED) == 1
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]


async def test_a_pod_problem_seen_by_the_watch_degrades_the_worker_and_its_end_recovers_it(
    fake_api: FakeKubeApi,
) -> None:
    fake_api.add_worker(worker_body())
    reconciler, _, _ = make_reconciler(fake_api)
    await reconciler.on_worker_event("ADDED", fake_api.workers[KEY])
    pod = {
        "metadata": {
            "name": "passive-users-abc",
            "namespace": "team-a",
            "labels": {
                "app.kubernetes.io/managed-by": "tickwork-operator",
                "app.kubernetes.io/instance": "passive-users",
            },
        },
        "status": {
            "containerStatuses": [
                {"state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}}
            ]
        },
    }

    await reconciler.on_pod_event("MODIFIED", pod)
    degraded = conditions(fake_api)["Degraded"]
    await reconciler.on_pod_event("DELETED", pod)

    assert degraded == ("True", "ImagePullFailed")
    assert conditions(fake_api)["Degraded"] == ("False", "AsExpected")
    assert fake_api.list_pod_calls == 0


async def test_late_events_of_a_deployment_already_replaced_by_a_new_one_change_nothing(
    fake_api: FakeKubeApi,
) -> None:
    body = fake_api.add_worker(worker_body())
    reconciler, registry, _ = make_reconciler(fake_api)
    await reconciler.reconcile(body, trigger="create")
    old = copy.deepcopy(fake_api.deployments.pop(KEY))
    deleted = copy.deepcopy(old)
    deleted["metadata"]["resourceVersion"] = str(int(old["metadata"]["resourceVersion"]) + 1)
    await reconciler.on_deployment_event("DELETED", deleted)  # recreated: one repair
    late = copy.deepcopy(old)
    late["metadata"]["generation"] += 1  # e.g. a `kubectl set image` seen after the delete

    await reconciler.on_deployment_event("MODIFIED", late)
    await reconciler.on_deployment_event("DELETED", deleted)

    assert len(fake_api.applies) == 2
    assert registry.get_sample_value("tickwork_operator_drift_repairs_total") == 1


async def test_a_resync_forgets_a_worker_whose_deletion_no_watch_reported(
    fake_api: FakeKubeApi,
) -> None:
    body = fake_api.add_worker(worker_body())
    reconciler, _, _ = make_reconciler(fake_api)
    await reconciler.reconcile(body, trigger="create")
    del fake_api.workers[KEY]

    await reconciler.resync_all()

    assert KEY not in reconciler._workers
    assert KEY not in reconciler._applied
