"""Reconciling: one ``BackgroundWorker`` → its Deployment (server-side applied) → its status.

The operator's view of the cluster comes from kopf's watches (``on_worker_event``,
``on_deployment_event``, ``on_pod_event``): the latest BackgroundWorker, its Deployment and
its pods with a problem are kept per worker, so a reconcile reads no resource that a watch
already showed. A watch event older than what the operator already saw (an echo of its own
write, or one overtaken by a newer one: ``resourceVersion``) changes nothing.

Every trigger ends in the same level-based ``_reconcile``: parse the spec, build the
Deployment, apply it when it may differ from what was last applied, take back fields other
managers added to its ``spec`` (``ownership.foreign_fields``), then publish ``status`` (and
Events when something changed). One lock per resource keeps triggers in order; a resource
seen at an older generation than one already applied is left alone.

Failures are ``ReconcileError`` subclasses, recorded in ``status`` where the user must act:
``InvalidSpec``, ``DeploymentConflict`` and ``DeploymentRejected`` are permanent for this spec
(a conflict is re-checked as soon as the conflicting Deployment changes or goes);
``Unavailable`` may pass (the API failed transiently, or RBAC forbids a call) and is retried
with a growing delay; ``Gone`` (the resource or its namespace is being deleted) ends quietly.
Every ``ApiError`` of the I/O layer is mapped to one of them by ``_failure``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker_operator.builders import (
    build_deployment,
    build_disruption_budget,
    deployment_name,
    disruption_budget_name,
)
from worker_operator.conditions import Assessment, Problem, assess, pod_problem
from worker_operator.constants import (
    ANNOTATION_ELECTION,
    API_VERSION,
    FIELD_MANAGER,
    KIND,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    MANAGED_BY,
)
from worker_operator.elections import ElectionWatch
from worker_operator.kubeapi import (
    ApiError,
    Forbidden,
    KubeApi,
    NamespaceTerminating,
    NotFound,
    Rejected,
)
from worker_operator.metrics import OperatorMetrics, Result
from worker_operator.observing import PodAddress, StatusReader
from worker_operator.ownership import controller_of, foreign_fields, labelled_for
from worker_operator.queueing import Backoff, WorkQueue
from worker_operator.recording import EventRecorder, involved
from worker_operator.settings import OperatorSettings
from worker_operator.spec import SpecError, WorkerSpec, parse_worker

__all__ = [
    "DeploymentConflict",
    "DeploymentRejected",
    "Gone",
    "InvalidSpec",
    "Outcome",
    "ReconcileError",
    "Reconciler",
    "ServedElsewhere",
    "Unavailable",
    "owner_name",
]

log = logging.getLogger(__name__)

Key = tuple[str, str]

#: Retries of a transient failure: from the failure's own delay up to this.
_MAX_RETRY_SECONDS = 300.0
_TRIGGERS = {None: "resume", "ADDED": "create", "MODIFIED": "update"}
#: How long a change of a Deployment's rollout status waits for the next one (see
#: ``on_deployment_event``): the READY column lags by at most this.
_ROLLOUT_SETTLE_SECONDS = 0.3


class ReconcileError(Exception):
    result: Result = Result.TRANSIENT_ERROR
    permanent: bool = False


class InvalidSpec(ReconcileError):
    result = Result.INVALID_SPEC
    permanent = True


class DeploymentConflict(ReconcileError):
    result = Result.CONFLICT
    permanent = True

    def __init__(self, message: str, *, resource_version: str = "") -> None:
        super().__init__(message)
        self.resource_version = resource_version


class DeploymentRejected(ReconcileError):
    result = Result.REJECTED
    permanent = True


class Gone(ReconcileError):
    """The resource, or its namespace, is being deleted: nothing to do, nothing to report."""

    result = Result.SKIPPED
    permanent = True


class ServedElsewhere(ReconcileError):
    """Another operator, under another leader election that is alive, applied the
    Deployment: leave the worker to it (and look again after ``delay_seconds``)."""

    result = Result.CONFLICT

    def __init__(self, message: str, *, delay_seconds: float) -> None:
        super().__init__(message)
        self.delay_seconds = delay_seconds


class Unavailable(ReconcileError):
    """The API failed (transiently, or RBAC forbids a call): try again after ``delay``."""

    def __init__(self, message: str, *, delay_seconds: float) -> None:
        super().__init__(message)
        self.delay_seconds = delay_seconds


def _failure(exc: ApiError) -> ReconcileError:
    """The one mapping of the I/O layer's errors to the reconciler's."""
    if isinstance(exc, NamespaceTerminating | NotFound):
        return Gone(str(exc))
    if isinstance(exc, Forbidden):
        return Unavailable(
            f"the operator is not allowed to do this (check its RBAC rules): {exc.message}",
            delay_seconds=60.0,
        )
    if isinstance(exc, Rejected):
        return DeploymentRejected(f"the API server refused the request: {exc.message}")
    return Unavailable(str(exc), delay_seconds=5.0)


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    ready: bool = False
    degraded: bool = False


@dataclass(frozen=True, slots=True)
class _Applied:
    uid: str
    worker_generation: int
    deployment_generation: int


def owner_name(obj: Mapping[str, Any]) -> str | None:
    """The BackgroundWorker that controls ``obj`` (a Deployment), from its owner reference."""
    ref = controller_of(obj)
    if ref is not None and ref.get("kind") == KIND and ref.get("apiVersion") == API_VERSION:
        return str(ref.get("name"))
    return None


def _worker_of(obj: Mapping[str, Any]) -> str | None:
    """The worker a Deployment or pod belongs to: its owner, else the operator's labels."""
    name = owner_name(obj)
    if name is not None:
        return name
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_MANAGED_BY) == MANAGED_BY and labels.get(LABEL_INSTANCE):
        return str(labels[LABEL_INSTANCE])
    return None


