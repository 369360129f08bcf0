"""An example of a worker that fails: every run raises, as a worker whose database is down does.

Run it to see what a failure looks like: ``lastOutcome: failure`` and a ``RunFailed`` Warning
Event on the BackgroundWorker, ``tickwork_ticks_total{outcome="failure"}`` in the metrics, the
traceback in the pod's log:

    tickwork run examples.failing:UnreachableDatabaseWorker --period 2s
"""

from __future__ import annotations

from datetime import timedelta

from worker_runtime import PeriodicWorker, TickContext


class UnreachableDatabaseWorker(PeriodicWorker):
    period = timedelta(seconds=10)

    async def do_work(self, ctx: TickContext) -> None:
        ctx.logger.info("connecting to the user database (fencing token %d)", ctx.fencing_token)
        raise ConnectionError("the user database at db.example.invalid:5432 is unreachable")
