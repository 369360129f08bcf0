"""APScheduler 3 (run by its own venv's python): JOBS interval jobs at PERIOD seconds in one
process (``AsyncIOScheduler``, coroutine jobs on the event loop, like Tickwork's workers),
each recording its start (bench/recording.py) against the grid its trigger is anchored to.

    python bench/peers/aps3_bench.py PERIOD JOBS REPLICA

Runs until SIGTERM (then shuts the scheduler down and exits 0).
"""

from __future__ import annotations

import asyncio
import math
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-not-found]

from bench.recording import grid_slot, record


async def main(period: float, jobs: int, replica: str) -> None:
    anchor = math.ceil(time.time()) + 1.0  # a whole second: every process shares the grid
    scheduler = AsyncIOScheduler(timezone=UTC)

    async def job(name: str) -> None:
        now = time.time()
        record("apscheduler3", replica, grid_slot(now, anchor=anchor, period=period), now, name)

    start = datetime.fromtimestamp(anchor, tz=UTC)
    for index in range(jobs):
        scheduler.add_job(
            job, "interval", args=[f"job{index}"], seconds=period, start_date=start,
            id=f"job{index}", max_instances=1, coalesce=True,
            misfire_grace_time=max(1, int(period)),
        )  # fmt: skip
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    scheduler.start()
    await stop.wait()
    scheduler.shutdown(wait=False)


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
