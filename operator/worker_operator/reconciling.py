"""Reconciling: one ``BackgroundWorker`` → its Deployment (server-side applied) → its status.

Every trigger (create, update, resume, the periodic resync, an event on an owned Deployment or
pod) ends in the same level-based ``_reconcile``: read the spec, build the Deployment, apply
it when it may differ from what was last applied, then read the rollout and publish
``status`` (and Events when ``Degraded`` changes). One lock per resource keeps triggers in
order; a resource seen at an older generation than one already applied is left alone.

Failures are raised as ``ReconcileError`` subclasses after they were recorded in ``status``:
``InvalidSpec``, ``DeploymentConflict`` and ``DeploymentRejected`` are permanent for this
spec; ``Unavailable`` may pass (the API failed transiently, or RBAC forbids a call).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker_operator.builders import build_deployment, build_event, selector_string
from worker_operator.conditions import Assessment, Problem, assess, pod_problem
from worker_operator.constants import (
    API_VERSION,
    KIND,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    MANAGED_BY,
)
from worker_operator.kubeapi import ApiError, Forbidden, KubeApi, Rejected, TransientApiError
from worker_operator.metrics import OperatorMetrics, Result
from worker_operator.settings import OperatorSettings
from worker_operator.spec import SpecError, WorkerSpec, parse_worker

__all__ = [
    "DeploymentConflict",
    "DeploymentRejected",
    "InvalidSpec",
    "Outcome",
    "ReconcileError",
    "Reconciler",
    "Unavailable",
    "owner_name",
]

log = logging.getLogger(__name__)

Key = tuple[str, str]


class ReconcileError(Exception):
    result: Result = Result.TRANSIENT_ERROR
    permanent: bool = False


class InvalidSpec(ReconcileError):
    result = Result.INVALID_SPEC
    permanent = True


class DeploymentConflict(ReconcileError):
    result = Result.CONFLICT
    permanent = True


class DeploymentRejected(ReconcileError):
    result = Result.REJECTED
    permanent = True


class Unavailable(ReconcileError):
    """The API failed (transiently, or RBAC forbids a call): try again after ``delay``."""

    def __init__(self, message: str, *, delay_seconds: float) -> None:
        super().__init__(message)
        self.delay_seconds = delay_seconds


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


_UNSET: Any = object()


def owner_name(obj: Mapping[str, Any]) -> str | None:
    """The BackgroundWorker that controls ``obj`` (a Deployment), from its owner reference."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if (
            ref.get("controller")
            and ref.get("kind") == KIND
            and ref.get("apiVersion") == API_VERSION
        ):
            return str(ref.get("name"))
    return None


