"""Tickwork's side of the bench: workers that record their start inside ``do_work``.

``bench.peers.tickwork_bench:Bench`` is the one worker of the lateness and failover benches
(its period comes from ``--period``); ``Bench0000`` … ``Bench9999`` are distinct workers for
the many-workers bench. Each records ``ctx.scheduled_at`` (the slot) and the time ``do_work``
started, with the replica id (bench/recording.py).
"""

from __future__ import annotations

import re
import time
from typing import Any

from bench.recording import record
from worker_runtime import PeriodicWorker, TickContext

_NAME = re.compile(r"^Bench\d{4}$")
_made: dict[str, type[PeriodicWorker]] = {}


class Bench(PeriodicWorker):
    period = 1.0
    mode = "rate"

    async def do_work(self, ctx: TickContext) -> None:
        start = time.time()
        record("tickwork", ctx.replica_id, ctx.scheduled_at.timestamp(), start, ctx.worker)


def __getattr__(name: str) -> Any:
    if not _NAME.match(name):
        raise AttributeError(name)
    cls = _made.get(name)
    if cls is None:
        cls = _made[name] = type(name, (Bench,), {})
    return cls
