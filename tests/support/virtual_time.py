"""An event loop whose clock jumps to the next timer instead of waiting (controlled time).

``loop.time()`` is virtual; when nothing is ready to run, the loop advances its clock to the
next scheduled timer at once. ``asyncio.sleep`` and ``asyncio.timeout`` follow it, so a test of
an hour of ticks runs in milliseconds. Use no threads in such a test: work done in a thread
takes real time the virtual clock does not see.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a fixed "now" for wall-clock slots


class _VirtualSelector(selectors.DefaultSelector):
    loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[Any]:
        events = super().select(0 if timeout is not None else None)
        if not events and timeout and self.loop is not None:
            self.loop.advance(timeout)
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self._now = 0.0

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def wall(self) -> float:
        """The wall clock matching the virtual monotonic clock."""
        return START + self._now


def run_virtual(factory: Callable[[VirtualTimeLoop], Coroutine[Any, Any, T]]) -> T:
    """Run ``factory(loop)`` on a fresh virtual-time loop; fail if it leaks a task."""
    loop = VirtualTimeLoop()
    try:
        result = loop.run_until_complete(factory(loop))
        leaked = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in leaked:
            task.cancel()
        if leaked:
            loop.run_until_complete(asyncio.gather(*leaked, return_exceptions=True))
            raise AssertionError(f"the test leaked asyncio tasks: {leaked}")
        return result
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
