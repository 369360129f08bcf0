"""``TickContext``: what one run of ``do_work`` gets (ABP's PeriodicBackgroundWorkerContext)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime

import svcs

__all__ = ["TickContext"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TickContext:
    """The run's identity, its fencing token, its dependency scope and its stop signal."""

    #: The worker's name.
    worker: str
    #: The slot this run serves: its scheduled start, timezone-aware (UTC).
    scheduled_at: datetime
    #: 1 for this process's first run of the worker, then 2, 3, ...
    tick: int
    #: The replica running this tick (``--replica-id``, the pod name in Kubernetes).
    replica_id: str
    #: The lease's fencing token: grows with every lease acquisition. Pass it to every store
    #: the work writes to, and let the store refuse a token lower than one it has seen.
    fencing_token: int
    #: A logger bound to the worker and the tick.
    logger: logging.LoggerAdapter[logging.Logger]
    #: The per-tick dependency scope (an ``svcs.Container``), closed after the run, also when
    #: the run fails or is cancelled (ABP's IServiceScope).
    services: svcs.Container
    #: Set when the run must stop soon: the process is shutting down or the lease is lost.
    #: Long work should check it between steps; the run is cancelled if it does not finish.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def should_stop(self) -> bool:
        return self.stopping.is_set()
