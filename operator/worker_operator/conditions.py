"""Pure status assessment: the owned Deployment and its pods in, ``status`` and Events out.

``Ready``: every desired replica is available (not while suspended).
``Progressing``: a rollout or scaling is under way.
``Degraded``: something needs a human: a spec the operator cannot run, a missing Secret, an
image that cannot be pulled, a crash loop, a rollout past its deadline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
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
    "pod_problem",
]

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"

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
) -> Assessment:
    """The status of one worker.

    ``problem`` is a failure of the operator's own step (``InvalidSpec``,
    ``DeploymentConflict``, ``DeploymentRejected``); then ``worker`` may be ``None`` and
    ``deployment`` is ignored. ``missing_secrets`` are messages about referenced Secrets that
    do not exist. ``now`` stamps changed conditions.
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
    status["conditions"] = merge_conditions(previous, [ready, progressing, degraded], now=now)
    return Assessment(status=status, events=_events(previous, status["conditions"]))


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
