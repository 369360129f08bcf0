"""A worker for the Prometheus integration test: it keeps its own count of its ticks.

Every tick that ends appends one line to the file named by ``TICKWORK_PROBE_TICKS_FILE``,
as the last thing ``do_work`` does before it returns: so the file's line count is the number
of successful ticks, counted by the worker itself rather than by the metrics.

While the file named by ``TICKWORK_PROBE_HOLD_FILE`` exists, a tick waits (without writing
its line) until the file is removed or the replica is stopping. The test uses this to freeze
the runtime's counters while ``/metrics`` keeps being served, and then compares exactly.

Run: ``tickwork run tests.workers.metrics_probe:MetricsProbeWorker --period 200ms --mode rate``
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path

from worker_runtime import PeriodicWorker, TickContext

TICKS_FILE_ENV = "TICKWORK_PROBE_TICKS_FILE"
HOLD_FILE_ENV = "TICKWORK_PROBE_HOLD_FILE"
HOLD_POLL_SECONDS = 0.02


class MetricsProbeError(Exception):
    """The probe was stopped while held: its tick must not count as a success."""


class MetricsProbeWorker(PeriodicWorker):
    """Appends one line per successful tick to ``$TICKWORK_PROBE_TICKS_FILE``."""

    worker_name = "metrics-probe"
    period = timedelta(milliseconds=200)
    mode = "rate"

    async def do_work(self, ctx: TickContext) -> None:
        hold = os.environ.get(HOLD_FILE_ENV)
        if hold:
            hold_path = Path(hold)
            while hold_path.exists():
                if ctx.stopping.is_set():
                    raise MetricsProbeError("stopped while held")
                await asyncio.sleep(HOLD_POLL_SECONDS)
        # No await after this point: the line is written if and only if the tick succeeds.
        with Path(os.environ[TICKS_FILE_ENV]).open("a", encoding="utf-8") as ticks:
            ticks.write(f"{ctx.tick} {ctx.scheduled_at.isoformat()}\n")
