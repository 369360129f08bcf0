"""Prometheus metrics. Every object takes an injected ``CollectorRegistry``.

Per-worker label children are created once (``Metrics.for_worker``) and cached, so the
tick path does no label lookups. Series are pre-initialised to zero when a worker is added.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from worker_runtime.outcomes import FINISHED_OUTCOMES, LeaseLoss, Outcome
from worker_runtime.version import __version__

__all__ = [
    "LEASE_LOSS_REASONS",
    "LEASE_OPERATIONS",
    "OUTCOMES",
    "SKIP_REASONS",
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


class Metrics:
    """All of the runtime's metric families, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.ticks = Counter(
            "tickwork_ticks",
            "Runs of do_work, by outcome.",
            ["worker", "outcome"],
            registry=registry,
        )
        self.skipped = Counter(
            "tickwork_ticks_skipped",
            "Scheduled slots not run, by reason (overlap, misfire, not_leader).",
            ["worker", "reason"],
            registry=registry,
        )
        self.duration = Histogram(
            "tickwork_tick_duration_seconds",
            "How long do_work ran.",
            ["worker"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.lateness = Histogram(
            "tickwork_tick_lateness_seconds",
            "When do_work started (after the slot's claim) minus its scheduled start "
            "(jitter excluded).",
            ["worker"],
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )
        self.last_success = Gauge(
            "tickwork_tick_last_success_timestamp_seconds",
            "When the latest successful run on this replica ended (Unix time).",
            ["worker"],
            registry=registry,
        )
        self.last_run = Gauge(
            "tickwork_tick_last_run_timestamp_seconds",
            "When the latest run on this replica ended, whatever its outcome (Unix time).",
            ["worker"],
            registry=registry,
        )
        self.next_scheduled = Gauge(
            "tickwork_tick_next_scheduled_timestamp_seconds",
            "The next slot this replica will run if it holds the lease (Unix time).",
            ["worker"],
            registry=registry,
        )
        self.in_progress = Gauge(
            "tickwork_ticks_in_progress",
            "Runs of do_work executing now on this replica.",
            ["worker"],
            registry=registry,
        )
        self.lease_held = Gauge(
            "tickwork_lease_held",
            "1 while this replica holds the worker's lease.",
            ["worker"],
            registry=registry,
        )
        self.fencing_token = Gauge(
            "tickwork_lease_fencing_token",
            "The fencing token of this replica's latest lease acquisition.",
            ["worker"],
            registry=registry,
        )
        self.acquisitions = Counter(
            "tickwork_lease_acquisitions",
            "Lease acquisitions by this replica.",
            ["worker"],
            registry=registry,
        )
        self.losses = Counter(
            "tickwork_lease_losses",
            "Leases this replica stopped holding, by reason (expired, stolen, released).",
            ["worker", "reason"],
            registry=registry,
        )
        self.lease_op_duration = Histogram(
            "tickwork_lease_operation_duration_seconds",
            "Round trip of the lease keeper's calls to the backend, by operation.",
            ["op"],
            buckets=LEASE_OP_BUCKETS,
            registry=registry,
        )
        self.redis_errors = Counter(
            "tickwork_redis_errors",
            "Redis operations that failed (connection loss, timeout, error reply).",
            ["op"],
            registry=registry,
        )
        self.loop_lag = Gauge(
            "tickwork_event_loop_lag_seconds",
            "How late the event loop woke its latest periodic check (0 when it keeps up).",
            registry=registry,
        )
        self.loop_stalls = Counter(
            "tickwork_event_loop_stalls",
            f"Times the event loop was blocked for {LOOP_STALL_SECONDS:g}s or more "
            "(blocking code in a tick).",
            registry=registry,
        )
        self.clock_offset = Gauge(
            "tickwork_clock_offset_seconds",
            "The Redis server's clock minus this host's (slots are planned on the server's).",
            registry=registry,
        )
        self.clock_corrections = Counter(
            "tickwork_clock_corrections",
            "Slots recorded or planned far ahead of the server's clock, corrected or refused.",
            ["worker"],
            registry=registry,
        )
        self.build_info = Gauge(
            "tickwork_build_info",
            "Always 1; the version label says which tickwork runs.",
            ["version"],
            registry=registry,
        )
        self.build_info.labels(version=__version__).set(1)
        self.lease_ops = {op: self.lease_op_duration.labels(op=op) for op in LEASE_OPERATIONS}
        self.redis_error_children = {op: self.redis_errors.labels(op=op) for op in REDIS_OPERATIONS}
        for child in self.redis_error_children.values():
            child.inc(0)
        self._workers: dict[str, WorkerMetrics] = {}

    def for_worker(self, worker: str) -> WorkerMetrics:
        """The worker's cached label children, created (at zero) on first use."""
        cached = self._workers.get(worker)
        if cached is None:
            cached = self._workers[worker] = WorkerMetrics.create(self, worker)
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


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    """One worker's label children, looked up once."""

    ticks: dict[str, Counter]
    skipped: dict[str, Counter]
    duration: Histogram
    lateness: Histogram
    last_success: Gauge
    last_run: Gauge
    next_scheduled: Gauge
    in_progress: Gauge
    lease_held: Gauge
    fencing_token: Gauge
    acquisitions: Counter
    losses: dict[str, Counter]
    clock_corrections: Counter

    @classmethod
    def create(cls, metrics: Metrics, worker: str) -> WorkerMetrics:
        wm = cls(
            ticks={o: metrics.ticks.labels(worker=worker, outcome=o) for o in OUTCOMES},
            skipped={r: metrics.skipped.labels(worker=worker, reason=r) for r in SKIP_REASONS},
            duration=metrics.duration.labels(worker=worker),
            lateness=metrics.lateness.labels(worker=worker),
            last_success=metrics.last_success.labels(worker=worker),
            last_run=metrics.last_run.labels(worker=worker),
            next_scheduled=metrics.next_scheduled.labels(worker=worker),
            in_progress=metrics.in_progress.labels(worker=worker),
            lease_held=metrics.lease_held.labels(worker=worker),
            fencing_token=metrics.fencing_token.labels(worker=worker),
            acquisitions=metrics.acquisitions.labels(worker=worker),
            losses={r: metrics.losses.labels(worker=worker, reason=r) for r in LEASE_LOSS_REASONS},
            clock_corrections=metrics.clock_corrections.labels(worker=worker),
        )
        # Touch every child so each series is exported at zero from the start.
        for counter in (*wm.ticks.values(), *wm.skipped.values(), *wm.losses.values()):
            counter.inc(0)
        wm.acquisitions.inc(0)
        wm.clock_corrections.inc(0)
        for gauge in (
            wm.last_success,
            wm.last_run,
            wm.next_scheduled,
            wm.in_progress,
            wm.lease_held,
            wm.fencing_token,
        ):
            gauge.set(0)
        return wm

    def tick_finished(self, outcome: Outcome, *, duration: float, ended_at: float) -> None:
        self.ticks[outcome].inc()
        self.duration.observe(duration)
        self.last_run.set(ended_at)
        if outcome is Outcome.SUCCESS:
            self.last_success.set(ended_at)
