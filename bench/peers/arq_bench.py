"""arq (run by its own venv's python; ``arq bench.peers.arq_bench.WorkerSettings``): one cron
job every second (arq's cron has one-second resolution, so no 100 ms run), ``unique`` so that
several workers enqueue each slot once. The job records its start against its slot, the
job's score (the time it was deferred until). arq's defaults otherwise (poll delay 0.5 s).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from arq import cron  # type: ignore[import-not-found]
from arq.connections import RedisSettings  # type: ignore[import-not-found]

from bench.recording import record


async def tick(ctx: dict[str, Any]) -> None:
    now = time.time()
    score = ctx.get("score")
    slot = score / 1000 if score else now
    record("arq", os.environ.get("BENCH_REPLICA", socket.gethostname()), slot, now)


class WorkerSettings:
    redis_settings = RedisSettings.from_dsn(os.environ["BENCH_REDIS_URL"])
    cron_jobs = [cron(tick, second=set(range(60)), microsecond=0, unique=True)]
    handle_signals = True
