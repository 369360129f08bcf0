"""Tickwork's worker runtime: periodic background workers, one replica per tick.

A worker author subclasses :class:`PeriodicWorker`; ``tickwork run module:Class`` runs it.
"""

from worker_runtime.context import TickContext
from worker_runtime.leases import InProcessLeases, LeaseBackend, LeaseProvider, RunRecord
from worker_runtime.leasing import LeaseTiming
from worker_runtime.manager import ManagerOptions, WorkerManager
from worker_runtime.metrics import Metrics
from worker_runtime.scheduling import Misfire, Mode, Schedule
from worker_runtime.version import __version__
from worker_runtime.worker import PeriodicWorker

__all__ = [
    "InProcessLeases",
    "LeaseBackend",
    "LeaseProvider",
    "LeaseTiming",
    "ManagerOptions",
    "Metrics",
    "Misfire",
    "Mode",
    "PeriodicWorker",
    "RunRecord",
    "Schedule",
    "TickContext",
    "WorkerManager",
    "__version__",
]
