"""Workers that do not stop when told: the shutdown must still end in bounded time.

Each touches the file named by ``TICKWORK_TEST_STARTED`` when its work has begun."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from worker_runtime import PeriodicWorker, TickContext


def _started() -> None:
    path = os.environ.get("TICKWORK_TEST_STARTED")
    if path:
        Path(path).touch()


class Stubborn(PeriodicWorker):
    """Catches every cancellation and goes on, forever."""

    period = 60.0
    run_on_start = True

    async def do_work(self, ctx: TickContext) -> None:
        _started()
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:  # the point of this worker
                continue


class Blocking(PeriodicWorker):
    """Blocks the event loop, forever (no await)."""

    period = 60.0
    run_on_start = True

    async def do_work(self, ctx: TickContext) -> None:
        _started()
        while True:
            time.sleep(0.05)  # noqa: ASYNC251 - the point of this worker
