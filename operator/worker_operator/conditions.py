"""Pure status assessment: the owned Deployment and its pods in, ``status`` and Events out.

``Ready``: every desired replica is available (not while suspended).
``Progressing``: a rollout or scaling is under way.
``Degraded``: something needs a human: a spec the operator cannot run, a missing Secret, an
image that cannot be pulled, a crash loop, a rollout past its deadline.
``Reconciling`` (while not yet Ready and not Degraded, or Progressing) and ``Stalled``
(while Degraded) are there only while True: kstatus' conventions, for Flux, Argo CD,
``kubectl wait`` and cli-utils.

What the worker is doing (``lastScheduleTime`` ... ``fencingToken``) comes from a Ready pod's
status document (``observed_fields``); a run that ends badly after one that did not posts a
``RunFailed`` Warning, and a success after failures a ``RunRecovered`` Normal Event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker_operator.builders import deployment_name, selector_string
from worker_operator.constants import MAX_CONDITION_MESSAGE
from worker_operator.spec import WorkerSpec

__all__ = [
    "Assessment",
    "EventIntent",
    "Problem",
    "assess",
    "deployment_problem",
    "format_time",
    "merge_conditions",
    "observed_fields",
    "pod_problem",
]

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
#: kstatus' "abnormal-true" conditions (sigs.k8s.io/cli-utils/pkg/kstatus), present only
#: while True, so Flux, Argo CD and cli-utils read the worker as InProgress or Failed.
RECONCILING = "Reconciling"
STALLED = "Stalled"
#: Ready=False for these reasons is the desired state (no replica is asked for).
_AT_REST = frozenset({"Suspended", "ScaledToZero"})

_IMAGE_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
_START_REASONS = frozenset({"CreateContainerError", "RunContainerError", "PreCreateHookError"})


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a worker is Degraded: a CamelCase reason and one line for a human."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class EventIntent:
    event_type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Assessment:
    #: The new ``status`` (a merge patch of the status subresource).
    status: dict[str, Any]
    #: Events to post because something changed since the previous status.
    events: tuple[EventIntent, ...] = field(default_factory=tuple)

    @property
    def degraded(self) -> bool:
        return _condition_status(self.status.get("conditions", ()), DEGRADED) == "True"

    @property
    def ready(self) -> bool:
        return _condition_status(self.status.get("conditions", ()), READY) == "True"


def format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


#: status field ← the status document's field (times are cut to whole seconds, as metav1.Time).
_OBSERVED_TIMES = (
    "lastScheduleTime",
    "lastRunTime",
    "lastSuccessfulTime",
    "nextScheduleTime",
)
#: Outcomes of a run that did not do its work (see worker_runtime.outcomes).
BAD_OUTCOMES = frozenset({"failure", "timeout", "lease_lost"})


def _whole_seconds(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return format_time(moment.astimezone(UTC))


def observed_fields(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The ``status`` fields of one worker's entry in a status document (``None`` clears)."""
    fields: dict[str, Any] = {name: _whole_seconds(entry.get(name)) for name in _OBSERVED_TIMES}
    outcome = entry.get("lastOutcome")
    fields["lastOutcome"] = outcome if isinstance(outcome, str) and outcome else None
    holder = entry.get("leaseHolder")
    fields["leaseHolder"] = holder if isinstance(holder, str) and holder else None
    token = entry.get("fencingToken")
    fields["fencingToken"] = token if isinstance(token, int) and token > 0 else None
    return fields


def _run_events(
    previous: Mapping[str, Any], observed: Mapping[str, Any]
) -> tuple[EventIntent, ...]:
    outcome = observed.get("lastOutcome")
    if outcome is None or observed.get("lastRunTime") == previous.get("lastRunTime"):
        return ()
    was_bad = previous.get("lastOutcome") in BAD_OUTCOMES
    if outcome in BAD_OUTCOMES and not was_bad:
        return (
            EventIntent(
                "Warning",
                "RunFailed",
                f"the run started at {observed.get('lastRunTime')} (fencing token "
                f"{observed.get('fencingToken')}, on {observed.get('leaseHolder') or 'a replica'})"
                f" ended with {outcome}; see that pod's log",
            ),
        )
    if outcome == "success" and was_bad:
        return (
            EventIntent(
                "Normal",
                "RunRecovered",
                f"the run started at {observed.get('lastRunTime')} succeeded after failed runs",
            ),
        )
    return ()


def _condition_status(conditions: Iterable[Mapping[str, Any]], kind: str) -> str | None:
    for condition in conditions:
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return None


