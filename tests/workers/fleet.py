"""Any number of trivial workers for the many-workers bench: ``tests.workers.fleet:Fleet0042``.

Each name ``FleetNNNN`` is a distinct ``PeriodicWorker`` class (made on first use) that runs
every second on a fixed grid and does nothing, so the bench measures the runtime alone.
"""

from __future__ import annotations

import re
from typing import Any

from worker_runtime import PeriodicWorker, TickContext

_NAME = re.compile(r"^Fleet\d{4}$")
_made: dict[str, type[PeriodicWorker]] = {}


class _FleetWorker(PeriodicWorker):
    async def do_work(self, ctx: TickContext) -> None:
        return None


def __getattr__(name: str) -> Any:
    if not _NAME.match(name):
        raise AttributeError(name)
    cls = _made.get(name)
    if cls is None:
        cls = _made[name] = type(name, (_FleetWorker,), {"period": 1.0, "mode": "rate"})
    return cls
