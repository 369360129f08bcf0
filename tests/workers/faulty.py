"""Workers and hooks whose user code raises at start (``tickwork run`` must say so in one line).

``TICKWORK_TEST_MARK`` names a file each hook touches when it runs, so a test can tell
whether user code ran at all.
"""

from __future__ import annotations

import os
from pathlib import Path

import svcs

from worker_runtime import PeriodicWorker, TickContext


def _mark(hook: str) -> None:
    path = os.environ.get("TICKWORK_TEST_MARK")
    if path:
        with Path(path).open("a", encoding="utf-8") as fh:
            fh.write(hook + "\n")


_mark("import")


class BrokenInit(PeriodicWorker):
    period = 1

    def __init__(self, **kwargs: object) -> None:
        _mark("init")
        raise RuntimeError("cannot reach the config service")

    async def do_work(self, ctx: TickContext) -> None:
        pass


class BrokenRegistration(PeriodicWorker):
    period = 1

    def register_services(self, registry: svcs.Registry) -> None:
        _mark("register_services")
        raise KeyError("DATABASE_URL")

    async def do_work(self, ctx: TickContext) -> None:
        pass


class Fine(PeriodicWorker):
    period = 1

    async def do_work(self, ctx: TickContext) -> None:
        pass


def broken_services(registry: svcs.Registry) -> None:
    _mark("services")
    raise ValueError("no such\nsetting")


def exiting_services(registry: svcs.Registry) -> None:
    raise SystemExit(3)


def marking_services(registry: svcs.Registry) -> None:
    _mark("services")