def _controlled_by(obj: Mapping[str, Any], uid: str) -> bool:
    ref = controller_of(obj)
    return ref is not None and ref.get("uid") == uid


def _meta(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("metadata") or {}


def _generation(obj: Mapping[str, Any] | None) -> int:
    return int(_meta(obj).get("generation") or 0)


def _newer(candidate: Mapping[str, Any], known: Mapping[str, Any] | None) -> bool:
    """Whether ``candidate`` is a later state than ``known`` (of the same name).

    etcd's resourceVersions grow across every object of a resource, so a late event of a
    Deployment already replaced by a new one is older than the new one. (They are opaque
    to clients; when they are not integers, another uid or version counts as newer.)
    """
    if known is None:
        return True
    new, old = _meta(candidate).get("resourceVersion"), _meta(known).get("resourceVersion")
    try:
        return int(str(new)) > int(str(old))
    except ValueError:
        return _meta(candidate).get("uid") != _meta(known).get("uid") or new != old


def _tombstone(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """What is left of a deleted Deployment: its last version, so later echoes are older."""
    metadata = _meta(deployment)
    return {
        "metadata": {
            "uid": metadata.get("uid"),
            "resourceVersion": metadata.get("resourceVersion"),
        },
        "gone": True,
    }


_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _compact_worker(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the reconciler reads of a BackgroundWorker (no managedFields, no kubectl copy)."""
    kept = copy.deepcopy({k: v for k, v in body.items() if k != "metadata"})
    metadata = {k: v for k, v in _meta(body).items() if k not in ("managedFields", "annotations")}
    annotations = {
        k: v for k, v in (_meta(body).get("annotations") or {}).items() if k != _LAST_APPLIED
    }
    if annotations:
        metadata["annotations"] = annotations
    kept["metadata"] = copy.deepcopy(metadata)
    return kept


_DEPLOYMENT_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "labels",
    "ownerReferences",
)


def _compact_deployment(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """What the reconciler reads of a Deployment: identity, owners, status, foreign fields,
    the election that applied it."""
    metadata = _meta(deployment)
    return {
        "metadata": copy.deepcopy({k: metadata[k] for k in _DEPLOYMENT_METADATA if k in metadata}),
        "status": copy.deepcopy(deployment.get("status") or {}),
        "foreign": foreign_fields(deployment, own_manager=FIELD_MANAGER),
        "election": str((metadata.get("annotations") or {}).get(ANNOTATION_ELECTION) or ""),
    }


def _compact_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What ``pod_problem`` reads of a pod."""
    status = pod.get("status") or {}
    keys = ("initContainerStatuses", "containerStatuses", "conditions")
    return {
        "metadata": {"name": _meta(pod).get("name")},
        "status": copy.deepcopy({k: status[k] for k in keys if k in status}),
    }


def _ready_address(pod: Mapping[str, Any]) -> PodAddress | None:
    """The pod's name and IP while it is Ready (and not going away), else ``None``."""
    status = pod.get("status") or {}
    ip = status.get("podIP")
    if not ip or _meta(pod).get("deletionTimestamp"):
        return None
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Ready":
            return (
                PodAddress(str(_meta(pod).get("name")), str(ip))
                if condition.get("status") == "True"
                else None
            )
    return None


def _rollout_only(known: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether a Deployment changed only in its ``status`` (nothing to repair)."""
    if known is None or known.get("gone"):
        return False

    def identity(compact: Mapping[str, Any]) -> dict[str, Any]:
        metadata = {k: v for k, v in _meta(compact).items() if k != "resourceVersion"}
        rest = {k: v for k, v in compact.items() if k not in ("metadata", "status")}
        return {"metadata": metadata, **rest}

    return identity(known) == identity(new)


def _labels_match(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    have = _meta(current).get("labels") or {}
    want = desired["metadata"]["labels"]
    return all(have.get(k) == v for k, v in want.items())


def _status_changed(previous: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return any(previous.get(k) != v for k, v in new.items())


def _key_of(obj: Mapping[str, Any]) -> Key:
    return (str(_meta(obj).get("namespace")), str(_meta(obj).get("name")))


def _about(body: Mapping[str, Any]) -> dict[str, Any]:
    metadata = _meta(body)
    return involved(
        str(metadata.get("namespace")), str(metadata.get("name")), str(metadata.get("uid", ""))
    )


class Reconciler:
    """Reconciles BackgroundWorkers; shared by every handler and the periodic loop."""

    def __init__(
        self,
        *,
        api: KubeApi,
        settings: OperatorSettings,
        metrics: OperatorMetrics,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.settings = settings
        self.metrics = metrics
        self._now = now
        self._monotonic = monotonic
        self.queue: WorkQueue[Key] = WorkQueue(monotonic=monotonic)
        self.recorder = EventRecorder(api=api, metrics=metrics, instance=settings.identity, now=now)
        self._degraded_backoff = Backoff(
            initial_seconds=settings.degraded_recheck_seconds,
            max_seconds=settings.degraded_recheck_max_seconds,
        )
        self._locks: dict[Key, asyncio.Lock] = {}
        self._applied: dict[Key, _Applied] = {}
        #: (uid, generation) of each worker whose PodDisruptionBudget is as its spec says.
        self._budgets: dict[Key, tuple[str, int]] = {}
        #: The latest state the watches (or the operator's own writes) showed, per worker.
        self._workers: dict[Key, dict[str, Any]] = {}
        self._deployments: dict[Key, dict[str, Any]] = {}
        self._pod_problems: dict[Key, dict[str, dict[str, Any]]] = {}
        #: Ready pods per worker, from the pod watch: where the status document is read.
        self._ready_pods: dict[Key, dict[str, PodAddress]] = {}
        self.status_reader = StatusReader(
            timeout_seconds=settings.status_timeout_seconds,
            backoff=Backoff(
                initial_seconds=settings.status_refresh_seconds,
                max_seconds=settings.status_backoff_max_seconds,
            ),
            metrics=metrics,
            monotonic=monotonic,
        )
        self._conflict_watches: dict[Key, asyncio.Task[None]] = {}
        self._served_elsewhere: set[Key] = set()
        #: When each degraded worker is due for its next recheck (monotonic).
        self._degraded_recheck_at: dict[Key, float] = {}
        self._elections = ElectionWatch(
            api, recheck_seconds=settings.retry_period_seconds, monotonic=monotonic
        )
        self._group: asyncio.TaskGroup | None = None
        self._secret_check_forbidden = False

    # ------------------------------------------------------------------ watch events

    async def on_worker_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A BackgroundWorker was listed, added, changed or deleted."""
        key = _key_of(body)
        if event_type == "DELETED":
            self.forget(key)
            return
        if not _newer(body, self._workers.get(key)):
            return  # an echo of the operator's own status write, or an overtaken event
        self._workers[key] = _compact_worker(body)
        await self._quietly(key, trigger=_TRIGGERS.get(event_type, "update"))

    async def on_deployment_event(
        self, event_type: str | None, deployment: Mapping[str, Any]
    ) -> None:
        """An owned Deployment was listed, changed or deleted: repair drift, refresh status."""
        name = _worker_of(deployment)
        if name is None or name != _meta(deployment).get("name"):
            return
        key = (str(_meta(deployment).get("namespace")), name)
        known = self._deployments.get(key)
        if not _newer(deployment, known):
            return  # the operator already saw this state or a later one (its own write)
        if event_type == "DELETED":
            self._deployments[key] = _tombstone(deployment)
            # Deleted by hand, or by the garbage collector after its worker: read the worker
            # afresh before bringing the Deployment back.
            self._workers.pop(key, None)
        else:
            self._deployments[key] = _compact_deployment(deployment)
        if event_type is None:
            return  # the initial listing: the workers' own listing reconciles them
        if event_type == "MODIFIED" and _rollout_only(known, self._deployments[key]):
            # Only the rollout's status moved (pods turning Ready one after another): let a
            # burst of such changes settle into one status patch.
            self.queue.add_after(key, _ROLLOUT_SETTLE_SECONDS)
            return
        await self._quietly(key, trigger="deployment")

    async def on_pod_event(self, event_type: str | None, pod: Mapping[str, Any]) -> None:
        """A worker pod changed: reconcile when its problem (image pull, Secret...) changed,
        or when it became Ready or stopped being Ready (the status document is read anew)."""
        metadata = _meta(pod)
        instance = (metadata.get("labels") or {}).get(LABEL_INSTANCE)
        if (metadata.get("labels") or {}).get(LABEL_MANAGED_BY) != MANAGED_BY or not instance:
            return
        key = (str(metadata.get("namespace")), str(instance))
        pod_name = str(metadata.get("name"))
        problems = self._pod_problems.setdefault(key, {})
        before = problems.get(pod_name)
        gone = event_type == "DELETED" or metadata.get("deletionTimestamp")
        problem = None if gone else pod_problem(pod)
        if problem is None:
            problems.pop(pod_name, None)
            if not problems:
                del self._pod_problems[key]
        else:
            problems[pod_name] = _compact_pod(pod)
        readiness_changed = self._note_readiness(key, pod_name, None if gone else pod)
        if (
            not readiness_changed
            and (before is None) == (problem is None)
            and (before is None or pod_problem(before) == problem)
        ):
            return
        if event_type is not None and key in self._workers:
            await self._quietly(key, trigger="pod")

    def _note_readiness(self, key: Key, pod_name: str, pod: Mapping[str, Any] | None) -> bool:
        """Remember where ``pod_name`` can be asked for the status; whether that changed."""
        pods = self._ready_pods.setdefault(key, {})
        before = pods.get(pod_name)
        address = None if pod is None else _ready_address(pod)
        if address is None:
            pods.pop(pod_name, None)
        else:
            pods[pod_name] = address
        if not pods:
            del self._ready_pods[key]
        return before != address

    # ------------------------------------------------------------------ entry points

    async def reconcile(self, body: Mapping[str, Any], *, trigger: str) -> Outcome:
        """Apply and report one resource as given (raises what ``_quietly`` would log)."""
        key = _key_of(body)
        if _newer(body, self._workers.get(key)):
            self._workers[key] = _compact_worker(body)
        async with self._lock(key):
            return await self._measured(trigger, copy.deepcopy(dict(body)), force_apply=True)

    async def reconcile_key(
        self, namespace: str, name: str, *, trigger: str, force_apply: bool = False
    ) -> Outcome:
        """Reconcile the latest known state of a resource (read from the API if unknown)."""
        key = (namespace, name)
        async with self._lock(key):
            body = self._workers.get(key)
            if body is None:
                try:
                    body = await self.api.get_worker(namespace, name)
                except ApiError as exc:
                    error = _failure(exc)
                    self.metrics.observe(trigger=trigger, result=error.result, seconds=0.0)
                    raise error from None
                if body is not None:
                    self._workers[key] = body = _compact_worker(body)
            if body is None or _meta(body).get("deletionTimestamp"):
                self.metrics.observe(trigger=trigger, result=Result.SKIPPED, seconds=0.0)
                return Outcome(Result.SKIPPED)
            return await self._measured(trigger, body, force_apply=force_apply)

    def requeue(self, key: Key, *, delay_seconds: float) -> None:
        """Reconcile ``key`` again after ``delay_seconds`` (the earliest request wins)."""
        self.queue.add_after(key, delay_seconds)

    def forget(self, key: Key) -> None:
        """The resource is gone: drop everything known about it."""
        self._applied.pop(key, None)
        self._budgets.pop(key, None)
        self._served_elsewhere.discard(key)
        self._degraded_recheck_at.pop(key, None)
        self._workers.pop(key, None)
        self._deployments.pop(key, None)
        self._pod_problems.pop(key, None)
        self._ready_pods.pop(key, None)
        self.status_reader.forget(key)
        self.queue.forget(key)
        self.recorder.forget(key)
        self._stop_conflict_watch(key)
        lock = self._locks.get(key)
        if lock is not None and not lock.locked():
            del self._locks[key]

    async def run_periodic(self, stop: asyncio.Event) -> None:
        """Requeued resources when due, and every resource once per resync interval."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            try:
                await self._loop(stop)
            finally:
                await self.status_reader.close()
                self._group = None
                for task in self._conflict_watches.values():
                    task.cancel()
                self._conflict_watches.clear()

    async def _loop(self, stop: asyncio.Event) -> None:
        next_resync = self._monotonic() + self.settings.resync_interval_seconds
        while not stop.is_set():
            await self.queue.wait(stop, until=next_resync)
            if stop.is_set():
                return
            await self.run_due()
            if self._monotonic() >= next_resync:
                await self.resync_all()
                next_resync = self._monotonic() + self.settings.resync_interval_seconds

    async def run_due(self) -> None:
        """Reconcile every resource whose requeue time has come."""
        due = self.queue.due()
        if due:
            await self._each(due, trigger="requeue")

    async def resync_all(self) -> None:
        """List every served BackgroundWorker and reconcile each one."""
        namespaces: tuple[str | None, ...] = self.settings.namespaces or (None,)
        keys: list[Key] = []
        listed: set[str | None] = set()
        for namespace in namespaces:
            try:
                items = await self.api.list_workers(namespace)
            except ApiError as exc:
                log.warning(
                    "resync: cannot list BackgroundWorkers in %s: %s",
                    namespace or "all namespaces",
                    exc,
                )
                continue
            listed.add(namespace)
            for item in items:
                key = _key_of(item)
                if _newer(item, self._workers.get(key)):
                    self._workers[key] = _compact_worker(item)
                keys.append(key)
        # Workers deleted while a watch was down never sent DELETED: drop what they left.
        present = set(keys)
        for key in [k for k in self._workers if k not in present]:
            if None in listed or key[0] in listed:
                self.forget(key)
        await self._each(keys, trigger="resync", force_apply=True)
        self.metrics.last_resync.set(time.time())

    # ------------------------------------------------------------------ internals

    def _lock(self, key: Key) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _each(self, keys: list[Key], *, trigger: str, force_apply: bool = False) -> None:
        gate = asyncio.Semaphore(self.settings.resync_concurrency)

        async def one(key: Key) -> None:
            async with gate:
                try:
                    await self._quietly(key, trigger=trigger, force_apply=force_apply)
                except Exception:  # a bug with one resource must not stop the others
                    log.exception("%s/%s: reconcile failed", *key)

        async with asyncio.TaskGroup() as group:
            for key in keys:
                group.create_task(one(key))

    async def _quietly(self, key: Key, *, trigger: str, force_apply: bool = False) -> None:
        """Reconcile, log a failure once, and retry what may pass with a growing delay."""
        try:
            await self.reconcile_key(*key, trigger=trigger, force_apply=force_apply)
        except Unavailable as exc:
            delay = self.queue.backoff(
                key,
                "error",
                Backoff(initial_seconds=exc.delay_seconds, max_seconds=_MAX_RETRY_SECONDS),
            )
            log.warning("%s/%s: %s; retrying in %.0fs", *key, exc, delay)
        except ServedElsewhere as exc:
            self.queue.add_after(key, exc.delay_seconds)
            if key not in self._served_elsewhere:  # said once, until it changes
                self._served_elsewhere.add(key)
                log.warning("%s/%s: %s", *key, exc)
        except Gone as exc:
            log.debug("%s/%s: skipped: %s", *key, exc)
        except ReconcileError as exc:
            log.info("%s/%s: %s", *key, exc)
        else:
            self.queue.reset(key, "error")
            self._served_elsewhere.discard(key)

    async def _measured(
        self, trigger: str, body: Mapping[str, Any], *, force_apply: bool
    ) -> Outcome:
        started = self._monotonic()
        try:
            outcome = await self._reconcile(body, force_apply=force_apply)
        except ReconcileError as exc:
            self.metrics.observe(
                trigger=trigger, result=exc.result, seconds=self._monotonic() - started
            )
            raise
        self.metrics.observe(
            trigger=trigger, result=outcome.result, seconds=self._monotonic() - started
        )
        return outcome

    async def _reconcile(self, body: Mapping[str, Any], *, force_apply: bool) -> Outcome:
        key = _key_of(body)
        generation = _generation(body)
        applied = self._applied.get(key)
        uid = str(_meta(body).get("uid", ""))
        if applied is not None and applied.uid != uid:
            applied = None
        if applied is not None and generation < applied.worker_generation:
            log.debug(
                "%s/%s: generation %d is older than the applied %d; skipped",
                *key,
                generation,
                applied.worker_generation,
            )
            return Outcome(Result.SKIPPED)

        try:
            worker = parse_worker(body)
        except SpecError as exc:
            await self._publish(body, self._failed(body, Problem("InvalidSpec", str(exc))))
            raise InvalidSpec(str(exc)) from None

        try:
            deployment = await self._apply(worker, applied=applied, force_apply=force_apply)
            await self._keep_budget(worker, force_apply=force_apply)
            missing = await self._missing_secrets(worker)
        except DeploymentConflict as exc:
            await self._publish(
                body, self._failed(body, Problem("DeploymentConflict", str(exc)), worker)
            )
            self._watch_conflict(key, worker, exc.resource_version)
            raise
        except ApiError as exc:
            error = _failure(exc)
            if isinstance(error, DeploymentRejected):
                message = f"the API server refused the Deployment: {exc.message}"
                await self._publish(
                    body, self._failed(body, Problem("DeploymentRejected", message), worker)
                )
                raise DeploymentRejected(message) from None
            raise error from None
        self._stop_conflict_watch(key)

        pods = sorted(self._ready_pods.get(key, {}).values())
        observed = await self.status_reader.read(
            key, worker.runtime_name, pods, port=worker.metrics_port
        )
        assessment = assess(
            generation=generation,
            previous_status=body.get("status") or {},
            now=self._now(),
            worker=worker,
            deployment=deployment,
            pods=list(self._pod_problems.get(key, {}).values()),
            missing_secrets=missing,
            observed=observed,
            ready_pods=len(pods),
        )
        await self._publish(body, assessment)
        self._recheck_if_degraded(key, degraded=assessment.degraded)
        if pods:
            # Read the status again after the refresh interval (or when the backoff ends).
            waiting = self.status_reader.retry_in(key)
            self.queue.add_after(
                key, self.settings.status_refresh_seconds if waiting is None else waiting
            )
        return Outcome(
            Result.DEGRADED if assessment.degraded else Result.SUCCESS,
            ready=assessment.ready,
            degraded=assessment.degraded,
        )

    def _recheck_if_degraded(self, key: Key, *, degraded: bool) -> None:
        """A degraded worker is looked at again after a delay that doubles with each recheck.

        Only the recheck itself lengthens the delay: reconciles that events trigger meanwhile
        (its pods and Deployment changing) keep the recheck where it was.
        """
        if not degraded:
            self.queue.reset(key, "degraded")
            self._degraded_recheck_at.pop(key, None)
            return
        now = self._monotonic()
        recheck_at = self._degraded_recheck_at.get(key)
        if recheck_at is None or now >= recheck_at:
            delay = self.queue.backoff(key, "degraded", self._degraded_backoff)
            self._degraded_recheck_at[key] = now + delay
        else:
            self.queue.add_after(key, recheck_at - now)

    def _failed(
        self, body: Mapping[str, Any], problem: Problem, worker: WorkerSpec | None = None
    ) -> Assessment:
        return assess(
            generation=_generation(body),
            previous_status=body.get("status") or {},
            now=self._now(),
            worker=worker,
            problem=problem,
        )

    async def _current(self, worker: WorkerSpec) -> dict[str, Any] | None:
        """The Deployment as the watch last showed it, else as the API has it now."""
        known = self._deployments.get(worker.key)
        if known is not None and not known.get("gone"):
            return known
        found = await self.api.get_deployment(worker.namespace, deployment_name(worker))
        return None if found is None else _compact_deployment(found)

    async def _apply(
        self, worker: WorkerSpec, *, applied: _Applied | None, force_apply: bool
    ) -> dict[str, Any]:
        desired = build_deployment(worker, self.settings)
        name = desired["metadata"]["name"]
        current = await self._current(worker)
        adopting = False
        if current is not None and not _controlled_by(current, worker.uid):
            if controller_of(current) is None and labelled_for(current, worker.name):
                adopting = True  # the operator's own Deployment, its owner reference removed
            else:
                raise DeploymentConflict(
                    f"Deployment {worker.namespace}/{name} exists and is not owned by this "
                    "BackgroundWorker; delete or rename it",
                    resource_version=str(_meta(current).get("resourceVersion") or ""),
                )
        other = str((current or {}).get("election") or "")
        taking_over = bool(self.settings.election and other and other != self.settings.election)
        if taking_over and await self._elections.alive(other):
            raise ServedElsewhere(
                f"Deployment {worker.namespace}/{name} is kept by another tickwork operator "
                f"(leader election {other}, alive); this one ({self.settings.election}) "
                "leaves it alone. Run one operator per namespace, or give both the same "
                "--lease-namespace and --lease-name",
                delay_seconds=2 * self.settings.lease_duration_seconds,
            )
        added = list((current or {}).get("foreign") or ())
        drifted = (
            current is None
            or adopting
            or taking_over
            or bool(added)
            or (
                applied is not None
                and (
                    _generation(current) != applied.deployment_generation
                    or not _labels_match(current, desired)
                )
            )
        )
        if not (
            force_apply
            or drifted
            or applied is None
            or applied.worker_generation != worker.generation
        ):
            assert current is not None
            return current
        result = await self.api.apply_deployment(desired)
        added = foreign_fields(result, own_manager=FIELD_MANAGER)
        if added:
            try:
                result = await self.api.replace_deployment_spec(result, desired["spec"])
            except Rejected as exc:  # the test failed: changed meanwhile; its event follows
                raise Unavailable(
                    f"Deployment {name} changed while its spec was replaced: {exc.message}",
                    delay_seconds=1.0,
                ) from None
        changed = current is None or _generation(result) != _generation(current)
        by_hand = applied is not None and applied.worker_generation == worker.generation
        about = involved(worker.namespace, worker.name, worker.uid)
        if taking_over:
            log.warning(
                "%s/%s: took Deployment %s over from leader election %s (its Lease is no "
                "longer renewed)",
                *worker.key,
                name,
                other,
            )
        if adopting:
            await self.recorder.normal(
                about,
                "DeploymentAdopted",
                f"Deployment {name} had lost its owner reference to this BackgroundWorker; "
                "adopted it again",
            )
        elif current is not None and added:
            self.metrics.drift_repairs.inc()
            fields = ", ".join(added)
            log.info(
                "%s/%s: fields added to Deployment %s by hand: %s; removed",
                *worker.key,
                name,
                fields,
            )
            await self.recorder.normal(
                about,
                "DeploymentRestored",
                f"Deployment {name} had fields added outside the operator ({fields}); removed them",
            )
        elif drifted and by_hand and changed:
            what = "deleted" if current is None else "changed"
            self.metrics.drift_repairs.inc()
            log.info("%s/%s: the Deployment was %s by hand; put back", *worker.key, what)
            await self.recorder.normal(
                about,
                "DeploymentRestored",
                f"Deployment {name} was {what} outside the operator; restored it",
            )
        elif current is None:
            await self.recorder.normal(about, "DeploymentCreated", f"created Deployment {name}")
        if changed:
            log.info(
                "%s/%s: applied Deployment %s (generation %d, %d replicas)",
                worker.namespace,
                worker.name,
                name,
                _generation(result),
                worker.desired_replicas,
            )
        if _newer(result, self._deployments.get(worker.key)):
            self._deployments[worker.key] = _compact_deployment(result)
        self._applied[worker.key] = _Applied(
            uid=worker.uid,
            worker_generation=worker.generation,
            deployment_generation=_generation(result),
        )
        return result

    async def _keep_budget(self, worker: WorkerSpec, *, force_apply: bool) -> None:
        """Apply the PodDisruptionBudget of a worker with more than one replica, once per
        generation and at every resync (which forces the apply, so a budget changed by hand
        is put back). One replica needs none: a budget could not keep it up in a drain. A
        budget left from more replicas stays and allows that one pod's eviction."""
        done = (worker.uid, worker.generation)
        if worker.desired_replicas <= 1:
            return
        if not force_apply and self._budgets.get(worker.key) == done:
            return
        try:
            await self.api.apply_disruption_budget(build_disruption_budget(worker))
        except Rejected as exc:  # e.g. another controller owns a budget of that name
            await self.recorder.warning(
                involved(worker.namespace, worker.name, worker.uid),
                "DisruptionBudgetRejected",
                f"the API server refused PodDisruptionBudget {disruption_budget_name(worker)}: "
                f"{exc.message}",
            )
        self._budgets[worker.key] = done

    async def _missing_secrets(self, worker: WorkerSpec) -> list[str]:
        if not self.settings.check_secret_references or self._secret_check_forbidden:
            return []
        missing = []
        for path, ref in worker.secret_refs():
            try:
                exists = await self.api.secret_exists(worker.namespace, ref.name)
            except Forbidden as exc:
                log.warning(
                    "cannot check Secrets (%s); grant `get` on secrets or drop "
                    "--check-secret-references",
                    exc.message,
                )
                self._secret_check_forbidden = True
                return []
            if not exists:
                missing.append(
                    f'Secret "{ref.name}" (key "{ref.key}", from {path}) does not exist in '
                    f"namespace {worker.namespace}; the worker pods cannot start"
                )
        return missing

    async def _publish(self, body: Mapping[str, Any], assessment: Assessment) -> None:
        key = _key_of(body)
        previous = body.get("status") or {}
        if _status_changed(previous, assessment.status):
            log.debug("%s/%s: status %s", *key, json.dumps(assessment.status, sort_keys=True))
            try:
                result = await self.api.patch_worker_status(*key, assessment.status)
            except ApiError as exc:
                raise _failure(exc) from None
            if _newer(result, self._workers.get(key)):
                self._workers[key] = _compact_worker(result)
        about = _about(body)
        for intent in assessment.events:
            if intent.event_type == "Warning":
                await self.recorder.warning(about, intent.reason, intent.message)
            else:
                await self.recorder.normal(about, intent.reason, intent.message, clears=True)

    # ------------------------------------------------------------------ conflicts

    def _watch_conflict(self, key: Key, worker: WorkerSpec, resource_version: str) -> None:
        """Reconcile ``key`` again as soon as the conflicting Deployment changes or goes."""
        running = self._conflict_watches.get(key)
        if self._group is None or (running is not None and not running.done()):
            return
        self._conflict_watches[key] = self._group.create_task(
            self._guarded_conflict_watch(key, deployment_name(worker), resource_version),
            name=f"conflict watch {key[0]}/{key[1]}",
        )

    def _stop_conflict_watch(self, key: Key) -> None:
        task = self._conflict_watches.pop(key, None)
        if task is not None:
            task.cancel()

    async def _guarded_conflict_watch(self, key: Key, name: str, resource_version: str) -> None:
        try:
            await self._conflict_watch(key, name, resource_version)
        except Exception:  # a bug here must not stop the other workers' reconciles
            log.exception("%s/%s: watching the conflicting Deployment failed", *key)
            self.queue.add_after(key, _MAX_RETRY_SECONDS)

    async def _conflict_watch(self, key: Key, name: str, resource_version: str) -> None:
        namespace = key[0]
        failures = 0
        while True:
            try:
                async for event_type, obj in self.api.watch_deployment(
                    namespace, name, resource_version=resource_version
                ):
                    resource_version = str(_meta(obj).get("resourceVersion") or resource_version)
                    failures = 0
                    self.queue.add_after(key, 0.0)
                    if event_type == "DELETED":
                        return
            except ApiError as exc:
                if exc.status == 410:  # too old to watch from: look again
                    self.queue.add_after(key, 0.0)
                    return
                failures += 1
                delay = Backoff(initial_seconds=1.0, max_seconds=60.0).delay(failures)
                log.info(
                    "%s/%s: watching Deployment %s failed (%s); again in %.0fs",
                    *key,
                    name,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
