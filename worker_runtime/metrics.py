"""Prometheus metrics. Every object takes an injected ``CollectorRegistry``.

The per-worker families keep their values in plain slotted objects (``CounterValue``,
``GaugeValue``, ``HistogramValue``) with no locks: the runtime writes them on its one
event-loop thread. One collector (``Collector`` protocol) registered on the registry exports
them, with the process-wide families (prometheus_client objects) in between, in the order and
with the bytes prometheus_client's own labelled children would give. The metrics server renders
from another thread: each histogram is copied in one step (its bucket counts and sum live in
one list), so a scrape never sees a count that differs from its ``+Inf`` bucket.

``Metrics.for_worker`` creates a worker's series (at zero) once and caches them, so the tick
path does no label lookups.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import metrics as _client_metrics
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample
from prometheus_client.utils import INF, floatToGoString

from worker_runtime.outcomes import FINISHED_OUTCOMES, LeaseLoss, Outcome
from worker_runtime.version import __version__

__all__ = [
    "LEASE_LOSS_REASONS",
    "LEASE_OPERATIONS",
    "OUTCOMES",
    "SKIP_REASONS",
    "CounterValue",
    "GaugeValue",
    "HistogramValue",
    "Metrics",
    "WorkerMetrics",
]

OUTCOMES = tuple(str(o) for o in FINISHED_OUTCOMES)
SKIP_REASONS = ("overlap", "misfire", "not_leader")
LEASE_LOSS_REASONS = tuple(str(r) for r in LeaseLoss)
#: Every call the lease keeper makes (its round trips are timed per operation).
LEASE_OPERATIONS = ("acquire", "renew", "release", "claim", "unclaim", "record", "load")
REDIS_OPERATIONS = (*LEASE_OPERATIONS, "ping")

# Tick durations from a few milliseconds to an hour.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
# Lateness is usually milliseconds; failover and misfires make it seconds.
LATENESS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: An event-loop wake-up this late counts as a stall.
LOOP_STALL_SECONDS = 1.0
LEASE_OP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class CounterValue:
    """One counter series' value (no lock: written on the event loop's thread only)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount


class GaugeValue:
    """One gauge series' value (no lock: written on the event loop's thread only)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = float(value)


class HistogramValue:
    """One histogram series: ``counts`` holds each bucket's own count (not cumulative, the
    last one ``+Inf``) and then the sum, in one list, so ``list(counts)`` is a consistent
    snapshot (one step under the GIL)."""

    __slots__ = ("bounds", "counts")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds  # ascending, ending with +Inf; shared by the family's series
        self.counts = [0.0] * (len(bounds) + 1)

    def observe(self, amount: float) -> None:
        counts = self.counts
        counts[bisect_left(self.bounds, amount)] += 1.0
        counts[-1] += amount


def _upper_bounds(buckets: tuple[float, ...]) -> tuple[float, ...]:
    return (*(float(b) for b in buckets), INF)


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    """One worker's series, looked up once."""

    ticks: dict[str, CounterValue]
    skipped: dict[str, CounterValue]
    duration: HistogramValue
    lateness: HistogramValue
    last_success: GaugeValue
    last_run: GaugeValue
    next_scheduled: GaugeValue
    in_progress: GaugeValue
    lease_held: GaugeValue
    fencing_token: GaugeValue
    acquisitions: CounterValue
    losses: dict[str, CounterValue]
    clock_corrections: CounterValue

    @classmethod
    def create(cls) -> WorkerMetrics:
        """A worker's series, every one at zero."""
        return cls(
            ticks={o: CounterValue() for o in OUTCOMES},
            skipped={r: CounterValue() for r in SKIP_REASONS},
            duration=HistogramValue(_DURATION_BOUNDS),
            lateness=HistogramValue(_LATENESS_BOUNDS),
            last_success=GaugeValue(),
            last_run=GaugeValue(),
            next_scheduled=GaugeValue(),
            in_progress=GaugeValue(),
            lease_held=GaugeValue(),
            fencing_token=GaugeValue(),
            acquisitions=CounterValue(),
            losses={r: CounterValue() for r in LEASE_LOSS_REASONS},
            clock_corrections=CounterValue(),
        )

    def tick_finished(self, outcome: Outcome, *, duration: float, ended_at: float) -> None:
        self.ticks[outcome].inc()
        self.duration.observe(duration)
        self.last_run.set(ended_at)
        if outcome is Outcome.SUCCESS:
            self.last_success.set(ended_at)