def _find(conditions: Iterable[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    for condition in conditions:
        if condition.get("type") == kind:
            return condition
    return None


def pod_problem(pod: Mapping[str, Any]) -> Problem | None:
    """What the kubelet (or scheduler) reports as wrong with one pod, if anything."""
    name = pod.get("metadata", {}).get("name", "?")
    status = pod.get("status") or {}
    statuses = [*status.get("initContainerStatuses", ()), *status.get("containerStatuses", ())]
    for container in statuses:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if not reason:
            continue
        detail = waiting.get("message") or reason
        text = f"pod {name}: {detail}"
        if reason == "CreateContainerConfigError":
            lowered = detail.lower()
            if "secret" in lowered and "not found" in lowered:
                return Problem("SecretNotFound", text)
            return Problem("ContainerConfigError", text)
        if reason in _IMAGE_REASONS:
            return Problem("ImagePullFailed", text)
        if reason == "CrashLoopBackOff":
            return Problem("CrashLoopBackOff", text)
        if reason in _START_REASONS:
            return Problem("ContainerStartFailed", text)
    for condition in status.get("conditions", ()):
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return Problem("Unschedulable", f"pod {name}: {condition.get('message', '')}".strip())
    return None


def deployment_problem(deployment: Mapping[str, Any]) -> Problem | None:
    """A rollout past its deadline, or pods the ReplicaSet could not create."""
    for condition in (deployment.get("status") or {}).get("conditions", ()):
        kind, status = condition.get("type"), condition.get("status")
        message = condition.get("message", "")
        if kind == "Progressing" and status == "False":
            reason = condition.get("reason") or "ProgressDeadlineExceeded"
            return Problem(reason, message or "the rollout does not progress")
        if kind == "ReplicaFailure" and status == "True":
            return Problem("ReplicaFailure", message or "pods cannot be created")
    return None


def merge_conditions(
    previous: Sequence[Mapping[str, Any]],
    current: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
) -> list[dict[str, Any]]:
    """``current`` with ``lastTransitionTime`` kept from ``previous`` where status is unchanged."""
    merged = []
    for condition in current:
        before = _find(previous, str(condition["type"]))
        stamp = format_time(now)
        if before is not None and before.get("status") == condition["status"]:
            stamp = str(before.get("lastTransitionTime") or stamp)
        merged.append({**condition, "lastTransitionTime": stamp})
    return merged


def _condition(kind: str, ok: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    if len(message) > MAX_CONDITION_MESSAGE:
        message = message[: MAX_CONDITION_MESSAGE - 3] + "..."
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def _events(
    previous: Sequence[Mapping[str, Any]], conditions: Sequence[Mapping[str, Any]]
) -> tuple[EventIntent, ...]:
    before = _find(previous, DEGRADED)
    now = _find(conditions, DEGRADED)
    assert now is not None
    was_degraded = before is not None and before.get("status") == "True"
    if now["status"] == "True":
        changed = (
            not was_degraded
            or before is None
            or before.get("reason") != now["reason"]
            or before.get("message") != now["message"]
        )
        if changed:
            return (EventIntent("Warning", str(now["reason"]), str(now["message"])),)
    elif was_degraded:
        return (EventIntent("Normal", "Recovered", "the worker is no longer degraded"),)
    return ()


def _counts(deployment: Mapping[str, Any] | None) -> dict[str, int]:
    status = (deployment or {}).get("status") or {}
    return {
        "replicas": int(status.get("replicas") or 0),
        "readyReplicas": int(status.get("readyReplicas") or 0),
        "updatedReplicas": int(status.get("updatedReplicas") or 0),
        "availableReplicas": int(status.get("availableReplicas") or 0),
    }


def assess(
    *,
    generation: int,
    previous_status: Mapping[str, Any],
    now: datetime,
    worker: WorkerSpec | None,
    deployment: Mapping[str, Any] | None = None,
    pods: Sequence[Mapping[str, Any]] = (),
    problem: Problem | None = None,
    missing_secrets: Sequence[str] = (),
    observed: Mapping[str, Any] | None = None,
    ready_pods: int | None = None,
) -> Assessment:
    """The status of one worker.

    ``problem`` is a failure of the operator's own step (``InvalidSpec``,
    ``DeploymentConflict``, ``DeploymentRejected``); then ``worker`` may be ``None`` and
    ``deployment`` is ignored. ``missing_secrets`` are messages about referenced Secrets that
    do not exist. ``observed`` is the worker's entry in a pod's status document, ``None``
    when none could be read (the fields already in status are then left as they are).
    ``ready_pods`` is how many Ready pods the pod watch shows (``None``: unknown; the
    Deployment's count, which lags, is used then).
    ``now`` stamps changed conditions.
    """
    previous = list(previous_status.get("conditions") or ())
    status: dict[str, Any] = {"observedGeneration": generation}
    if worker is not None:
        status.update(
            {
                "selector": selector_string(worker.name),
                "suspended": worker.suspend,
                "schedule": worker.schedule.summary(),
                "deployment": deployment_name(worker),
            }
        )

    if problem is not None:
        conditions = [
            _condition(READY, False, problem.reason, problem.message, generation),
            _condition(PROGRESSING, False, problem.reason, problem.message, generation),
            _condition(DEGRADED, True, problem.reason, problem.message, generation),
        ]
        conditions += _kstatus(*conditions, generation=generation)
        status["conditions"] = merge_conditions(previous, conditions, now=now)
        return Assessment(status=status, events=_events(previous, status["conditions"]))

    assert worker is not None
    counts = _counts(deployment)
    status.update(counts)
    desired = worker.desired_replicas
    status["ready"] = f"{counts['readyReplicas']}/{desired}"
    found = _degradation(
        worker=worker, deployment=deployment, pods=pods, missing_secrets=missing_secrets
    )

    if deployment is None:
        ready = _condition(
            READY, False, "DeploymentMissing", "the Deployment does not exist yet", generation
        )
        progressing = _condition(
            PROGRESSING, True, "DeploymentMissing", "the Deployment is being created", generation
        )
    elif desired == 0:
        # Suspended, or scaled to zero: no replica runs the worker, so it is not Ready.
        reason, why = (
            ("Suspended", "spec.suspend is true: the worker is scaled to zero")
            if worker.suspend
            else ("ScaledToZero", "spec.replicas is 0: no replica runs the worker")
        )
        ready = _condition(READY, False, reason, why, generation)
        winding_down = counts["replicas"] > 0
        progressing = _condition(
            PROGRESSING,
            winding_down,
            "ScalingDown" if winding_down else reason,
            f"{counts['replicas']} pods still terminating"
            if winding_down
            else (
                "suspended; set spec.suspend to false to resume"
                if worker.suspend
                else "set spec.replicas (or kubectl scale bgw) to run it"
            ),
            generation,
        )
    else:
        dstatus = deployment.get("status") or {}
        current = int(dstatus.get("observedGeneration") or 0) >= int(
            deployment.get("metadata", {}).get("generation") or 0
        )
        available = counts["availableReplicas"]
        is_ready = current and available >= desired
        ready = _condition(
            READY,
            is_ready,
            "ReplicasReady" if is_ready else "ReplicasNotReady",
            f"{counts['readyReplicas']}/{desired} replicas ready",
            generation,
        )
        rolled_out = (
            current
            and counts["updatedReplicas"] == desired
            and counts["replicas"] == desired
            and available >= desired
        )
        rollout = deployment_problem(deployment)
        stuck = (
            rollout
            if rollout is not None and rollout.reason == "ProgressDeadlineExceeded"
            else None
        )
        if rolled_out:
            progressing = _condition(
                PROGRESSING,
                False,
                "RolloutComplete",
                f"{desired} replicas up to date and available",
                generation,
            )
        elif stuck is not None:
            progressing = _condition(PROGRESSING, False, stuck.reason, stuck.message, generation)
        else:
            progressing = _condition(
                PROGRESSING,
                True,
                "RollingOut",
                f"{counts['updatedReplicas']}/{desired} replicas updated, {available} available",
                generation,
            )

    if found is not None:
        degraded = _condition(DEGRADED, True, found.reason, found.message, generation)
    else:
        degraded = _condition(DEGRADED, False, "AsExpected", "no problems found", generation)
    conditions = [ready, progressing, degraded]
    conditions += _kstatus(ready, progressing, degraded, generation=generation)
    status["conditions"] = merge_conditions(previous, conditions, now=now)
    events = _events(previous, status["conditions"])
    if observed is not None:
        fields = observed_fields(observed)
        status.update(fields)
        events += _run_events(previous_status, fields)
    elif (ready_pods if ready_pods is not None else counts["readyReplicas"]) == 0:
        # No replica runs it: nobody holds the lease and nothing is planned; the history stays.
        status.update({"leaseHolder": None, "nextScheduleTime": None})
    return Assessment(status=status, events=events)


def _kstatus(
    ready: Mapping[str, Any],
    progressing: Mapping[str, Any],
    degraded: Mapping[str, Any],
    *,
    generation: int,
) -> list[dict[str, Any]]:
    """``Stalled`` while Degraded, else ``Reconciling`` while on the way to Ready."""
    if degraded["status"] == "True":
        return [_condition(STALLED, True, degraded["reason"], degraded["message"], generation)]
    if progressing["status"] == "True":
        why = progressing
    elif ready["status"] == "False" and ready["reason"] not in _AT_REST:
        why = ready
    else:
        return []
    return [_condition(RECONCILING, True, why["reason"], why["message"], generation)]


def _degradation(
    *,
    worker: WorkerSpec,
    deployment: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    missing_secrets: Sequence[str],
) -> Problem | None:
    if worker.suspend:
        return None
    if missing_secrets:
        return Problem("SecretNotFound", "; ".join(missing_secrets))
    for pod in sorted(pods, key=lambda p: str(p.get("metadata", {}).get("name", ""))):
        if pod.get("metadata", {}).get("deletionTimestamp"):
            continue
        found = pod_problem(pod)
        if found is not None:
            return found
    if deployment is not None:
        return deployment_problem(deployment)
    return None
