"""APScheduler 4 (run by its own venv's python): JOBS interval schedules at PERIOD seconds in
one ``AsyncScheduler`` (memory data store, local event broker: it coordinates nothing across
processes), each job recording its start against ``current_job.scheduled_fire_time``.

    python bench/peers/aps4_bench.py PERIOD JOBS REPLICA

Runs until SIGTERM.
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

from apscheduler import AsyncScheduler, ConflictPolicy, current_job  # type: ignore[import-not-found]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-not-found]

from bench.recording import record

REPLICA = sys.argv[3] if len(sys.argv) > 3 else "aps4"


async def job() -> None:
    now = time.time()
    info = current_job.get()
    fire = info.scheduled_fire_time
    record("apscheduler4", REPLICA, fire.timestamp() if fire else now, now, str(info.schedule_id))


async def main(period: float, jobs: int) -> None:
    start = datetime.fromtimestamp(math.ceil(time.time()) + 1.0, tz=UTC)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with AsyncScheduler() as scheduler:
        for index in range(jobs):
            await scheduler.add_schedule(
                job, IntervalTrigger(seconds=period, start_time=start), id=f"job{index}",
                conflict_policy=ConflictPolicy.replace, misfire_grace_time=max(1.0, period),
            )  # fmt: skip
        await scheduler.start_in_background()
        await stop.wait()
        await scheduler.stop()


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]), int(sys.argv[2])))
