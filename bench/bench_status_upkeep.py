"""The operator's status upkeep with many BackgroundWorkers (issue 15, point 4).

Against the project's test control plane (kwok nodes: pods show Ready without running), it
applies WORKERS BackgroundWorkers of one replica, runs ``tickwork-operator`` as a process
with ``--status-refresh REFRESH``, waits until every worker is Ready, and then measures over
SECONDS: the operator's Kubernetes API requests per second (its own client; kopf's watches
are streams, not counted), its status-document reads per second by result, and its CPU share
of one core. kwok's pod addresses answer nothing, so every read fails and backs off: this is
the upkeep of a fleet whose pods cannot be reached. The cost of a read that succeeds is
measured apart, against one real ``tickwork run`` status server (``--reads``).

Run (control plane up: ``TICKWORK_REAL_NODE=0 make cluster-up``):
``.venv/bin/python bench/bench_status_upkeep.py [WORKERS] [SECONDS] [REFRESH]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import KUBECTL, PROJECT_KUBECONFIG
from tests.support.processes import RedisServer, free_port, start_tickwork, stop, wait_until
from worker_operator.metrics import OperatorMetrics
from worker_operator.observing import PodAddress, StatusReader
from worker_operator.queueing import Backoff

REPO = Path(__file__).resolve().parents[1]
_TICKS = os.sysconf("SC_CLK_TCK")


def kubectl(*args: str, stdin: str | None = None) -> str:
    env = {**os.environ, "KUBECONFIG": str(PROJECT_KUBECONFIG)}
    result = subprocess.run(
        [str(KUBECTL), *args], input=stdin, capture_output=True, text=True, env=env, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def sums(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tickwork_operator_api_requests_total":
                key = f"api {sample.labels['method']} {sample.labels['resource']}"
            elif sample.name == "tickwork_operator_status_reads_total":
                key = f"reads {sample.labels['result']}"
            else:
                continue
            out[key] = out.get(key, 0.0) + sample.value
    return out


def worker(name: str, namespace: str) -> dict[str, object]:
    return {
        "apiVersion": "tickwork.dev/v1alpha1",
        "kind": "BackgroundWorker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": "tickwork/example-worker:0.1.0",
            "worker": "examples.passive_users:PassiveUserCheckerWorker",
            "schedule": {"period": "1m"},
            "replicas": 1,
            "redis": {"url": "redis://redis.invalid:6379/0"},
        },
    }


def fleet(workers: int, seconds: float, refresh: str) -> None:
    namespace = f"bench-status-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    log = Path(tempfile.mkdtemp()) / "operator.log"
    port = free_port()
    try:
        for start in range(0, workers, 200):
            items = [
                worker(f"w{i:04d}", namespace) for i in range(start, min(workers, start + 200))
            ]
            kubectl(
                "apply",
                "-f",
                "-",
                stdin=json.dumps({"kind": "List", "apiVersion": "v1", "items": items}),
            )
        env = {**os.environ, "KUBECONFIG": str(PROJECT_KUBECONFIG), "POD_NAME": "bench-op"}
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "worker_operator",
                    f"--namespace={namespace}",
                    f"--http-port={port}",
                    "--http-host=127.0.0.1",
                    "--no-leader-election",
                    f"--status-refresh={refresh}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
            )
        try:

            def ready() -> bool:
                listing = json.loads(kubectl("get", "bgw", "-n", namespace, "-o", "json"))
                return (
                    sum(
                        1
                        for item in listing["items"]
                        if any(
                            c["type"] == "Ready" and c["status"] == "True"
                            for c in item.get("status", {}).get("conditions", [])
                        )
                    )
                    == workers
                )

            began = time.monotonic()
            wait_until(ready, timeout=1800, interval=5, what="every worker Ready")
            print(f"{workers} workers Ready after {time.monotonic() - began:.0f} s")
            time.sleep(60)  # past the first reads and their first backoff
            before, cpu0, t0 = sums(port), cpu_seconds(proc.pid), time.monotonic()
            time.sleep(seconds)
            after, cpu1, t1 = sums(port), cpu_seconds(proc.pid), time.monotonic()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")
    window = t1 - t0
    print(f"window {window:.0f} s, --status-refresh={refresh}")
    print(f"operator CPU: {(cpu1 - cpu0) / window * 100:.1f} % of one core")
    total = 0.0
    for key in sorted(set(after) | set(before)):
        rate = (after.get(key, 0) - before.get(key, 0)) / window
        if key.startswith("api"):
            total += rate
        if rate:
            print(f"  {key}: {rate:.2f}/s")
    print(f"  API requests in all: {total:.2f}/s")


async def successful_reads(count: int) -> None:
    """CPU of the operator side of ``count`` successful reads of a real status server."""
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis")
        server.start()
        port = free_port()
        proc = start_tickwork(
            [
                "run",
                "tests.workers.sample:Ticker",
                "--name",
                "bench.reads",
                "--period",
                "1s",
                "--redis-url",
                server.url,
                "--metrics-port",
                str(port),
            ],
        )
        reader = StatusReader(
            timeout_seconds=2.0,
            backoff=Backoff(initial_seconds=30, max_seconds=300),
            metrics=OperatorMetrics(CollectorRegistry()),
        )
        try:
            pod = [PodAddress("pod", "127.0.0.1")]
            for _ in range(200):
                if await reader.read(("b", "r"), "bench.reads", pod, port=port) is not None:
                    break
                reader.forget(("b", "r"))
                await asyncio.sleep(0.1)
            cpu0, t0 = time.process_time(), time.monotonic()
            for _ in range(count):
                assert await reader.read(("b", "r"), "bench.reads", pod, port=port) is not None
            cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        finally:
            await reader.close()
            stop(proc)
            server.stop()
    print(
        f"{count} successful status reads: {cpu / count * 1000:.2f} ms operator CPU and "
        f"{wall / count * 1000:.2f} ms wall each"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--reads"]:
        asyncio.run(successful_reads(int(sys.argv[2]) if len(sys.argv) > 2 else 1000))
    else:
        fleet(
            int(sys.argv[1]) if len(sys.argv) > 1 else 1000,
            float(sys.argv[2]) if len(sys.argv) > 2 else 120.0,
            sys.argv[3] if len(sys.argv) > 3 else "30s",
        )
