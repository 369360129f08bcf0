"""The operator's ``StatusReader`` against real ``tickwork run`` replicas and a real Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.support.processes import RedisServer, free_port, start_tickwork, stop, wait_until
from worker_operator.metrics import OperatorMetrics
from worker_operator.observing import PodAddress, StatusReader
from worker_operator.queueing import Backoff

pytestmark = pytest.mark.integration
KEY = ("shop", "reader")
NAME = "shop.reader"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reader(metrics: OperatorMetrics, clock: Clock) -> StatusReader:
    return StatusReader(
        timeout_seconds=1.0,
        backoff=Backoff(initial_seconds=10.0, max_seconds=40.0),
        metrics=metrics,
        monotonic=clock,
    )


async def test_the_reader_gets_the_worker_s_entry_from_a_ready_pod_and_asks_two_at_most(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    port = free_port()
    proc = start_tickwork(
        [
            "run",
            "tests.workers.sample:Ticker",
            "--name",
            NAME,
            "--period",
            "300ms",
            "--redis-url",
            redis_server.url,
            "--replica-id",
            "pod-b",
            "--metrics-port",
            str(port),
        ],
        log_path=tmp_path / "replica.log",
    )
    metrics = OperatorMetrics(CollectorRegistry())
    clock = Clock()
    reader = _reader(metrics, clock)
    other = PodAddress("pod-a", "127.0.0.1")
    alive = PodAddress("pod-b", "127.0.0.1")
    try:
        wait_until(
            lambda: (tmp_path / "replica.log").read_text().count("metrics on") > 0,
            timeout=20,
            what="the replica's metrics server",
        )
        entry = None
        for _ in range(100):
            entry = await reader.read(KEY, NAME, [alive], port=port)
            if entry and entry.get("lastOutcome") == "success":
                break
            clock.now += 100  # past any backoff
            await asyncio.sleep(0.1)
        assert entry is not None
        assert entry["leaseHolder"] == "pod-b"
        assert entry["fencingToken"] > 0
        # A pod without the worker's document first: the reader asks a second pod.
        second = await reader.read(KEY, "shop.other", [other, alive], port=port)
        assert second is None
        assert reader.retry_in(KEY) == 10.0
    finally:
        assert stop(proc) == 0
        await reader.close()
    assert (
        metrics.registry.get_sample_value(
            "tickwork_operator_status_reads_total", {"result": "invalid"}
        )
        == 2.0
    )  # both pods were asked: neither has "shop.other"


async def test_pods_that_do_not_answer_are_asked_again_only_after_a_growing_delay() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    clock = Clock()
    reader = _reader(metrics, clock)
    nobody = [PodAddress("pod-a", "127.0.0.1")]
    port = free_port()  # nothing listens there
    try:
        assert await reader.read(KEY, NAME, nobody, port=port) is None
        assert reader.retry_in(KEY) == 10.0
        clock.now += 9.0
        assert await reader.read(KEY, NAME, nobody, port=port) is None  # still backing off
        clock.now += 1.0
        assert await reader.read(KEY, NAME, nobody, port=port) is None
        assert reader.retry_in(KEY) == 20.0
        clock.now += 20.0
        await reader.read(KEY, NAME, nobody, port=port)
        clock.now += 40.0
        await reader.read(KEY, NAME, nobody, port=port)
        assert reader.retry_in(KEY) == 40.0  # capped
    finally:
        await reader.close()
    assert (
        metrics.registry.get_sample_value(
            "tickwork_operator_status_reads_total", {"result": "unreachable"}
        )
        == 4.0
    )


def _pod(name: str, *, ready: bool, ip: str = "127.0.0.1") -> dict[str, object]:
    return {
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "labels": {
                "app.kubernetes.io/managed-by": "tickwork-operator",
                "app.kubernetes.io/instance": "passive-users",
            },
        },
        "status": {
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


async def test_the_reconciler_copies_a_ready_pod_s_document_into_status_and_refreshes_it(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    from datetime import UTC, datetime
    from typing import cast

    from tests.unit.operator.conftest import FakeKubeApi, worker_body
    from worker_operator.kubeapi import KubeApi
    from worker_operator.reconciling import Reconciler
    from worker_operator.settings import OperatorSettings

    port = free_port()
    proc = start_tickwork(
        [
            "run",
            "tests.workers.sample:Ticker",
            "--name",
            "team-a.passive-users",
            "--period",
            "300ms",
            "--redis-url",
            redis_server.url,
            "--replica-id",
            "passive-users-abc",
            "--metrics-port",
            str(port),
        ],
        log_path=tmp_path / "replica.log",
    )
    api = FakeKubeApi()
    clock = Clock()
    reconciler = Reconciler(
        api=cast(KubeApi, api),
        settings=OperatorSettings(status_refresh_seconds=7.0),
        metrics=OperatorMetrics(CollectorRegistry()),
        now=lambda: datetime(2026, 3, 1, tzinfo=UTC),
        monotonic=clock,
    )
    body = api.add_worker(worker_body(metrics={"port": port, "scrape": True}))
    key = ("team-a", "passive-users")
    try:
        await reconciler.reconcile(body, trigger="create")
        await reconciler.on_deployment_event("MODIFIED", api.roll_out(*key))
        clock.now += 0.3  # the rollout's status settles, then its reconcile runs
        await reconciler.run_due()

        async def status_with_a_success() -> dict[str, object]:
            for _ in range(100):
                await reconciler.on_pod_event("MODIFIED", _pod("passive-users-abc", ready=True))
                await reconciler.reconcile_key(*key, trigger="requeue")
                status = api.workers[key]["status"]
                if status.get("lastOutcome") == "success":
                    return dict(status)
                reconciler.status_reader.forget(key)
                await asyncio.sleep(0.1)
            raise AssertionError(f"no success in status: {api.workers[key]['status']}")

        status = await status_with_a_success()
        # Read again after the refresh interval, while a Ready pod is there.
        refresh_at = reconciler.queue.deadline(key)
        gone = _pod("passive-users-abc", ready=False)
        await reconciler.on_pod_event("MODIFIED", gone)
        after = api.workers[key]["status"]
    finally:
        assert stop(proc) == 0
        await reconciler.status_reader.close()
    assert status["leaseHolder"] == "passive-users-abc"
    assert isinstance(status["fencingToken"], int)
    assert str(status["nextScheduleTime"]) >= str(status["lastScheduleTime"])
    assert refresh_at == pytest.approx(clock.now + 7.0)
    # Its only Ready pod stopped being Ready: nobody holds the lease, the history stays.
    assert "leaseHolder" not in after
    assert "nextScheduleTime" not in after
    assert after["lastOutcome"] == "success"
