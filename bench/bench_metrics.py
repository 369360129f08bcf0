"""What the metrics cost: per-tick instrumentation, and rendering ``/metrics``.

Run: ``make bench`` (or ``.venv/bin/python bench/bench_metrics.py``). Prints medians.

1. Per tick, the runner (worker_runtime/running.py) makes these metric calls:
   ``next_scheduled.set`` (planning the slot), ``lateness.observe``, ``in_progress.inc``,
   ``in_progress.dec`` and ``tick_finished`` (a counter, a histogram, one or two gauges).
   The same call sequence is timed on the real ``WorkerMetrics`` and on no-op stand-ins
   with the same shape; the difference is the instrumentation's cost per tick.
2. ``generate_latest`` on a registry like the one ``tickwork run`` serves (process, platform
   and GC collectors plus the tickwork families, ``_created`` samples disabled) with enough
   workers for about 1,000 tickwork series.
3. The memory the metrics of 1,000 workers take: ``tracemalloc``'s traced size after building
   ``Metrics`` and ``for_worker`` for each (bench_many_workers.py's process runs 1,000).
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from worker_runtime.metrics import Metrics, WorkerMetrics

REPEATS = 9
TICKS_PER_REPEAT = 100_000
RENDERS_PER_REPEAT = 50
TARGET_SERIES = 1_000
MEMORY_WORKERS = 1_000


class _Noop:
    """Stands in for a metric child: same methods, no work."""

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


def _noop_worker_metrics() -> WorkerMetrics:
    """The real ``WorkerMetrics`` (same ``tick_finished``) with no-op children: the baseline.

    Built from the fields of a real one, so a metric added to ``WorkerMetrics`` is stood in
    for too."""
    noop: Any = _Noop()
    real = Metrics(CollectorRegistry()).for_worker("shape")
    children = {
        f.name: dict.fromkeys(value, noop) if isinstance(value, dict) else noop
        for f in dataclasses.fields(real)
        for value in [getattr(real, f.name)]
    }
    return WorkerMetrics(**children)


def _ticks(wm: WorkerMetrics, count: int) -> None:
    """``count`` ticks' metric calls, in running.py's order."""
    slot = 1_700_000_000.0
    for _ in range(count):
        wm.next_scheduled.set(slot)
        wm.lateness.observe(max(0.0, 0.0012))
        wm.in_progress.inc()
        wm.in_progress.dec()
        wm.tick_finished("success", duration=0.0042, ended_at=slot + 0.0054)
        slot += 0.2


def _median_seconds(run: Callable[[], None]) -> float:
    """The median wall time of ``run`` over ``REPEATS`` (garbage collection paused)."""
    times = []
    for _ in range(REPEATS):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return statistics.median(times)


def bench_tick_instrumentation() -> None:
    registry = CollectorRegistry()
    real = Metrics(registry).for_worker("bench")
    noop = _noop_worker_metrics()
    _ticks(real, 1_000)  # warm up
    _ticks(noop, 1_000)
    real_s = _median_seconds(lambda: _ticks(real, TICKS_PER_REPEAT))
    noop_s = _median_seconds(lambda: _ticks(noop, TICKS_PER_REPEAT))
    real_ns = real_s / TICKS_PER_REPEAT * 1e9
    noop_ns = noop_s / TICKS_PER_REPEAT * 1e9
    assert (
        registry.get_sample_value("tickwork_ticks_total", {"worker": "bench", "outcome": "success"})
        == 1_000 + REPEATS * TICKS_PER_REPEAT
    )
    print(f"per-tick instrumentation ({TICKS_PER_REPEAT:,} ticks x {REPEATS} repeats, medians):")
    print(f"  real metric calls   {real_ns:8.0f} ns/tick")
    print(f"  no-op baseline      {noop_ns:8.0f} ns/tick")
    print(f"  instrumentation     {real_ns - noop_ns:8.0f} ns/tick")


def _series(registry: CollectorRegistry, prefix: str = "") -> int:
    return sum(
        1
        for family in registry.collect()
        for sample in family.samples
        if sample.name.startswith(prefix)
    )


def bench_render() -> None:
    disable_created_metrics()  # as `tickwork run` does
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    metrics = Metrics(registry)
    base = _series(registry, "tickwork_")
    per_worker = _series_per_worker()
    workers = max(1, round((TARGET_SERIES - base) / per_worker))
    for n in range(workers):
        wm = metrics.for_worker(f"worker-{n:03d}")
        _ticks(wm, 50)  # realistic values, not all zeros
    tickwork_series = _series(registry, "tickwork_")
    all_series = _series(registry)
    body = generate_latest(registry)

    def renders() -> None:
        for _ in range(RENDERS_PER_REPEAT):
            generate_latest(registry)

    seconds = _median_seconds(renders)
    per_render_ms = seconds / RENDERS_PER_REPEAT * 1e3
    print(
        f"/metrics render (generate_latest, {RENDERS_PER_REPEAT} renders x {REPEATS} repeats, "
        "median):"
    )
    print(
        f"  {workers} workers x {per_worker} series + {base} shared = "
        f"{tickwork_series} tickwork series ({all_series} with process/platform/GC)"
    )
    print(f"  {per_render_ms:.2f} ms per render, {len(body) / 1024:.0f} KiB")
    print(f"  {per_render_ms * 1e6 / all_series:.0f} ns per series")


def _series_per_worker() -> int:
    disable_created_metrics()
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    before = _series(registry)
    metrics.for_worker("one")
    return _series(registry) - before


def bench_memory() -> None:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        metrics = Metrics(CollectorRegistry())
        for n in range(MEMORY_WORKERS):
            metrics.for_worker(f"worker-{n:04d}")
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    print(f"memory of Metrics + {MEMORY_WORKERS:,} workers (tracemalloc, traced):")
    print(f"  {traced / 2**20:.2f} MiB, {traced / MEMORY_WORKERS / 1024:.1f} KiB per worker")


if __name__ == "__main__":
    bench_tick_instrumentation()
    bench_render()
    bench_memory()
