"""A worker whose every run fails: ``do_work`` raises (the status must say ``failure``)."""

from __future__ import annotations

from worker_runtime import PeriodicWorker, TickContext


class AlwaysFails(PeriodicWorker):
    period = 0.5

    async def do_work(self, ctx: TickContext) -> None:
        ctx.logger.info("failing on purpose (fencing token %d)", ctx.fencing_token)
        raise RuntimeError("this worker always fails")
