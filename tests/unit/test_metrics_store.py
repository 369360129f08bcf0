"""The lock-free metrics store exports exactly what prometheus_client's own labelled children
exported (text format and OpenMetrics, with and without ``_created``), and a scrape from
another thread always sees consistent histograms."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import metrics as client_metrics
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from worker_runtime.metrics import (
    DURATION_BUCKETS,
    LATENESS_BUCKETS,
    LEASE_LOSS_REASONS,
    LEASE_OP_BUCKETS,
    LEASE_OPERATIONS,
    OUTCOMES,
    REDIS_OPERATIONS,
    SKIP_REASONS,
    Metrics,
)
from worker_runtime.outcomes import Outcome
from worker_runtime.version import __version__

CREATED_AT = 1_764_000_000.25


class _ReferenceWorker:
    """One worker's prometheus_client children, as the store's predecessor built them."""

    def __init__(self, ref: _Reference, worker: str) -> None:
        self.ticks = {o: ref.ticks.labels(worker=worker, outcome=o) for o in OUTCOMES}
        self.skipped = {r: ref.skipped.labels(worker=worker, reason=r) for r in SKIP_REASONS}
        self.duration = ref.duration.labels(worker=worker)
        self.lateness = ref.lateness.labels(worker=worker)
        self.last_success = ref.last_success.labels(worker=worker)
        self.last_run = ref.last_run.labels(worker=worker)
        self.next_scheduled = ref.next_scheduled.labels(worker=worker)
        self.in_progress = ref.in_progress.labels(worker=worker)
        self.lease_held = ref.lease_held.labels(worker=worker)
        self.fencing_token = ref.fencing_token.labels(worker=worker)
        self.acquisitions = ref.acquisitions.labels(worker=worker)
        self.losses = {r: ref.losses.labels(worker=worker, reason=r) for r in LEASE_LOSS_REASONS}
        self.clock_corrections = ref.clock_corrections.labels(worker=worker)
        for counter in (*self.ticks.values(), *self.skipped.values(), *self.losses.values()):
            counter.inc(0)
        self.acquisitions.inc(0)
        self.clock_corrections.inc(0)
        for gauge in (
            self.last_success,
            self.last_run,
            self.next_scheduled,
            self.in_progress,
            self.lease_held,
            self.fencing_token,
        ):
            gauge.set(0)

    def tick_finished(self, outcome: Outcome, *, duration: float, ended_at: float) -> None:
        self.ticks[outcome].inc()
        self.duration.observe(duration)
        self.last_run.set(ended_at)
        if outcome is Outcome.SUCCESS:
            self.last_success.set(ended_at)


class _Reference:
    """The families as plain prometheus_client objects, registered one by one (the old way)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.ticks = Counter(
            "tickwork_ticks", "Runs of do_work, by outcome.", ["worker", "outcome"], registry=r
        )
        self.skipped = Counter(
            "tickwork_ticks_skipped",
            "Scheduled slots not run, by reason (overlap, misfire, not_leader).",
            ["worker", "reason"],
            registry=r,
        )
        self.duration = Histogram(
            "tickwork_tick_duration_seconds",
            "How long do_work ran.",
            ["worker"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.lateness = Histogram(
            "tickwork_tick_lateness_seconds",
            "When do_work started (after the slot's claim) minus its scheduled start "
            "(jitter excluded).",
            ["worker"],
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.last_success = Gauge(
            "tickwork_tick_last_success_timestamp_seconds",
            "When the latest successful run on this replica ended (Unix time).",
            ["worker"],
            registry=r,
        )
        self.last_run = Gauge(
            "tickwork_tick_last_run_timestamp_seconds",
            "When the latest run on this replica ended, whatever its outcome (Unix time).",
            ["worker"],
            registry=r,
        )
        self.next_scheduled = Gauge(
            "tickwork_tick_next_scheduled_timestamp_seconds",
            "The next slot this replica will run if it holds the lease (Unix time).",
            ["worker"],
            registry=r,
        )
        self.in_progress = Gauge(
            "tickwork_ticks_in_progress",
            "Runs of do_work executing now on this replica.",
            ["worker"],
            registry=r,
        )
        self.lease_held = Gauge(
            "tickwork_lease_held",
            "1 while this replica holds the worker's lease.",
            ["worker"],
            registry=r,
        )
        self.fencing_token = Gauge(
            "tickwork_lease_fencing_token",
            "The fencing token of this replica's latest lease acquisition.",
            ["worker"],
            registry=r,
        )
        self.acquisitions = Counter(
            "tickwork_lease_acquisitions",
            "Lease acquisitions by this replica.",
            ["worker"],
            registry=r,
        )
        self.losses = Counter(
            "tickwork_lease_losses",
            "Leases this replica stopped holding, by reason (expired, stolen, released).",
            ["worker", "reason"],
            registry=r,
        )
        self.lease_op_duration = Histogram(
            "tickwork_lease_operation_duration_seconds",
            "Round trip of the lease keeper's calls to the backend, by operation.",
            ["op"],
            buckets=LEASE_OP_BUCKETS,
            registry=r,
        )
        self.redis_errors = Counter(
            "tickwork_redis_errors",
            "Redis operations that failed (connection loss, timeout, error reply).",
            ["op"],
            registry=r,
        )
        self.loop_lag = Gauge(
            "tickwork_event_loop_lag_seconds",
            "How late the event loop woke its latest periodic check (0 when it keeps up).",
            registry=r,
        )
        self.loop_stalls = Counter(
            "tickwork_event_loop_stalls",
            "Times the event loop was blocked for 1s or more (blocking code in a tick).",
            registry=r,
        )
        self.clock_offset = Gauge(
            "tickwork_clock_offset_seconds",
            "The Redis server's clock minus this host's (slots are planned on the server's).",
            registry=r,
        )
        self.clock_corrections = Counter(
            "tickwork_clock_corrections",
            "Slots recorded or planned far ahead of the server's clock, corrected or refused.",
            ["worker"],
            registry=r,
        )
        self.build_info = Gauge(
            "tickwork_build_info",
            "Always 1; the version label says which tickwork runs.",
            ["version"],
            registry=r,
        )
        self.build_info.labels(version=__version__).set(1)
        self.lease_ops = {op: self.lease_op_duration.labels(op=op) for op in LEASE_OPERATIONS}
        self.redis_error_children = {op: self.redis_errors.labels(op=op) for op in REDIS_OPERATIONS}
        for child in self.redis_error_children.values():
            child.inc(0)
        self.workers: dict[str, _ReferenceWorker] = {}

    def for_worker(self, worker: str) -> _ReferenceWorker:
        return self.workers.setdefault(worker, _ReferenceWorker(self, worker))

    def lease_op(self, op: str) -> Histogram:
        return self.lease_ops.setdefault(op, self.lease_op_duration.labels(op=op))

    def redis_error(self, op: str) -> None:
        self.redis_error_children.setdefault(op, self.redis_errors.labels(op=op)).inc()


def _drive(metrics: Any) -> None:
    """The same calls, on either store: several workers, every family touched."""
    metrics.for_worker("alpha")
    metrics.for_worker("beta")
    metrics.for_worker("gamma")
    for n, name in enumerate(("alpha", "beta", "gamma")):
        wm = metrics.for_worker(name)
        wm.next_scheduled.set(1_764_000_010 + n)
        wm.in_progress.inc()
        wm.lateness.observe(0.0012 * (n + 1))
        wm.lateness.observe(0.05)  # on a bound: counted in that bucket
        wm.lateness.observe(120.5)  # past the last bound: +Inf only
        wm.in_progress.dec()
        wm.tick_finished(Outcome.SUCCESS, duration=0.0042 + n, ended_at=1_764_000_010.5 + n)
        wm.tick_finished(Outcome.FAILURE, duration=7200.0, ended_at=1_764_000_011.75)
        wm.ticks[Outcome.TIMEOUT].inc()
        wm.skipped["overlap"].inc(3)
        wm.skipped["misfire"].inc(n)
        wm.skipped["not_leader"].inc()
        wm.lease_held.set(1)
        wm.fencing_token.set(41 + n)
        wm.acquisitions.inc()
        wm.lease_held.set(0)
        wm.losses["stolen"].inc()
        wm.clock_corrections.inc()
    metrics.for_worker("delta")  # a worker left at zero, added last
    metrics.lease_op("renew").observe(0.0007)
    metrics.lease_op("acquire").observe(3.0)
    metrics.lease_op("subscribe").observe(0.01)  # created on first use
    metrics.redis_error("renew")
    metrics.redis_error("subscribe")
    metrics.loop_lag.set(0.125)
    metrics.loop_stalls.inc()
    metrics.clock_offset.set(-0.003)


@pytest.fixture(params=[False, True], ids=["created-disabled", "created-enabled"])
def created(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(client_metrics, "_use_created", request.param)
    monkeypatch.setattr(time, "time", lambda: CREATED_AT)
    return bool(request.param)


def _both() -> tuple[CollectorRegistry, CollectorRegistry]:
    old, new = CollectorRegistry(), CollectorRegistry()
    _drive(_Reference(old))
    _drive(Metrics(new))
    return old, new


@pytest.mark.parametrize(
    "encode", [generate_latest, generate_openmetrics], ids=["text", "openmetrics"]
)
def test_the_store_renders_the_same_bytes_as_prometheus_client_children(
    created: bool, encode: Callable[[Any], bytes]
) -> None:
    old, new = _both()
    assert encode(new).decode() == encode(old).decode()
    assert (b"_created" in encode(new)) is created


def test_a_restricted_scrape_names_the_same_families(created: bool) -> None:
    old, new = _both()
    for names in (
        ["tickwork_ticks_total"],
        ["tickwork_tick_duration_seconds_bucket", "tickwork_tick_duration_seconds_count"],
        ["tickwork_lease_operation_duration_seconds_sum"],
        ["tickwork_build_info"],
    ):
        assert generate_latest(new.restricted_registry(names)) == generate_latest(
            old.restricted_registry(names)
        )


def test_registry_sample_values_answer_as_before(created: bool) -> None:
    old, new = _both()
    samples = [(s.name, s.labels) for family in old.collect() for s in family.samples]
    assert len(samples) > 300
    for name, labels in samples:
        assert new.get_sample_value(name, labels) == old.get_sample_value(name, labels), (
            name,
            labels,
        )


def test_series_start_at_zero_and_a_counter_refuses_to_go_down() -> None:
    registry = CollectorRegistry()
    wm = Metrics(registry).for_worker("w")
    assert (
        registry.get_sample_value("tickwork_ticks_total", {"worker": "w", "outcome": "success"})
        == 0
    )
    assert registry.get_sample_value("tickwork_tick_duration_seconds_count", {"worker": "w"}) == 0
    with pytest.raises(ValueError, match="non-negative"):
        wm.acquisitions.inc(-1)
    assert registry.get_sample_value("tickwork_lease_acquisitions_total", {"worker": "w"}) == 0


def _histograms_are_consistent(body: str) -> Iterator[str]:
    """Every way a rendering's histograms or counters could be torn, as messages."""
    for family in text_string_to_metric_families(body):
        if family.type != "histogram":
            continue
        series: dict[str, list[Any]] = {}
        for sample in family.samples:
            key = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le")
            series.setdefault(key, []).append(sample)
        for key, own in series.items():
            buckets = [s.value for s in own if s.name.endswith("_bucket")]
            (count,) = [s.value for s in own if s.name.endswith("_count")]
            if buckets != sorted(buckets):
                yield f"{family.name} {key}: buckets not cumulative {buckets}"
            if buckets[-1] != count:
                yield f"{family.name} {key}: count {count} but +Inf {buckets[-1]}"


def test_a_scrape_from_another_thread_never_sees_a_torn_histogram() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    workers = [metrics.for_worker(f"w{n}") for n in range(3)]
    stop = threading.Event()

    def observe() -> None:
        amount = 0.0
        while not stop.is_set():
            for wm in workers:
                wm.tick_finished(Outcome.SUCCESS, duration=amount, ended_at=amount)
                wm.lateness.observe(amount / 10)
            amount = (amount + 0.37) % 5000

    writer = threading.Thread(target=observe)
    writer.start()
    problems: list[str] = []
    previous = 0.0
    try:
        for _ in range(300):
            body = generate_latest(registry).decode()
            problems.extend(_histograms_are_consistent(body))
            ticks = registry.get_sample_value(
                "tickwork_ticks_total", {"worker": "w0", "outcome": "success"}
            )
            assert ticks is not None
            if ticks < previous:
                problems.append(f"ticks went down from {previous} to {ticks}")
            previous = ticks
    finally:
        stop.set()
        writer.join()
    assert previous > 0
    assert problems == []
