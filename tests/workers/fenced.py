"""The example's fenced user store, with a slow write, for the stalled-holder test."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import svcs

from examples.passive_users import StaleFencingToken, UserRepository, database_path
from worker_runtime import PeriodicWorker, TickContext


def _log(event: str, **fields: object) -> None:
    with open(os.environ["TICKWORK_TEST_LOG"], "a", encoding="utf-8") as fh:
        fh.write(
            json.dumps({"event": event, "pid": os.getpid(), "time": time.time(), **fields}) + "\n"
        )


class SlowWriteRepository(UserRepository):
    """Blocking I/O in flight: the write waits in a thread, where no cancellation reaches it."""

    def _update(self, *, fence: int, now: float) -> int:
        _log("write_begin", token=fence)
        time.sleep(float(os.environ.get("TICKWORK_TEST_WRITE_DELAY", "0")))
        try:
            changed = super()._update(fence=fence, now=now)
        except StaleFencingToken:
            _log("write_rejected", token=fence)
            raise
        _log("write_accepted", token=fence)
        return changed


class FencedWorker(PeriodicWorker):
    period = 0.3
    mode = "rate"

    def register_services(self, registry: svcs.Registry) -> None:
        def factory() -> Iterator[UserRepository]:
            repo = SlowWriteRepository(database_path())
            repo.seed()
            yield repo
            repo.close()

        registry.register_factory(UserRepository, factory)

    async def do_work(self, ctx: TickContext) -> None:
        _log(
            "start",
            token=ctx.fencing_token,
            replica=ctx.replica_id,
            slot=ctx.scheduled_at.timestamp(),
        )
        users = await ctx.services.aget(UserRepository)
        await users.update_inactive_user_statuses(fence=ctx.fencing_token)