_DURATION_BOUNDS = _upper_bounds(DURATION_BUCKETS)
_LATENESS_BOUNDS = _upper_bounds(LATENESS_BUCKETS)
#: Each histogram's ``le`` label values, formatted as prometheus_client formats them.
_LE_LABELS: dict[tuple[float, ...], tuple[str, ...]] = {
    bounds: tuple(floatToGoString(b) for b in bounds)  # type: ignore[no-untyped-call]
    for bounds in (_DURATION_BOUNDS, _LATENESS_BOUNDS)
}


@dataclass(frozen=True, slots=True)
class _Family:
    """One per-worker family: where its values live in ``WorkerMetrics`` and how it is named.
    ``label`` is the second label (after ``worker``) of a field that maps it to values."""

    field: str
    name: str
    documentation: str
    kind: Literal["counter", "gauge", "histogram"]
    label: str | None = None

    def empty(self) -> Metric:
        labels = ["worker"] if self.label is None else ["worker", self.label]
        if self.kind == "counter":
            return CounterMetricFamily(self.name, self.documentation, labels=labels)
        if self.kind == "gauge":
            return GaugeMetricFamily(self.name, self.documentation, labels=labels)
        return HistogramMetricFamily(self.name, self.documentation, labels=labels)

    def collect(self, workers: Iterable[_Worker], *, created: bool) -> Metric:
        family = self.empty()
        for worker in workers:
            value = getattr(worker.metrics, self.field)
            if self.label is None:
                self._add(family, [worker.name], value, worker.created if created else None)
            else:
                for key, child in value.items():
                    self._add(
                        family, [worker.name, key], child, worker.created if created else None
                    )
        return family

    @staticmethod
    def _add(
        family: Metric,
        labels: list[str],
        value: CounterValue | GaugeValue | HistogramValue,
        created: float | None,
    ) -> None:
        if isinstance(family, CounterMetricFamily):
            assert isinstance(value, CounterValue)
            family.add_metric(labels, value.value, created=created)
        elif isinstance(family, GaugeMetricFamily):
            assert isinstance(value, GaugeValue)
            family.add_metric(labels, value.value)
        else:
            assert isinstance(family, HistogramMetricFamily)
            assert isinstance(value, HistogramValue)
            counts = list(value.counts)  # one step: the sum and buckets of the same moment
            buckets = []
            cumulative = 0.0
            for le, count in zip(_LE_LABELS[value.bounds], counts, strict=False):
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric(labels, buckets, counts[-1])
            if created is not None:
                family.samples.append(
                    Sample(family.name + "_created", {"worker": labels[0]}, created)
                )


@dataclass(frozen=True, slots=True)
class _Worker:
    name: str
    created: float  # when its series were created (Unix time), for the _created samples
    metrics: WorkerMetrics


class _Exporter:
    """The collector of the runtime's families: the per-worker ones from the workers'
    ``WorkerMetrics`` (in the order the workers were added), the process-wide ones from their
    prometheus_client objects, in the order the families were registered before this store."""

    def __init__(self, parts: list[_Family | Counter | Gauge | Histogram]) -> None:
        self._parts = parts
        self.workers: list[_Worker] = []

    def collect(self) -> Iterator[Metric]:
        created = _client_metrics._use_created
        workers = tuple(self.workers)
        for part in self._parts:
            if isinstance(part, _Family):
                yield part.collect(workers, created=created)
            else:
                yield from part.collect()

    def describe(self) -> Iterator[Metric]:
        for part in self._parts:
            if isinstance(part, _Family):
                yield part.empty()
            else:
                yield from part.describe()


