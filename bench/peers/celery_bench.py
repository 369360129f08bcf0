"""Celery beat with RedBeat (run by its own venv's python; ``celery -A bench.peers.celery_bench``).

One periodic task ``tick`` every ``BENCH_PERIOD`` seconds (a Celery ``schedule``, which runs
``period`` after the last run was sent: no fixed grid). The task records its start against
the slot it was due (RedBeat's ``last_run_at`` + period, carried in a message header).
RedBeat's lock (``redbeat_lock_timeout``, ``BENCH_LOCK_SECONDS``) lets one beat of several
send; the worker (``--pool solo``) runs the task.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from celery import Celery  # type: ignore[import-not-found]
from celery.signals import before_task_publish  # type: ignore[import-not-found]
from redbeat.schedulers import RedBeatSchedulerEntry  # type: ignore[import-not-found]

from bench.recording import record

PERIOD = float(os.environ.get("BENCH_PERIOD", "1"))
URL = os.environ["BENCH_REDIS_URL"]
app = Celery("tickwork_bench", broker=URL)
app.conf.update(
    redbeat_redis_url=URL,
    redbeat_lock_timeout=int(os.environ.get("BENCH_LOCK_SECONDS", "5")),
    beat_max_loop_interval=min(1.0, PERIOD),
    beat_schedule={"tick": {"task": "bench.peers.celery_bench.tick", "schedule": PERIOD}},
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
)

_due: dict[str, float] = {}
_reserve = RedBeatSchedulerEntry._next_instance


@before_task_publish.connect
def _stamp(headers: dict, **_: object) -> None:  # type: ignore[type-arg]
    """Beat side: the slot this send serves (last run + period) rides in a header."""
    headers["bench_due"] = _due.pop("tick", time.time())


def _next(self: RedBeatSchedulerEntry, *args: object, **kwargs: object) -> RedBeatSchedulerEntry:
    """Beat side, when it reserves a due entry: remember when it was due."""
    if self.last_run_at is not None:
        _due[self.name] = self.last_run_at.timestamp() + PERIOD
    return _reserve(self, *args, **kwargs)


RedBeatSchedulerEntry.__next__ = RedBeatSchedulerEntry.next = _next


@app.task(bind=True)
def tick(self: object) -> None:
    now = time.time()
    due = getattr(self.request, "bench_due", None)  # type: ignore[attr-defined]
    record("redbeat", os.environ.get("BENCH_REPLICA", socket.gethostname()), float(due or now), now)
