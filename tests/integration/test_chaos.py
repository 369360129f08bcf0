"""Three replicas, random SIGKILL/SIGTERM, one Redis restart: exactly one run per slot.

``make test`` runs it for at least 1,000 ticks; ``make chaos`` for 10,000
(``TICKWORK_CHAOS_TICKS``).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

from tests.support.chaos import Fault, check, executions_from
from tests.support.processes import RedisServer, read_events, start_tickwork, stop, wait_until
from worker_runtime.keys import WorkerKeys

TICKS = int(os.environ.get("TICKWORK_CHAOS_TICKS", "1000"))
PERIOD = 0.1
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(TICKS * PERIOD * 4 + 120),
]
TTL = 1.0
WORKER = "chaos"
W = "tests.workers.sample:Ticker"


def _holder(client: redis.Redis) -> str | None:
    try:
        owner = client.hget(WorkerKeys(WORKER).lease, "owner")
    except redis.RedisError:
        return None
    return owner.decode().rsplit(":", 1)[0] if owner else None


def test_chaos_no_overlap_no_slot_twice_and_misses_only_inside_failover_windows(
    tmp_path: Path,
) -> None:
    rng = random.Random(int(os.environ.get("TICKWORK_CHAOS_SEED", "7")))
    server = RedisServer(tmp_path / "redis")
    server.start()
    client = redis.Redis.from_url(server.url, socket_timeout=1)
    log = tmp_path / "events.jsonl"
    generations = [0, 0, 0]
    procs: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}

    def launch(index: int) -> None:
        generations[index] += 1
        replica = f"r{index}.{generations[index]}"
        procs[index] = (
            replica,
            start_tickwork(
                ["run", W, "--name", WORKER, "--period", f"{PERIOD}s", "--mode", "rate",
                 "--redis-url", server.url, "--lease-ttl", f"{TTL}s", "--replica-id", replica,
                 "--shutdown-grace", "5s", "--metrics-port", "0"],
                env={"TICKWORK_TEST_LOG": str(log), "TICKWORK_TEST_WORK": "0.02"},
                log_path=tmp_path / f"{replica}.log",
            ),
        )  # fmt: skip
        # A signal that arrives while the interpreter is still importing (2-3 s on a busy
        # machine) meets Python's default handler, not tickwork's: wait until the replica
        # runs (its signal handlers are installed before it logs "running").
        wait_until(
            lambda: " running " in (tmp_path / f"{replica}.log").read_text(),
            timeout=30,
            what=f"{replica} to start",
        )

    def starts() -> int:
        return sum(1 for e in read_events(log) if e["event"] == "start")

    faults: list[Fault] = []
    kill_times: dict[str, list[float]] = {}
    failovers: dict[str, list[float]] = {"kill": [], "term": []}
    pending: list[
        tuple[str, str, float]
    ] = []  # (kind, victim, at) awaiting the next tick elsewhere
    redis_restarted = False
    try:
        for i in range(3):
            launch(i)
        wait_until(lambda: starts() > 0, timeout=20, what="the first tick")
        budget = time.monotonic() + TICKS * PERIOD * 4 + 60
        while starts() < TICKS:
            assert time.monotonic() < budget, (
                f"only {starts()} ticks before the time budget ran out"
            )
            time.sleep(rng.uniform(1.0, 2.5))
            if not redis_restarted and starts() > TICKS // 2:
                at = time.time()
                server.restart()
                faults.append(Fault("redis", at, time.time()))
                redis_restarted = True
                continue
            holder = _holder(client)
            by_name = {name: i for i, (name, _) in procs.items()}
            index = (
                by_name[holder] if holder in by_name and rng.random() < 0.7 else rng.randrange(3)
            )
            replica, proc = procs[index]
            kind = rng.choice(["kill", "term"])
            at = time.time()
            proc.send_signal(signal.SIGKILL if kind == "kill" else signal.SIGTERM)
            code = proc.wait(timeout=15)
            if kind == "term":
                assert code == 0, f"{replica} exited {code} after SIGTERM"
            faults.append(Fault(kind, at, time.time(), replica))
            if kind == "kill":
                kill_times.setdefault(replica, []).append(at)
            if replica == holder:
                pending.append((kind, replica, at))
            time.sleep(rng.uniform(0.2, 0.8))
            launch(index)
        anchor = float(client.hget(WorkerKeys(WORKER).schedule, "anchor") or 0)
    finally:
        hung = []
        for replica_name, proc in procs.values():
            try:
                stop(proc)
            except subprocess.TimeoutExpired:  # killed, so that none outlives the test
                hung.append(replica_name)
                proc.kill()
                proc.wait()
        end_of_run = time.time()
        client.close()
        server.stop()
    assert not hung, f"replicas {hung} did not exit within 30 s of SIGTERM"

    executions = executions_from(read_events(log))
    for kind, victim, at in pending:
        later = [x.start for x in executions if x.start > at and x.replica != victim]
        if later:
            failovers[kind].append(min(later) - at)
    verdict = check(
        executions,
        faults,
        period=PERIOD,
        anchor=anchor,
        ttl=TTL,
        end_of_run=end_of_run,
        kill_times=kill_times,
    )
    print(f"\nchaos: {verdict.summary()}; {len(faults)} faults")
    if not verdict.ok:
        kept = Path(tempfile.mkdtemp(prefix="tickwork-chaos-failure-"))
        shutil.copytree(tmp_path, kept, dirs_exist_ok=True)
        print(f"chaos: logs kept in {kept}")
    for kind, times in failovers.items():
        if times:
            print(
                f"failover after {kind.upper()} of the holder: "
                f"median {statistics.median(times) * 1000:.0f} ms, "
                f"max {max(times) * 1000:.0f} ms over {len(times)} takeovers"
            )
    assert verdict.executions >= TICKS
    assert not verdict.overlaps, verdict.overlaps[:3]
    assert not verdict.duplicates, verdict.duplicates[:3]
    assert not verdict.token_regressions, verdict.token_regressions[:3]
    assert not verdict.unexplained_misses, verdict.unexplained_misses[:10]
    assert failovers["kill"] and failovers["term"], "both kinds of takeover were measured"
    assert max(failovers["kill"]) <= TTL + PERIOD + 0.3
    assert max(failovers["term"]) <= 2 * PERIOD + 0.3
