"""``GET /status``: every replica serves what the worker is doing, read from a real Redis."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.processes import (
    RedisServer,
    free_port,
    http_get,
    start_tickwork,
    stop,
    wait_until,
)
from worker_runtime.keys import WorkerKeys
from worker_runtime.status import STATUS_DOCUMENT_VERSION

pytestmark = pytest.mark.integration
TICKER = "tests.workers.sample:Ticker"
FAILING = "tests.workers.failing:AlwaysFails"


def _document(port: int) -> dict[str, Any] | None:
    try:
        code, body = http_get(port, "/status", timeout=5)
    except OSError:
        return None
    if code != 200:
        return None
    document: dict[str, Any] = json.loads(body)
    return document


def _when(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _replica(server: RedisServer, worker: str, replica: str, port: int, tmp_path: Path) -> Any:
    return start_tickwork(
        [
            "run",
            worker,
            "--name",
            "shop.status",
            "--period",
            "300ms",
            "--redis-url",
            server.url,
            "--lease-ttl",
            "2s",
            "--replica-id",
            replica,
            "--metrics-port",
            str(port),
        ],
        log_path=tmp_path / f"{replica}.log",
    )


def test_every_replica_serves_the_same_status_of_the_worker_read_from_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    procs = [
        _replica(redis_server, TICKER, f"pod-{i}", port, tmp_path) for i, port in enumerate(ports)
    ]
    client = redis.Redis.from_url(redis_server.url)
    try:
        first = wait_until(
            lambda: (
                (d := _document(ports[0])) and d["workers"][0]["lastOutcome"] == "success" and d
            ),
            timeout=20,
            what="a successful run in the holder's document",
        )
        standby_seen = wait_until(
            lambda: _document(ports[1]), timeout=20, what="the second replica's document"
        )
        time.sleep(1.0)
        later = [_document(port) for port in ports]
        lease = client.hgetall(WorkerKeys("shop.status").lease)
        status = client.hgetall(WorkerKeys("shop.status").status)
    finally:
        for proc in procs:
            assert stop(proc) == 0
        client.close()

    assert first["version"] == STATUS_DOCUMENT_VERSION
    assert standby_seen["replica"] == "pod-1"
    worker = first["workers"][0]
    assert worker["name"] == "shop.status"
    assert worker["schedule"] == "every 300ms (rate)"
    holder = lease[b"owner"].decode().rsplit(":", 1)[0]
    assert worker["leaseHolder"] == holder
    assert holder in ("pod-0", "pod-1")
    # Both replicas — the holder and the standby — answer alike, from Redis.
    a, b = (d["workers"][0] for d in later if d is not None)
    assert a["leaseHolder"] == b["leaseHolder"] == holder
    assert int(lease[b"token"]) == a["fencingToken"] or int(lease[b"token"]) == b["fencingToken"]
    # The run moved on meanwhile: a later slot, a later success, the next slot after it.
    assert _when(a["lastScheduleTime"]) > _when(worker["lastScheduleTime"])
    assert _when(a["lastSuccessfulTime"]) > _when(worker["lastSuccessfulTime"])
    assert _when(a["nextScheduleTime"]) > _when(a["lastScheduleTime"])
    assert _when(a["nextScheduleTime"]) - _when(a["lastScheduleTime"]) == pytest.approx(
        0.3, abs=0.31
    )
    assert float(status[b"slot"]) >= _when(a["lastScheduleTime"]) - 0.001


def test_a_failing_worker_s_status_says_failure_and_keeps_no_success(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    port = free_port()
    proc = _replica(redis_server, FAILING, "pod-0", port, tmp_path)
    try:
        document = wait_until(
            lambda: (d := _document(port)) and d["workers"][0]["lastRunEndTime"] and d,
            timeout=20,
            what="a finished run in the document",
        )
    finally:
        assert stop(proc) == 0
    worker = document["workers"][0]
    assert worker["lastOutcome"] == "failure"
    assert worker["lastSuccessfulTime"] is None
    assert worker["leaseHolder"] == "pod-0"
    assert worker["fencingToken"] > 0


def test_the_status_answers_503_naming_the_cause_while_redis_is_down(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    port = free_port()
    proc = _replica(redis_server, TICKER, "pod-0", port, tmp_path)
    try:
        wait_until(lambda: _document(port), timeout=20, what="the document")
        redis_server.stop()
        code, body = wait_until(
            lambda: (r := http_get(port, "/status", timeout=10))[0] != 200 and r,
            timeout=20,
            what="a refusal while Redis is down",
        )
    finally:
        stop(proc)
    assert code == 503
    assert body.startswith("cannot read the status") or "not read within" in body
    assert len(body.strip().splitlines()) == 1
