"""``tickwork_tick_lateness_seconds`` tells the lateness the work itself feels."""

from __future__ import annotations

import bisect
from pathlib import Path

import pytest

from tests.support.processes import (
    RedisServer,
    free_port,
    http_get,
    read_events,
    start_tickwork,
    stop,
    wait_until,
)
from worker_runtime.metrics import LATENESS_BUCKETS

pytestmark = pytest.mark.integration
W = "tests.workers.sample:Ticker"
REPLICAS = 3
TICKS = 120


def _histogram(port: int) -> list[float]:
    """The cumulative lateness bucket counts of one replica, in ``LATENESS_BUCKETS`` order."""
    counts: dict[float, float] = {}
    for line in http_get(port, "/metrics")[1].splitlines():
        if line.startswith("tickwork_tick_lateness_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            counts[float(le)] = float(line.rsplit(" ", 1)[1])
    return [counts[b] for b in (*LATENESS_BUCKETS, float("inf"))]


def test_the_lateness_metric_puts_ticks_in_the_bucket_of_the_lateness_measured_in_do_work(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    logs = [tmp_path / f"events-{i}.jsonl" for i in range(REPLICAS)]
    ports = [free_port() for _ in range(REPLICAS)]
    procs = [
        start_tickwork(
            ["run", W, "--period", "100ms", "--redis-url", redis_server.url,
             "--replica-id", f"r{i}", "--metrics-port", str(ports[i]),
             "--metrics-host", "127.0.0.1"],
            env={"TICKWORK_TEST_LOG": str(logs[i])},
        )
        for i in range(REPLICAS)
    ]  # fmt: skip
    try:
        wait_until(
            lambda: sum(len(read_events(p)) for p in logs) >= 2 * TICKS,
            timeout=60,
            what=f"{TICKS} ticks",
        )
        # Lateness is observed just before do_work writes its start line, in the same
        # event-loop turn: the first `count` start lines of a replica are the ticks counted.
        histograms = [_histogram(port) for port in ports]
        measured: list[float] = []
        for log, histogram in zip(logs, histograms, strict=True):
            starts = [e for e in read_events(log) if e["event"] == "start"]
            count = round(histogram[-1])
            assert len(starts) >= count
            measured += [max(0.0, e["time"] - e["slot"]) for e in starts[:count]]
    finally:
        for proc in procs:
            stop(proc)
    total = len(measured)
    assert total >= TICKS
    # A tick measured in bucket i but counted in bucket j (i != j) moves every cumulative
    # count between them by one: a cumulative difference of d means at least d ticks are in
    # the wrong bucket. At most 5 % of the ticks may be.
    bounds = (*LATENESS_BUCKETS, float("inf"))
    measured_counts = [0] * len(bounds)
    for lateness in measured:
        measured_counts[bisect.bisect_left(bounds, lateness)] += 1
    cumulative = [sum(measured_counts[: i + 1]) for i in range(len(bounds))]
    metric = [sum(h[i] for h in histograms) for i in range(len(bounds))]
    worst = max(abs(m - c) for m, c in zip(metric, cumulative, strict=True))
    assert worst <= 0.05 * total, (
        f"metric {metric} vs measured in do_work {cumulative} (buckets {bounds}), {total} ticks"
    )
