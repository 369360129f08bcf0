"""Workers used by the tests that run ``tickwork`` as a real process.

Each appends one JSON line per event to the file named by ``TICKWORK_TEST_LOG``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import svcs

from worker_runtime import PeriodicWorker, TickContext


def _log(event: str, ctx: TickContext, **extra: object) -> None:
    path = os.environ.get("TICKWORK_TEST_LOG")
    if not path:
        return
    entry = {
        "event": event,
        "worker": ctx.worker,
        "tick": ctx.tick,
        "slot": ctx.scheduled_at.timestamp(),
        "token": ctx.fencing_token,
        "replica": ctx.replica_id,
        "time": time.time(),
        "mono": time.monotonic(),
        **extra,
    }
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")
        fh.flush()


class Ticker(PeriodicWorker):
    """Logs start and end of every tick; works for TICKWORK_TEST_WORK seconds."""

    period = 0.2
    mode = "rate"

    async def do_work(self, ctx: TickContext) -> None:
        _log("start", ctx)
        outcome = "cancelled"
        try:
            await asyncio.sleep(float(os.environ.get("TICKWORK_TEST_WORK", "0")))
            outcome = "done"
        finally:
            _log("end", ctx, outcome=outcome)


class NoSchedule(PeriodicWorker):
    async def do_work(self, ctx: TickContext) -> None:
        _log("start", ctx)


class NotAWorker:
    pass


class Greeting(str):
    """A service type registered by ``register``."""


def register(registry: svcs.Registry) -> None:
    """A ``--services`` function."""
    registry.register_value(Greeting, Greeting("hello from --services"))


class Greeter(PeriodicWorker):
    """Uses a service that only ``--services`` registers."""

    period = 0.2

    async def do_work(self, ctx: TickContext) -> None:
        greeting = await ctx.services.aget(Greeting)
        _log("start", ctx, greeting=str(greeting))


class Blocker(PeriodicWorker):
    """Blocks the event loop (``time.sleep``) for TICKWORK_TEST_BLOCK seconds in each tick."""

    period = 5.0
    run_on_start = True

    async def do_work(self, ctx: TickContext) -> None:
        _log("start", ctx)
        time.sleep(float(os.environ.get("TICKWORK_TEST_BLOCK", "0")))  # noqa: ASYNC251
        _log("end", ctx, outcome="returned")


class CollectorProbe(PeriodicWorker):
    """Logs what the garbage collector looks like from inside a running tick."""

    period = 0.2

    async def do_work(self, ctx: TickContext) -> None:
        import gc

        _log("gc", ctx, frozen=gc.get_freeze_count(), thresholds=list(gc.get_threshold()))
