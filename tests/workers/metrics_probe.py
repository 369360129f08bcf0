"""A worker for the Prometheus integration test: it keeps its own count of its ticks.

Every tick that succeeds appends one line to the file named by ``TICKWORK_PROBE_TICKS_FILE``,
as the last thing ``do_work`` does before it returns: so the file's line count is the number
of successful ticks, counted by the worker itself rather than by the metrics.

While the file named by ``TICKWORK_PROBE_HOLD_FILE`` exists, a tick waits (without writing
its line) until the file is removed or the replica is stopping, and says so by creating
``<hold file>.holding`` while it waits. Ticks never overlap, so once that marker exists every
earlier tick has ended: the test uses this to freeze the runtime's counters while
``/metrics`` keeps being served, and then compares exactly.

Run: ``tickwork run tests.workers.metrics_probe:MetricsProbeWorker --period 200ms --mode rate``

The file operations are synchronous on purpose (they take microseconds on a local file):
the tick's line is written with no ``await`` between it and the end of ``do_work``.
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
        if hold and _exists(Path(hold)):
            await _hold(Path(hold), ctx)
        # No await after this point: the line is written if and only if the tick succeeds.
        _append_line(Path(os.environ[TICKS_FILE_ENV]), f"{ctx.tick} {ctx.scheduled_at:%T.%f}")


def holding_marker(hold: Path) -> Path:
    """The file that exists while a tick waits for ``hold`` to be removed."""
    return hold.with_name(hold.name + ".holding")


async def _hold(hold: Path, ctx: TickContext) -> None:
    holding = holding_marker(hold)
    holding.touch()
    try:
        while _exists(hold):
            if ctx.stopping.is_set():
                raise MetricsProbeError("stopped while held")
            await asyncio.sleep(HOLD_POLL_SECONDS)
    finally:
        holding.unlink(missing_ok=True)


def _exists(path: Path) -> bool:
    return path.exists()


def _append_line(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(line + "\n")