class Metrics:
    """All of the runtime's metric families, registered on ``registry`` (one collector)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.lease_op_duration = Histogram(
            "tickwork_lease_operation_duration_seconds",
            "Round trip of the lease keeper's calls to the backend, by operation.",
            ["op"],
            buckets=LEASE_OP_BUCKETS,
            registry=None,
        )
        self.redis_errors = Counter(
            "tickwork_redis_errors",
            "Redis operations that failed (connection loss, timeout, error reply).",
            ["op"],
            registry=None,
        )
        self.loop_lag = Gauge(
            "tickwork_event_loop_lag_seconds",
            "How late the event loop woke its latest periodic check (0 when it keeps up).",
            registry=None,
        )
        self.loop_stalls = Counter(
            "tickwork_event_loop_stalls",
            f"Times the event loop was blocked for {LOOP_STALL_SECONDS:g}s or more "
            "(blocking code in a tick).",
            registry=None,
        )
        self.clock_offset = Gauge(
            "tickwork_clock_offset_seconds",
            "The Redis server's clock minus this host's (slots are planned on the server's).",
            registry=None,
        )
        self.build_info = Gauge(
            "tickwork_build_info",
            "Always 1; the version label says which tickwork runs.",
            ["version"],
            registry=None,
        )
        self.build_info.labels(version=__version__).set(1)
        self.lease_ops = {op: self.lease_op_duration.labels(op=op) for op in LEASE_OPERATIONS}
        self.redis_error_children = {op: self.redis_errors.labels(op=op) for op in REDIS_OPERATIONS}
        for child in self.redis_error_children.values():
            child.inc(0)
        self._exporter = _Exporter(
            [
                _Family(
                    "ticks", "tickwork_ticks", "Runs of do_work, by outcome.", "counter", "outcome"
                ),
                _Family(
                    "skipped",
                    "tickwork_ticks_skipped",
                    "Scheduled slots not run, by reason (overlap, misfire, not_leader).",
                    "counter",
                    "reason",
                ),
                _Family(
                    "duration",
                    "tickwork_tick_duration_seconds",
                    "How long do_work ran.",
                    "histogram",
                ),
                _Family(
                    "lateness",
                    "tickwork_tick_lateness_seconds",
                    "When do_work started (after the slot's claim) minus its scheduled start "
                    "(jitter excluded).",
                    "histogram",
                ),
                _Family(
                    "last_success",
                    "tickwork_tick_last_success_timestamp_seconds",
                    "When the latest successful run on this replica ended (Unix time).",
                    "gauge",
                ),
                _Family(
                    "last_run",
                    "tickwork_tick_last_run_timestamp_seconds",
                    "When the latest run on this replica ended, whatever its outcome (Unix time).",
                    "gauge",
                ),
                _Family(
                    "next_scheduled",
                    "tickwork_tick_next_scheduled_timestamp_seconds",
                    "The next slot this replica will run if it holds the lease (Unix time).",
                    "gauge",
                ),
                _Family(
                    "in_progress",
                    "tickwork_ticks_in_progress",
                    "Runs of do_work executing now on this replica.",
                    "gauge",
                ),
                _Family(
                    "lease_held",
                    "tickwork_lease_held",
                    "1 while this replica holds the worker's lease.",
                    "gauge",
                ),
                _Family(
                    "fencing_token",
                    "tickwork_lease_fencing_token",
                    "The fencing token of this replica's latest lease acquisition.",
                    "gauge",
                ),
                _Family(
                    "acquisitions",
                    "tickwork_lease_acquisitions",
                    "Lease acquisitions by this replica.",
                    "counter",
                ),
                _Family(
                    "losses",
                    "tickwork_lease_losses",
                    "Leases this replica stopped holding, by reason (expired, stolen, released).",
                    "counter",
                    "reason",
                ),
                self.lease_op_duration,
                self.redis_errors,
                self.loop_lag,
                self.loop_stalls,
                self.clock_offset,
                _Family(
                    "clock_corrections",
                    "tickwork_clock_corrections",
                    "Slots recorded or planned far ahead of the server's clock, corrected or "
                    "refused.",
                    "counter",
                ),
                self.build_info,
            ]
        )
        registry.register(self._exporter)
        self._workers: dict[str, WorkerMetrics] = {}

    def for_worker(self, worker: str) -> WorkerMetrics:
        """The worker's cached series, created (at zero) on first use."""
        cached = self._workers.get(worker)
        if cached is None:
            cached = self._workers[worker] = WorkerMetrics.create()
            self._exporter.workers.append(_Worker(worker, time.time(), cached))
        return cached

    def lease_op(self, op: str) -> Histogram:
        """The duration child of one lease operation (created on first use)."""
        child = self.lease_ops.get(op)
        if child is None:
            child = self.lease_ops[op] = self.lease_op_duration.labels(op=op)
        return child

    def redis_error(self, op: str) -> None:
        child = self.redis_error_children.get(op)
        if child is None:
            child = self.redis_error_children[op] = self.redis_errors.labels(op=op)
        child.inc()
