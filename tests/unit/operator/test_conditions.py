"""Status from the Deployment and its pods: Ready, Progressing, Degraded, and when to tell."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.unit.operator.conftest import worker_body
from worker_operator.conditions import Problem, assess, deployment_problem, pod_problem
from worker_operator.spec import WorkerSpec, parse_worker

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def worker(**spec: Any) -> WorkerSpec:
    return parse_worker(worker_body(**spec))


def deployment(
    *,
    replicas: int,
    ready: int,
    updated: int | None = None,
    generation: int = 1,
    observed: int | None = None,
    conditions: list[dict[str, Any]] | None = None,
    current: int | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": "passive-users", "generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": generation if observed is None else observed,
            "replicas": replicas if current is None else current,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "updatedReplicas": replicas if updated is None else updated,
            "conditions": conditions or [],
        },
    }


def waiting_pod(name: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "containerStatuses": [
                {"name": "worker", "state": {"waiting": {"reason": reason, "message": message}}}
            ]
        },
    }


def conditions_of(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_a_rolled_out_worker_is_ready_and_not_progressing() -> None:
    result = assess(
        generation=3,
        previous_status={},
        now=T0,
        worker=worker(replicas=2, redis={"url": "redis://r"}),
        deployment=deployment(replicas=2, ready=2),
    )

    assert conditions_of(result.status) == {
        "Ready": ("True", "ReplicasReady"),
        "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"),
    }
    assert result.status["observedGeneration"] == 3
    assert result.status["readyReplicas"] == 2
    assert result.status["schedule"] == "every 10m"
    assert result.status["selector"] == (
        "app.kubernetes.io/instance=passive-users,app.kubernetes.io/name=tickwork-worker"
    )
    assert all(c["observedGeneration"] == 3 for c in result.status["conditions"])
    assert result.ready and not result.degraded
    assert result.events == ()


def test_a_rollout_in_progress_is_progressing_and_not_yet_ready() -> None:
    result = assess(
        generation=1,
        previous_status={},
        now=T0,
        worker=worker(),
        deployment=deployment(replicas=1, ready=0, updated=0),
    )

    assert conditions_of(result.status)["Ready"] == ("False", "ReplicasNotReady")
    assert conditions_of(result.status)["Progressing"] == ("True", "RollingOut")


def test_a_deployment_not_yet_observed_by_its_controller_is_still_progressing() -> None:
    result = assess(
        generation=2,
        previous_status={},
        now=T0,
        worker=worker(),
        deployment=deployment(replicas=1, ready=1, generation=5, observed=4),
    )

    assert conditions_of(result.status)["Ready"] == ("False", "ReplicasNotReady")
    assert conditions_of(result.status)["Progressing"] == ("True", "RollingOut")


def test_a_suspended_worker_says_so() -> None:
    result = assess(
        generation=4,
        previous_status={},
        now=T0,
        worker=worker(suspend=True),
        deployment=deployment(replicas=0, ready=0),
    )

    assert result.status["suspended"] is True
    assert conditions_of(result.status) == {
        "Ready": ("False", "Suspended"),
        "Progressing": ("False", "Suspended"),
        "Degraded": ("False", "AsExpected"),
    }


def test_a_suspended_worker_with_pods_left_is_scaling_down() -> None:
    result = assess(
        generation=4,
        previous_status={},
        now=T0,
        worker=worker(suspend=True),
        deployment=deployment(replicas=0, ready=1, current=1),
    )

    assert conditions_of(result.status)["Progressing"] == ("True", "ScalingDown")


def test_a_missing_secret_degrades_the_worker_with_a_warning_event() -> None:
    result = assess(
        generation=1,
        previous_status={},
        now=T0,
        worker=worker(),
        deployment=deployment(replicas=1, ready=1),
        missing_secrets=['Secret "redis" does not exist'],
    )

    assert conditions_of(result.status)["Degraded"] == ("True", "SecretNotFound")
    assert [(e.event_type, e.reason) for e in result.events] == [("Warning", "SecretNotFound")]


def test_the_same_degradation_is_not_announced_twice() -> None:
    first = assess(
        generation=1,
        previous_status={},
        now=T0,
        worker=worker(),
        deployment=deployment(replicas=1, ready=0),
        missing_secrets=["gone"],
    )
    second = assess(
        generation=1,
        previous_status=first.status,
        now=T0 + timedelta(minutes=1),
        worker=worker(),
        deployment=deployment(replicas=1, ready=0),
        missing_secrets=["gone"],
    )

    assert second.events == ()
    assert second.status["conditions"] == first.status["conditions"]


def test_recovery_is_announced_and_the_transition_time_moves() -> None:
    degraded = assess(
        generation=1,
        previous_status={},
        now=T0,
        worker=worker(),
        deployment=deployment(replicas=1, ready=0),
        missing_secrets=["gone"],
    )
    later = T0 + timedelta(minutes=2)
    recovered = assess(
        generation=1,
        previous_status=degraded.status,
        now=later,
        worker=worker(),
        deployment=deployment(replicas=1, ready=1),
    )
    by_type = {c["type"]: c for c in recovered.status["conditions"]}

    assert [(e.event_type, e.reason) for e in recovered.events] == [("Normal", "Recovered")]
    assert by_type["Degraded"]["lastTransitionTime"] == "2026-03-01T12:02:00Z"
    assert by_type["Degraded"]["status"] == "False"


def test_an_unchanged_condition_keeps_its_transition_time() -> None:
    first = assess(
        generation=1,
        previous_status={},
        now=T0,
        worker=worker(),
        deployment=deployment(replicas=1, ready=1),
    )
    second = assess(
        generation=2,
        previous_status=first.status,
        now=T0 + timedelta(hours=1),
        worker=worker(),
        deployment=deployment(replicas=1, ready=1),
    )

    assert {c["lastTransitionTime"] for c in second.status["conditions"]} == {
        "2026-03-01T12:00:00Z"
    }


def test_pods_stuck_on_a_secret_image_or_crash_are_explained() -> None:
    secret = waiting_pod("w-1", "CreateContainerConfigError", 'secret "redis" not found')
    image = waiting_pod("w-2", "ImagePullBackOff", 'Back-off pulling image "nope:1"')
    crash = waiting_pod("w-3", "CrashLoopBackOff", "back-off 5m0s restarting failed container")

    assert pod_problem(secret) == Problem("SecretNotFound", 'pod w-1: secret "redis" not found')
    assert pod_problem(image) == Problem(
        "ImagePullFailed", 'pod w-2: Back-off pulling image "nope:1"'
    )
    assert pod_problem(crash) is not None and pod_problem(crash).reason == "CrashLoopBackOff"  # type: ignore[union-attr]
    assert pod_problem({"metadata": {"name": "ok"}, "status": {"phase": "Running"}}) is None


def test_an_unschedulable_pod_is_explained() -> None:
    pod = {
        "metadata": {"name": "w-1"},
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/2 nodes are available",
                }
            ]
        },
    }

    assert pod_problem(pod) == Problem("Unschedulable", "pod w-1: 0/2 nodes are available")


def test_a_pod_problem_degrades_the_worker() -> None:
    result = assess(
        generation=1,
        previous_status={},
        now=T0,
        worker=worker(),
        deployment=deployment(replicas=1, ready=0),
        pods=[waiting_pod("w-1", "ErrImagePull", "manifest unknown")],
    )

    assert conditions_of(result.status)["Degraded"] == ("True", "ImagePullFailed")
    assert "pod w-1: manifest unknown" in result.status["conditions"][2]["message"]


def test_a_rollout_past_its_deadline_is_degraded_and_not_progressing() -> None:
    stuck = deployment(
        replicas=1,
        ready=0,
        updated=1,
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "w-1" has timed out progressing.',
            }
        ],
    )
    result = assess(generation=1, previous_status={}, now=T0, worker=worker(), deployment=stuck)

    assert deployment_problem(stuck) == Problem(
        "ProgressDeadlineExceeded", 'ReplicaSet "w-1" has timed out progressing.'
    )
    assert conditions_of(result.status)["Progressing"] == ("False", "ProgressDeadlineExceeded")
    assert conditions_of(result.status)["Degraded"] == ("True", "ProgressDeadlineExceeded")


def test_pods_that_cannot_be_created_are_a_replica_failure() -> None:
    failing = deployment(
        replicas=1,
        ready=0,
        conditions=[
            {
                "type": "ReplicaFailure",
                "status": "True",
                "reason": "FailedCreate",
                "message": 'pods "w-" is forbidden: exceeded quota',
            }
        ],
    )

    assert deployment_problem(failing) == Problem(
        "ReplicaFailure", 'pods "w-" is forbidden: exceeded quota'
    )


def test_a_spec_problem_sets_every_condition_and_keeps_other_status_fields_out() -> None:
    result = assess(
        generation=7,
        previous_status={"readyReplicas": 1},
        now=T0,
        worker=None,
        problem=Problem("InvalidSpec", "spec.schedule.cron: never matches"),
    )

    assert result.status.keys() == {"observedGeneration", "conditions"}
    assert conditions_of(result.status) == {
        "Ready": ("False", "InvalidSpec"),
        "Progressing": ("False", "InvalidSpec"),
        "Degraded": ("True", "InvalidSpec"),
        "Stalled": ("True", "InvalidSpec"),
    }
    assert [(e.event_type, e.reason, e.message) for e in result.events] == [
        ("Warning", "InvalidSpec", "spec.schedule.cron: never matches")
    ]


def test_unschedulable_pods_and_a_deadline_past_rollout_show_both() -> None:
    stuck = deployment(
        replicas=1,
        ready=0,
        updated=1,
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "timed out",
            }
        ],
    )
    pending = {
        "metadata": {"name": "w-1"},
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/2 nodes are available",
                }
            ]
        },
    }

    result = assess(
        generation=1, previous_status={}, now=T0, worker=worker(), deployment=stuck, pods=[pending]
    )

    assert conditions_of(result.status)["Progressing"] == ("False", "ProgressDeadlineExceeded")
    assert conditions_of(result.status)["Degraded"] == ("True", "Unschedulable")


def test_zero_replicas_is_not_ready_like_suspend_and_says_why() -> None:
    zero = assess(
        generation=1,
        previous_status={},
        now=T0,
        worker=worker(replicas=0),
        deployment=deployment(replicas=0, ready=0),
    )
    suspended = assess(
        generation=1,
        previous_status={},
        now=T0,
        worker=worker(suspend=True),
        deployment=deployment(replicas=0, ready=0),
    )

    assert conditions_of(zero.status)["Ready"] == ("False", "ScaledToZero")
    assert conditions_of(suspended.status)["Ready"] == ("False", "Suspended")
    assert zero.status["ready"] == suspended.status["ready"] == "0/0"


def test_the_ready_column_shows_ready_of_desired_replicas() -> None:
    result = assess(
        generation=1,
        previous_status={},
        now=T0,
        worker=worker(replicas=3, redis={"url": "redis://r:6379"}),
        deployment=deployment(replicas=3, ready=2),
    )

    assert result.status["ready"] == "2/3"


def test_a_problem_message_longer_than_the_status_allows_is_cut_to_fit() -> None:
    result = assess(
        generation=1,
        previous_status={},
        now=T0,
        worker=None,
        problem=Problem("InvalidSpec", "x" * 40_000),
    )

    assert {len(c["message"]) for c in result.status["conditions"]} == {32768}


def _document_entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "team-a.passive-users",
        "schedule": "every 10m (delay)",
        "lastScheduleTime": "2026-03-01T11:50:00.250Z",
        "lastRunTime": "2026-03-01T11:50:00.300Z",
        "lastRunEndTime": "2026-03-01T11:50:01.900Z",
        "lastOutcome": "success",
        "lastSuccessfulTime": "2026-03-01T11:50:01.900Z",
        "nextScheduleTime": "2026-03-01T12:00:01.900Z",
        "leaseHolder": "passive-users-6d9f-abcde",
        "fencingToken": 1764633600000042,
    }
    entry.update(changes)
    return entry


def _observed(previous: dict[str, Any], entry: dict[str, Any] | None, *, ready: int = 1) -> Any:
    return assess(
        generation=1,
        previous_status=previous,
        now=T0,
        worker=worker(replicas=1, redis={"url": "redis://r"}),
        deployment=deployment(replicas=1, ready=ready),
        observed=entry,
    )


def test_what_the_worker_does_is_copied_from_the_status_document_in_whole_seconds() -> None:
    result = _observed({}, _document_entry())

    assert {
        k: result.status[k]
        for k in (
            "lastScheduleTime",
            "lastRunTime",
            "lastOutcome",
            "lastSuccessfulTime",
            "nextScheduleTime",
            "leaseHolder",
            "fencingToken",
        )
    } == {
        "lastScheduleTime": "2026-03-01T11:50:00Z",
        "lastRunTime": "2026-03-01T11:50:00Z",
        "lastOutcome": "success",
        "lastSuccessfulTime": "2026-03-01T11:50:01Z",
        "nextScheduleTime": "2026-03-01T12:00:01Z",
        "leaseHolder": "passive-users-6d9f-abcde",
        "fencingToken": 1764633600000042,
    }
    assert result.events == ()


def test_no_lease_holder_and_no_success_yet_are_cleared_not_invented() -> None:
    result = _observed(
        {"leaseHolder": "old-pod", "lastSuccessfulTime": "2026-03-01T11:00:00Z"},
        _document_entry(leaseHolder=None, lastSuccessfulTime=None, fencingToken="7"),
    )

    # None is a JSON merge patch's "remove this field".
    assert result.status["leaseHolder"] is None
    assert result.status["lastSuccessfulTime"] is None
    assert result.status["fencingToken"] is None


def test_an_unreadable_document_leaves_the_last_known_run_fields_alone() -> None:
    result = _observed({"leaseHolder": "pod-a", "lastOutcome": "success"}, None)

    assert "leaseHolder" not in result.status
    assert "lastOutcome" not in result.status


def test_without_a_ready_replica_nobody_holds_the_lease_and_nothing_is_planned() -> None:
    result = _observed({"leaseHolder": "pod-a", "lastOutcome": "success"}, None, ready=0)

    assert result.status["leaseHolder"] is None
    assert result.status["nextScheduleTime"] is None
    assert "lastOutcome" not in result.status  # the history stays


def test_a_run_that_fails_after_successes_posts_one_run_failed_warning() -> None:
    previous = _observed({}, _document_entry()).status
    failed = _document_entry(
        lastRunTime="2026-03-01T12:00:02Z", lastOutcome="failure", fencingToken=43
    )

    first = _observed(previous, failed)
    again = _observed(first.status, failed)
    next_failure = _observed(first.status, {**failed, "lastRunTime": "2026-03-01T12:10:03Z"})

    assert [(e.event_type, e.reason) for e in first.events] == [("Warning", "RunFailed")]
    assert "ended with failure" in first.events[0].message
    assert "fencing token 43" in first.events[0].message
    assert first.status["lastOutcome"] == "failure"
    assert again.events == ()  # the same run, seen again
    assert next_failure.events == ()  # the same streak of failures


def test_a_success_after_failures_posts_run_recovered() -> None:
    failing = _observed({}, _document_entry(lastOutcome="timeout")).status

    recovered = _observed(failing, _document_entry(lastRunTime="2026-03-01T12:30:00Z"))

    assert [(e.event_type, e.reason) for e in recovered.events] == [("Normal", "RunRecovered")]


def test_kstatus_reads_a_rollout_as_reconciling_a_degraded_worker_as_stalled_and_rest_as_done() -> (
    None
):
    spec = {"replicas": 2, "redis": {"url": "redis://r"}}
    rolling = assess(
        generation=1,
        previous_status={},
        now=T0,
        worker=worker(**spec),
        deployment=deployment(replicas=2, ready=1, updated=1),
    )
    ready = assess(
        generation=1,
        previous_status={},
        now=T0,
        worker=worker(**spec),
        deployment=deployment(replicas=2, ready=2),
    )
    suspended = assess(
        generation=1,
        previous_status={},
        now=T0,
        worker=worker(**spec, suspend=True),
        deployment=deployment(replicas=0, ready=0),
    )
    missing = assess(
        generation=1,
        previous_status={},
        now=T0,
        worker=worker(**spec),
        deployment=None,
        missing_secrets=['Secret "redis" does not exist'],
    )

    assert conditions_of(rolling.status)["Reconciling"] == ("True", "RollingOut")
    assert "Stalled" not in conditions_of(rolling.status)
    assert {"Reconciling", "Stalled"}.isdisjoint(conditions_of(ready.status))
    assert {"Reconciling", "Stalled"}.isdisjoint(conditions_of(suspended.status))
    assert conditions_of(missing.status)["Stalled"] == ("True", "SecretNotFound")
    assert "Reconciling" not in conditions_of(missing.status)
