"""Fixtures of the operator's unit tests: sample resources and an in-memory Kubernetes API."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from worker_operator.kubeapi import ApiError, NotFound

Body = dict[str, Any]


def worker_body(**spec: Any) -> Body:
    """A BackgroundWorker as the API server returns it (schema defaults applied)."""
    base: Body = {
        "apiVersion": "tickwork.dev/v1alpha1",
        "kind": "BackgroundWorker",
        "metadata": {
            "name": "passive-users",
            "namespace": "team-a",
            "uid": "0b7c7e1e-4c2f-4b8e-9d55-2f0f8f6b9a01",
            "generation": 1,
            "resourceVersion": "100",
        },
        "spec": {
            "image": "registry.example.com/admin-workers:1.4.2",
            "worker": "admin_workers.passive_users:PassiveUserCheckerWorker",
            "schedule": {"period": "10m", "runOnStart": False, "misfire": "skip"},
            "replicas": 1,
            "suspend": False,
            "lease": {"ttl": "15s"},
            "metrics": {"port": 9100, "scrape": True},
            "shutdownGrace": "30s",
            "log": {"format": "json", "level": "info"},
        },
    }
    base["spec"].update(spec)
    return base


@pytest.fixture
def make_worker() -> Callable[..., Body]:
    return worker_body


class FakeKubeApi:
    """Just enough of ``KubeApi`` for the reconciler: objects in dicts, SSA approximated.

    ``fail[method]`` holds exceptions raised (one per call) before the method runs.
    """

    def __init__(self) -> None:
        self.workers: dict[tuple[str, str], Body] = {}
        self.deployments: dict[tuple[str, str], Body] = {}
        self.pods: dict[tuple[str, str], list[Body]] = {}
        self.secrets: set[tuple[str, str]] = set()
        self.events: list[Body] = []
        self.status_patches: list[tuple[str, str, Body]] = []
        self.applies: list[Body] = []
        self.budgets: dict[tuple[str, str], Body] = {}
        self.fail: dict[str, list[BaseException]] = {}
        self.list_pod_calls = 0
        self._version = 1000

    def _maybe_fail(self, method: str) -> None:
        queue = self.fail.get(method)
        if queue:
            raise queue.pop(0)

    def _rv(self) -> str:
        self._version += 1
        return str(self._version)

    def add_worker(self, body: Body) -> Body:
        stored = copy.deepcopy(body)
        meta = stored["metadata"]
        meta["resourceVersion"] = self._rv()
        self.workers[(meta["namespace"], meta["name"])] = stored
        return copy.deepcopy(stored)

    async def get_worker(self, namespace: str, name: str) -> Body | None:
        self._maybe_fail("get_worker")
        found = self.workers.get((namespace, name))
        return copy.deepcopy(found) if found else None

    async def list_workers(self, namespace: str | None) -> list[Body]:
        self._maybe_fail("list_workers")
        return [
            copy.deepcopy(b)
            for (ns, _), b in sorted(self.workers.items())
            if namespace is None or ns == namespace
        ]

    async def patch_worker_status(self, namespace: str, name: str, status: Body) -> Body:
        self._maybe_fail("patch_worker_status")
        body = self.workers.get((namespace, name))
        if body is None:
            raise NotFound(404, f'backgroundworkers "{name}" not found')
        stored = body.setdefault("status", {})
        for field, value in copy.deepcopy(status).items():  # a JSON merge patch: null removes
            if value is None:
                stored.pop(field, None)
            else:
                stored[field] = value
        body["metadata"]["resourceVersion"] = self._rv()
        self.status_patches.append((namespace, name, copy.deepcopy(status)))
        return copy.deepcopy(body)

    async def get_deployment(self, namespace: str, name: str) -> Body | None:
        self._maybe_fail("get_deployment")
        found = self.deployments.get((namespace, name))
        return copy.deepcopy(found) if found else None

    async def apply_deployment(self, deployment: Body) -> Body:
        self._maybe_fail("apply_deployment")
        self.applies.append(copy.deepcopy(deployment))
        meta = deployment["metadata"]
        key = (meta["namespace"], meta["name"])
        current = self.deployments.get(key)
        generation = 1
        status: Body = {}
        if current is not None:
            generation = current["metadata"]["generation"]
            status = current.get("status", {})
            if current["spec"] != deployment["spec"]:
                generation += 1
        stored = copy.deepcopy(deployment)
        stored["metadata"].update(
            {
                "generation": generation,
                # A new uid for each Deployment created, like the API server's.
                "uid": current["metadata"]["uid"] if current else f"deploy-{self._rv()}",
                "resourceVersion": self._rv(),
            }
        )
        stored["status"] = status
        self.deployments[key] = stored
        return copy.deepcopy(stored)

    async def apply_disruption_budget(self, budget: Body) -> None:
        self._maybe_fail("apply_disruption_budget")
        meta = budget["metadata"]
        self.budgets[(meta["namespace"], meta["name"])] = copy.deepcopy(budget)

    def roll_out(self, namespace: str, name: str, *, ready: int | None = None) -> Body:
        """Pretend the Deployment controller and kubelets finished the rollout."""
        deployment = self.deployments[(namespace, name)]
        replicas = deployment["spec"]["replicas"] if ready is None else ready
        deployment["metadata"]["resourceVersion"] = self._rv()
        deployment["status"] = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas,
            "readyReplicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        }
        return copy.deepcopy(deployment)

    async def list_pods(self, namespace: str, selector: str) -> list[Body]:
        self._maybe_fail("list_pods")
        self.list_pod_calls += 1
        return copy.deepcopy(self.pods.get((namespace, selector), []))

    async def secret_exists(self, namespace: str, name: str) -> bool:
        self._maybe_fail("secret_exists")
        return (namespace, name) in self.secrets

    async def create_event(self, event: Body) -> None:
        self._maybe_fail("create_event")
        self.events.append(copy.deepcopy(event))

    def event_reasons(self) -> list[tuple[str, str]]:
        return [(e["type"], e["reason"]) for e in self.events]


@pytest.fixture
def fake_api() -> FakeKubeApi:
    return FakeKubeApi()


def transient(status: int = 503) -> ApiError:
    return ApiError(status, "the server is currently unable to handle the request")