def _controlled_by(obj: Mapping[str, Any], uid: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or ()
    return any(ref.get("controller") and ref.get("uid") == uid for ref in refs)


def _generation(obj: Mapping[str, Any] | None) -> int:
    return int(((obj or {}).get("metadata") or {}).get("generation") or 0)


def _labels_match(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    have = (current.get("metadata") or {}).get("labels") or {}
    want = desired["metadata"]["labels"]
    return all(have.get(k) == v for k, v in want.items())


def _status_changed(previous: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return any(previous.get(k) != v for k, v in new.items())


def _involved(body: Mapping[str, Any]) -> dict[str, Any]:
    metadata = body.get("metadata") or {}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "uid": metadata.get("uid"),
    }


class Reconciler:
    """Reconciles BackgroundWorkers; shared by every handler and the resync loop."""

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
        self._locks: weakref.WeakValueDictionary[Key, asyncio.Lock] = weakref.WeakValueDictionary()
        self._applied: dict[Key, _Applied] = {}
        self._requeue: dict[Key, float] = {}
        self._wake = asyncio.Event()
        self._secret_check_forbidden = False
        #: The last Warning posted per resource, so a repeated assessment posts it once.
        self._last_warning: dict[Key, tuple[str, str]] = {}

    # ------------------------------------------------------------------ entry points

    async def reconcile(self, body: Mapping[str, Any], *, trigger: str) -> Outcome:
        """Apply and report one resource as given (create, update, resume, resync)."""
        key = self._key(body)
        async with self._lock(key):
            return await self._measured(trigger, body, force_apply=True)

    async def reconcile_key(
        self,
        namespace: str,
        name: str,
        *,
        trigger: str,
        observed_deployment: Mapping[str, Any] | None = _UNSET,
        force_apply: bool = False,
    ) -> Outcome:
        """Read the resource afresh, then reconcile it; apply only if drift is possible.

        ``observed_deployment`` is the Deployment as a watch event just showed it (``None``
        when it was deleted); when not given, it is read from the API.
        """
        key = (namespace, name)
        async with self._lock(key):
            try:
                body = await self.api.get_worker(namespace, name)
            except ApiError as exc:
                self.metrics.observe(trigger=trigger, result=Result.TRANSIENT_ERROR, seconds=0.0)
                raise Unavailable(str(exc), delay_seconds=5.0) from exc
            if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
                self.forget(key)
                self.metrics.observe(trigger=trigger, result=Result.SKIPPED, seconds=0.0)
                return Outcome(Result.SKIPPED)
            return await self._measured(
                trigger, body, force_apply=force_apply, observed_deployment=observed_deployment
            )

    async def on_deployment_event(
        self, event_type: str | None, deployment: Mapping[str, Any]
    ) -> None:
        """An owned Deployment changed or vanished: repair drift and refresh status."""
        metadata = deployment.get("metadata") or {}
        owner = owner_name(deployment)
        if owner is None:
            return
        observed = None if event_type == "DELETED" else deployment
        await self._quietly(
            str(metadata.get("namespace")),
            owner,
            trigger="deployment",
            observed_deployment=observed,
        )

    async def on_pod_event(self, pod: Mapping[str, Any]) -> None:
        """A worker pod reports a problem (image pull, missing Secret, crash loop): report it."""
        if pod_problem(pod) is None:
            return
        metadata = pod.get("metadata") or {}
        instance = (metadata.get("labels") or {}).get(LABEL_INSTANCE)
        if (metadata.get("labels") or {}).get(LABEL_MANAGED_BY) != MANAGED_BY or not instance:
            return
        await self._quietly(str(metadata.get("namespace")), str(instance), trigger="pod")

    def requeue(self, key: Key, *, delay_seconds: float) -> None:
        """Reconcile ``key`` again after ``delay_seconds`` (the earliest request wins)."""
        deadline = self._monotonic() + delay_seconds
        current = self._requeue.get(key)
        if current is None or deadline < current:
            self._requeue[key] = deadline
            self._wake.set()

    def forget(self, key: Key) -> None:
        self._applied.pop(key, None)
        self._requeue.pop(key, None)
        self._last_warning.pop(key, None)

    async def run_periodic(self, stop: asyncio.Event) -> None:
        """Requeued resources when due, and every resource once per resync interval."""
        next_resync = self._monotonic() + self.settings.resync_interval_seconds
        while not stop.is_set():
            now = self._monotonic()
            wake_at = min([next_resync, *self._requeue.values()])
            self._wake.clear()
            if wake_at > now:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wake_at - now):
                        await _first_of(stop, self._wake)
                continue
            now = self._monotonic()
            due = [key for key, at in self._requeue.items() if at <= now]
            for key in due:
                del self._requeue[key]
            if due:
                await self._each(due, trigger="requeue")
            if now >= next_resync:
                await self.resync_all()
                next_resync = self._monotonic() + self.settings.resync_interval_seconds

    async def resync_all(self) -> None:
        """List every served BackgroundWorker and reconcile each one."""
        namespaces: tuple[str | None, ...] = self.settings.namespaces or (None,)
        keys: list[Key] = []
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
            keys.extend(
                (str(i["metadata"]["namespace"]), str(i["metadata"]["name"])) for i in items
            )
        await self._each(keys, trigger="resync", force_apply=True)
        self.metrics.last_resync.set(time.time())

    # ------------------------------------------------------------------ internals

    def _lock(self, key: Key) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    @staticmethod
    def _key(body: Mapping[str, Any]) -> Key:
        metadata = body.get("metadata") or {}
        return (str(metadata.get("namespace")), str(metadata.get("name")))

    async def _each(self, keys: list[Key], *, trigger: str, force_apply: bool = False) -> None:
        gate = asyncio.Semaphore(self.settings.resync_concurrency)

        async def one(key: Key) -> None:
            async with gate:
                try:
                    await self._quietly(*key, trigger=trigger, force_apply=force_apply)
                except Exception:  # a bug with one resource must not stop the others
                    log.exception("%s/%s: reconcile failed", *key)

        async with asyncio.TaskGroup() as group:
            for key in keys:
                group.create_task(one(key))

    async def _quietly(
        self,
        namespace: str,
        name: str,
        *,
        trigger: str,
        observed_deployment: Mapping[str, Any] | None = _UNSET,
        force_apply: bool = False,
    ) -> None:
        """Reconcile outside kopf's handlers: log failures and requeue what may pass."""
        key = (namespace, name)
        try:
            await self.reconcile_key(
                namespace,
                name,
                trigger=trigger,
                observed_deployment=observed_deployment,
                force_apply=force_apply,
            )
        except Unavailable as exc:
            log.warning("%s/%s: %s; retrying in %.0fs", namespace, name, exc, exc.delay_seconds)
            self.requeue(key, delay_seconds=exc.delay_seconds)
        except ReconcileError as exc:
            log.info("%s/%s: %s", namespace, name, exc)
        except ApiError as exc:
            log.warning("%s/%s: %s; retrying in 5s", namespace, name, exc)
            self.requeue(key, delay_seconds=5.0)

    async def _measured(
        self,
        trigger: str,
        body: Mapping[str, Any],
        *,
        force_apply: bool,
        observed_deployment: Mapping[str, Any] | None = _UNSET,
    ) -> Outcome:
        started = self._monotonic()
        try:
            outcome = await self._reconcile(
                body, force_apply=force_apply, observed_deployment=observed_deployment
            )
        except ReconcileError as exc:
            self.metrics.observe(
                trigger=trigger, result=exc.result, seconds=self._monotonic() - started
            )
            raise
        self.metrics.observe(
            trigger=trigger, result=outcome.result, seconds=self._monotonic() - started
        )
        return outcome

    async def _reconcile(
        self,
        body: Mapping[str, Any],
        *,
        force_apply: bool,
        observed_deployment: Mapping[str, Any] | None,
    ) -> Outcome:
        key = self._key(body)
        generation = _generation(body)
        previous_status: Mapping[str, Any] = body.get("status") or {}
        applied = self._applied.get(key)
        uid = str((body.get("metadata") or {}).get("uid", ""))
        if applied is not None and applied.uid == uid and generation < applied.worker_generation:
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
            deployment = await self._apply(
                worker,
                applied=applied if applied is not None and applied.uid == uid else None,
                force_apply=force_apply,
                observed=observed_deployment,
            )
            pods = await self.api.list_pods(worker.namespace, selector_string(worker.name))
            missing = await self._missing_secrets(worker)
        except DeploymentConflict as exc:
            await self._publish(
                body, self._failed(body, Problem("DeploymentConflict", str(exc)), worker)
            )
            raise
        except Rejected as exc:
            message = f"the API server refused the Deployment: {exc.message}"
            await self._publish(
                body, self._failed(body, Problem("DeploymentRejected", message), worker)
            )
            raise DeploymentRejected(message) from None
        except Forbidden as exc:
            raise Unavailable(
                f"the operator is not allowed to do this (check its RBAC rules): {exc.message}",
                delay_seconds=60.0,
            ) from None
        except TransientApiError as exc:
            raise Unavailable(str(exc), delay_seconds=5.0) from None

        assessment = assess(
            generation=generation,
            previous_status=previous_status,
            now=self._now(),
            worker=worker,
            deployment=deployment,
            pods=pods,
            missing_secrets=missing,
        )
        await self._publish(body, assessment)
        if assessment.degraded:
            self.requeue(key, delay_seconds=self.settings.degraded_recheck_seconds)
        return Outcome(
            Result.DEGRADED if assessment.degraded else Result.SUCCESS,
            ready=assessment.ready,
            degraded=assessment.degraded,
        )

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

    async def _apply(
        self,
        worker: WorkerSpec,
        *,
        applied: _Applied | None,
        force_apply: bool,
        observed: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        desired = build_deployment(worker, self.settings)
        name = desired["metadata"]["name"]
        if observed is _UNSET:
            current = await self.api.get_deployment(worker.namespace, name)
        else:
            current = None if observed is None else copy.deepcopy(dict(observed))
        if current is not None and not _controlled_by(current, worker.uid):
            raise DeploymentConflict(
                f"Deployment {worker.namespace}/{name} exists and is not owned by this "
                "BackgroundWorker; delete or rename it"
            )
        drifted = current is None or (
            applied is not None
            and (
                _generation(current) != applied.deployment_generation
                or not _labels_match(current, desired)
            )
        )
        must_apply = (
            force_apply
            or drifted
            or applied is None
            or applied.worker_generation != worker.generation
        )
        if not must_apply:
            assert current is not None
            return current
        result = await self.api.apply_deployment(desired)
        if (
            drifted
            and applied is not None
            and applied.worker_generation == worker.generation
            and (current is None or _generation(result) != _generation(current))
        ):
            what = "deleted" if current is None else "changed"
            self.metrics.drift_repairs.inc()
            log.info("%s/%s: the Deployment was %s by hand; put back", worker.namespace, name, what)
            await self._event(
                _involved_of(worker),
                "Normal",
                "DeploymentRestored",
                f"Deployment {name} was {what} outside the operator; restored it",
            )
        elif current is None:
            await self._event(
                _involved_of(worker), "Normal", "DeploymentCreated", f"created Deployment {name}"
            )
        if current is None or _generation(result) != _generation(current):
            log.info(
                "%s/%s: applied Deployment %s (generation %d, %d replicas)",
                worker.namespace,
                worker.name,
                name,
                _generation(result),
                worker.desired_replicas,
            )
        self._applied[worker.key] = _Applied(
            uid=worker.uid,
            worker_generation=worker.generation,
            deployment_generation=_generation(result),
        )
        return result

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
        metadata = body.get("metadata") or {}
        namespace, name = str(metadata.get("namespace")), str(metadata.get("name"))
        previous = body.get("status") or {}
        if _status_changed(previous, assessment.status):
            try:
                await self.api.patch_worker_status(namespace, name, assessment.status)
            except ApiError as exc:
                if exc.status == 404:
                    return
                raise
        key = (namespace, name)
        for intent in assessment.events:
            if intent.event_type == "Warning":
                if self._last_warning.get(key) == (intent.reason, intent.message):
                    continue
                self._last_warning[key] = (intent.reason, intent.message)
                log.warning(
                    "%s/%s is degraded: %s: %s", namespace, name, intent.reason, intent.message
                )
            else:
                self._last_warning.pop(key, None)
            await self._event(_involved(body), intent.event_type, intent.reason, intent.message)

    async def _event(
        self, involved: dict[str, Any], event_type: str, reason: str, message: str
    ) -> None:
        event = build_event(
            involved=involved,
            event_type=event_type,
            reason=reason,
            message=message,
            now=self._now(),
            instance=self.settings.identity,
        )
        try:
            await self.api.create_event(event)
        except ApiError as exc:  # an Event is worth less than the reconcile that posts it
            log.warning("could not post the %s Event %s: %s", event_type, reason, exc)
            return
        self.metrics.events_posted.labels(type=event_type, reason=reason).inc()


def _involved_of(worker: WorkerSpec) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": worker.name,
        "namespace": worker.namespace,
        "uid": worker.uid,
    }


async def _first_of(*events: asyncio.Event) -> None:
    """Return as soon as one of ``events`` is set."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(e.wait()) for e in events]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
