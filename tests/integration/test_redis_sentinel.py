"""Redis Sentinel for real: three worker replicas, the Redis primary SIGKILLed during ticks.

A primary, two replicas and three sentinels (``tests/support/redis_ha.py``); three
``tickwork run`` replicas of a fenced ticker on ``redis+sentinel://``. The primary is killed
``TICKWORK_HA_KILLS`` times (3 in ``make test``, more in ``make chaos``), each time once the
killed server is back as a replica and the worker ticks again. Counted, with and without
durable writes: overlaps, slots run twice, fencing-token regressions, the time until the
worker ran again, and what the fenced store refused.
"""

from __future__ import annotations

import itertools
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.chaos import Fault, Verdict, check, executions_from
from tests.support.processes import read_events, start_tickwork, stop, wait_until
from tests.support.redis_ha import SentinelDeployment
from tests.workers.fenced_ticker import read_store
from worker_runtime.keys import WorkerKeys

KILLS = int(os.environ.get("TICKWORK_HA_KILLS", "3"))
PERIOD = 0.2
TTL = 2.0
WORKER = "sentinel-ticker"
W = "tests.workers.fenced_ticker:FencedTicker"
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(60 + KILLS * 40)]


@dataclass
class Run:
    verdict: Verdict
    failovers: list[float]  # kill → the sentinels name a new primary
    resumes: list[float]  # kill → the next run's start
    refused: list[tuple[int, int, str]]
    regressions_in_store: int


def _run(tmp_path: Path, *, durable: bool) -> Run:
    deployment = SentinelDeployment(tmp_path / "redis")
    deployment.start()
    log = tmp_path / "events.jsonl"
    store = tmp_path / "store.sqlite3"
    procs: list[subprocess.Popen[bytes]] = []
    faults: list[Fault] = []
    failovers: list[float] = []
    kill_times: list[float] = []

    def starts() -> int:
        return sum(1 for e in read_events(log) if e["event"] == "start")

    try:
        for i in range(3):
            replica = f"r{i}"
            procs.append(
                start_tickwork(
                    ["run", W, "--name", WORKER, "--period", f"{PERIOD}s",
                     "--redis-url", deployment.url, "--lease-ttl", f"{TTL}s",
                     "--redis-durable-writes", str(durable).lower(),
                     "--replica-id", replica, "--metrics-port", "0"],
                    env={"TICKWORK_TEST_LOG": str(log), "TICKWORK_TEST_STORE": str(store),
                         "TICKWORK_TEST_WORK": "0.02"},
                    log_path=tmp_path / f"{replica}.log",
                )
            )  # fmt: skip
        wait_until(lambda: starts() >= 10, timeout=30, what="the first ticks")
        for _ in range(KILLS):
            server, at, promoted = deployment.kill_primary()
            faults.append(Fault("redis", at, promoted))
            failovers.append(promoted - at)
            kill_times.append(at)
            deployment.restart(server)
            seen = starts()
            wait_until(lambda n=seen: starts() >= n + 10, timeout=30, what="ticks after a kill")  # type: ignore[misc]
        anchor = deployment.read_anchor(WorkerKeys(WORKER).schedule)
    finally:
        for proc in procs:
            stop(proc)
        end_of_run = time.time()
        deployment.stop()
    executions = executions_from(read_events(log))
    verdict = check(
        executions,
        faults,
        period=PERIOD,
        anchor=anchor,
        ttl=TTL,
        end_of_run=end_of_run,
    )
    resumes = [min(x.start for x in executions if x.start > at) - at for at in kill_times]
    writes, refused = read_store(str(store))
    tokens = [token for token, _ in writes]
    regressions = sum(1 for a, b in itertools.pairwise(tokens) if b < a)
    if not verdict.ok:
        kept = Path(tempfile.mkdtemp(prefix="tickwork-sentinel-"))
        shutil.copytree(tmp_path, kept, dirs_exist_ok=True)
        print(f"logs kept in {kept}")
    print(
        f"\nsentinel, durable writes {'on' if durable else 'off'}: {verdict.summary()}; "
        f"{KILLS} primary kills; failover (kill → new primary named) median "
        f"{statistics.median(failovers):.2f}s max {max(failovers):.2f}s; worker ran again "
        f"after median {statistics.median(resumes):.2f}s max {max(resumes):.2f}s; fenced "
        f"store: {len(writes)} writes accepted, {len(refused)} refused, {regressions} "
        "accepted with a lower token"
    )
    return Run(verdict, failovers, resumes, refused, regressions)


def _assert_resumes_and_fences(run: Run) -> None:
    # The store never takes a lower token than one it has accepted: the guarantee that holds
    # whatever a failover lost.
    assert run.regressions_in_store == 0
    assert all(token < seen for token, seen, _ in run.refused)
    # The holder's renewals fail while no primary is named; once one is, the next renewal or
    # acquisition (after a back-off of at most the TTL) reaches it, and the next slot runs.
    for failover, resume in zip(run.failovers, run.resumes, strict=True):
        assert resume <= failover + TTL + PERIOD + 0.5, (failover, resume)


def test_with_durable_writes_a_primary_killed_during_ticks_never_makes_a_slot_run_twice(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path, durable=True)
    assert run.verdict.executions > 10 * (KILLS + 1)
    assert not run.verdict.overlaps, run.verdict.overlaps[:3]
    assert not run.verdict.duplicates, run.verdict.duplicates[:3]
    assert not run.verdict.token_regressions, run.verdict.token_regressions[:3]
    assert not run.verdict.unexplained_misses, run.verdict.unexplained_misses[:5]
    _assert_resumes_and_fences(run)


def test_without_durable_writes_the_fenced_store_still_never_goes_back(tmp_path: Path) -> None:
    run = _run(tmp_path, durable=False)
    assert run.verdict.executions > 10 * (KILLS + 1)
    _assert_resumes_and_fences(run)
