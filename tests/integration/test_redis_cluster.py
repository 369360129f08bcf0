"""Redis Cluster for real: 50 workers over the slots of three primaries, one primary killed.

Three primaries made by ``redis-cli --cluster create`` (``tests/support/redis_ha.py``), with
or without one replica each; two ``tickwork run`` processes, each running the same 50 fenced
tickers (every worker's keys share its hash tag, so each worker lives on one primary). The
primary that serves worker 0 is SIGKILLed:

* with replicas, its replica takes over and the workers it serves run again;
* without, the workers on its slots pause and the others go on; once it is started again
  (its AOF kept), its workers resume.

``TICKWORK_HA_KILLS`` (1 in ``make test``) repeats the kill on the primary that serves worker
0 at that moment.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.chaos import Execution, Fault, check, executions_from
from tests.support.processes import (
    TICKWORK,
    RedisServer,
    read_events,
    start_tickwork,
    stop,
    wait_until,
)
from tests.support.redis_ha import ClusterDeployment
from tests.workers.fenced_ticker import read_store
from worker_runtime.keys import WorkerKeys
from worker_runtime.leases import SlotClaim
from worker_runtime.leasing import LeaseTiming
from worker_runtime.outcomes import ClaimResult
from worker_runtime.pipelining import NotReplicated
from worker_runtime.redis_leases import RedisLeases

KILLS = int(os.environ.get("TICKWORK_HA_KILLS", "1"))
WORKERS = [f"FencedTicker{i:02d}" for i in range(50)]
PERIOD = 1.0
TTL = 3.0
# How long the test watches the workers after a kill (and, without replicas, after the
# restart): the lost workers' TTL, one period, and the cluster's failover (node timeout 1 s).
WATCH = TTL + 2 * PERIOD + 3.0
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(90 + KILLS * 60)]


def _start_processes(cluster: ClusterDeployment, tmp_path: Path) -> list[subprocess.Popen[bytes]]:
    specs = [f"tests.workers.fenced_ticker:{name}" for name in WORKERS]
    return [
        start_tickwork(
            [
                "run",
                *specs,
                "--redis-url",
                cluster.url,
                "--lease-ttl",
                f"{TTL}s",
                "--replica-id",
                f"p{i}",
                "--metrics-port",
                "0",
            ],
            env={
                "TICKWORK_TEST_LOG": str(tmp_path / "events.jsonl"),
                "TICKWORK_TEST_STORE": str(tmp_path / "store.sqlite3"),
            },
            log_path=tmp_path / f"p{i}.log",
        )
        for i in range(2)
    ]


def _started(
    tmp_path: Path, *, replicas_per_primary: int
) -> tuple[ClusterDeployment, list[subprocess.Popen[bytes]]]:
    """The cluster and the two processes, once every worker has run twice."""
    cluster = ClusterDeployment(tmp_path / "cluster", replicas_per_primary=replicas_per_primary)
    cluster.start()
    procs = _start_processes(cluster, tmp_path)
    try:
        wait_until(
            lambda: all(len(r) >= 2 for r in _runs(tmp_path).values()),
            timeout=60,
            what="every worker to run twice",
        )
    except BaseException:
        for proc in procs:
            stop(proc)
        cluster.stop()
        raise
    return cluster, procs


def _runs(tmp_path: Path) -> dict[str, list[Execution]]:
    events = read_events(tmp_path / "events.jsonl")
    return {name: executions_from(events, worker=name) for name in WORKERS}


def _started_between(runs: list[Execution], lo: float, hi: float) -> list[Execution]:
    return [r for r in runs if lo <= r.start < hi]


def _check_every_worker(
    tmp_path: Path, faults: list[Fault], end_of_run: float, *, strict: bool
) -> tuple[int, int, int]:
    """Overlaps, slots run twice and token regressions over every worker; the fenced store
    never took a lower token (asserted always), the counts only when ``strict``."""
    totals = [0, 0, 0]
    for name, runs in _runs(tmp_path).items():
        assert runs, f"{name} never ran"
        verdict = check(
            runs, faults, period=PERIOD, anchor=runs[0].slot, ttl=TTL, end_of_run=end_of_run
        )
        totals[0] += len(verdict.overlaps)
        totals[1] += len(verdict.duplicates)
        totals[2] += len(verdict.token_regressions)
    writes, refused = read_store(str(tmp_path / "store.sqlite3"))
    for name in WORKERS:
        tokens = [token for token, worker in writes if worker == name]
        assert all(a <= b for a, b in itertools.pairwise(tokens)), f"{name}: {tokens}"
    assert all(token < seen for token, seen, _ in refused)
    if strict:
        assert totals == [0, 0, 0], totals
    return totals[0], totals[1], totals[2]


def _victims(cluster: ClusterDeployment) -> tuple[RedisServer, set[str]]:
    victim = cluster.primary_of(WorkerKeys(WORKERS[0]).lease)
    names = {n for n in WORKERS if cluster.primary_of(WorkerKeys(n).lease) is victim}
    return victim, names


def test_with_replicas_the_workers_of_a_killed_primary_run_again_on_its_replica(
    tmp_path: Path,
) -> None:
    cluster, procs = _started(tmp_path, replicas_per_primary=1)
    faults: list[Fault] = []
    resumes: list[float] = []
    try:
        for _ in range(KILLS):
            victim, lost = _victims(cluster)
            assert 0 < len(lost) < len(WORKERS)
            at = cluster.kill(victim)
            faults.append(Fault("redis", at, at))
            time.sleep(WATCH)
            runs = _runs(tmp_path)
            for name in WORKERS:
                after = _started_between(runs[name], at, at + WATCH)
                assert after, f"{name} did not run again within {WATCH:g}s of the kill"
                if name in lost:
                    resumes.append(after[0].start - at)
                else:
                    assert len(after) >= WATCH / PERIOD - 3, f"{name} ran {len(after)} times"
            cluster.restart_as_replica(victim)
    finally:
        for proc in procs:
            stop(proc)
        end_of_run = time.time()
        cluster.stop()
    counts = _check_every_worker(tmp_path, faults, end_of_run, strict=False)
    print(
        f"\ncluster with replicas: {KILLS} primary kill(s); the lost primary's workers ran "
        f"again after median {statistics.median(resumes):.2f}s, max {max(resumes):.2f}s; "
        f"overlaps, slots run twice, token regressions: {counts}"
    )


def test_without_replicas_the_workers_of_a_killed_primary_pause_and_the_others_go_on(
    tmp_path: Path,
) -> None:
    cluster, procs = _started(tmp_path, replicas_per_primary=0)
    faults: list[Fault] = []
    try:
        for _ in range(KILLS):
            victim, lost = _victims(cluster)
            at = cluster.kill(victim)
            time.sleep(WATCH)
            back = time.time()
            runs = _runs(tmp_path)
            for name in WORKERS:
                # A run already claimed when the primary died may still start a moment later.
                after = _started_between(runs[name], at + PERIOD, back)
                if name in lost:
                    assert not after, f"{name} ran while its primary was down"
                else:
                    assert len(after) >= WATCH / PERIOD - 3, f"{name} ran {len(after)} times"
            victim.start()
            faults.append(Fault("redis", at, time.time()))
            time.sleep(WATCH)
            runs = _runs(tmp_path)
            for name in lost:
                assert _started_between(runs[name], back, back + WATCH), (
                    f"{name} did not resume after its primary came back"
                )
    finally:
        for proc in procs:
            stop(proc)
        end_of_run = time.time()
        cluster.stop()
    counts = _check_every_worker(tmp_path, faults, end_of_run, strict=True)
    print(f"\ncluster without replicas: overlaps, slots run twice, token regressions: {counts}")


def test_tickwork_status_reads_the_records_of_workers_on_every_primary(tmp_path: Path) -> None:
    cluster = ClusterDeployment(tmp_path / "cluster")
    cluster.start()
    names = WORKERS[:12]
    log = tmp_path / "events.jsonl"
    try:
        proc = start_tickwork(
            ["run", *(f"tests.workers.fenced_ticker:{n}" for n in names),
             "--redis-url", cluster.url, "--metrics-port", "0"],
            env={"TICKWORK_TEST_LOG": str(log),
                 "TICKWORK_TEST_STORE": str(tmp_path / "store.sqlite3")},
            log_path=tmp_path / "tickwork.log",
        )  # fmt: skip
        try:
            wait_until(
                lambda: (
                    {e["worker"] for e in read_events(log) if e["event"] == "end"} >= set(names)
                ),
                timeout=30,
                what="every worker to run",
            )
        finally:
            stop(proc)
        primaries = {cluster.primary_of(WorkerKeys(n).lease).port for n in names}
        status = subprocess.run(
            [TICKWORK, "status", "--redis-url", cluster.url, "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": os.environ["PATH"]},
        )
    finally:
        cluster.stop()
    assert status.returncode == 0, status.stderr
    records = json.loads(status.stdout)
    assert len(primaries) == 3  # twelve workers' hash tags fall on every primary
    assert set(records) == set(names)
    assert all(r["outcome"] == "success" for r in records.values())


async def test_durable_writes_wait_for_the_replica_of_each_workers_own_primary(
    tmp_path: Path,
) -> None:
    cluster = ClusterDeployment(tmp_path / "cluster", replicas_per_primary=1)
    cluster.start()
    timing = LeaseTiming(ttl_seconds=TTL)
    leases = RedisLeases.from_url(cluster.url, password=None, timing=timing, durable_writes=True)
    try:
        lease = {name: leases.for_worker(name) for name in WORKERS}
        tokens = dict(
            zip(
                WORKERS,
                await asyncio.gather(*(lease[n].acquire("a", TTL) for n in WORKERS)),
                strict=True,
            )
        )
        assert all(tokens.values())
        victim, frozen = _victims(cluster)
        (replica,) = cluster.replicas_of(victim)
        assert replica.proc is not None
        now = leases.now()
        replica.proc.send_signal(signal.SIGSTOP)
        try:
            results = await asyncio.gather(
                *(
                    lease[n].claim(
                        "a",
                        SlotClaim(slot=now, anchor=now, token=tokens[n] or 0, replica_id="a",
                                  started_at=now),
                    )
                    for n in WORKERS
                ),
                return_exceptions=True,
            )  # fmt: skip
        finally:
            replica.proc.send_signal(signal.SIGCONT)
    finally:
        await leases.aclose()
        cluster.stop()
    outcome = dict(zip(WORKERS, results, strict=True))
    # One pipeline carried all fifty claims; only the frozen replica's primary lacked the
    # acknowledgement, so only its workers' claims were refused.
    assert {n for n, r in outcome.items() if isinstance(r, NotReplicated)} == frozen
    assert all(outcome[n] is ClaimResult.CLAIMED for n in WORKERS if n not in frozen)
