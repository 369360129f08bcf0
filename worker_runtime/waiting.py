"""Waiting: on several asyncio events at once, without leaking tasks; and until an instant,
on time (``Alarm``)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections.abc import Iterable

__all__ = ["Alarm", "wait_any"]


async def wait_any(events: Iterable[asyncio.Event], *, within: float | None = None) -> bool:
    """Wait until any event is set or ``within`` seconds pass; True if an event was set.

    The helper tasks are always cancelled and awaited before returning, also when the caller
    is cancelled (the ``CancelledError`` then propagates).
    """
    pending = [e for e in events]
    if any(e.is_set() for e in pending):
        return True
    if within is not None and within <= 0:
        return False
    tasks = [asyncio.ensure_future(e.wait()) for e in pending]
    try:
        done, _ = await asyncio.wait(tasks, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        return bool(done)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


#: A loop whose clock reads this far from ``time.monotonic`` keeps other time.
_SAME_CLOCK_SECONDS = 0.5


class Alarm:
    """Sets asyncio events at given ``loop.time()`` instants, on time.

    asyncio's timers wake the loop through ``epoll_wait``, whose timeout is whole
    milliseconds rounded up: a tick planned for an instant starts 0-1 ms after it, plus the
    loop's own work. One thread per process (started at the first ``set_at``, stopped by
    ``close()``) sleeps with the kernel's nanosecond timers until the earliest instant asked
    for and then wakes the loop (``call_soon_threadsafe``) with every event that is due —
    one wake-up for all the workers whose slots fall together.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Alarmed]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def set_at(self, when: float, event: asyncio.Event) -> _Alarmed:
        """Set ``event`` at loop time ``when`` (monotonic); ``cancel()`` the result to drop it."""
        loop = asyncio.get_running_loop()
        alarmed = _Alarmed(event)
        with self._cond:
            if self._thread is None:
                self._loop = loop
                self._thread = threading.Thread(
                    target=self._run, name="tickwork-alarm", daemon=True
                )
                self._thread.start()
            heapq.heappush(self._heap, (when, next(self._seq), alarmed))
            if self._heap[0][2] is alarmed:
                self._cond.notify()
        return alarmed

    async def sleep_until(self, when: float, event: asyncio.Event) -> None:
        """Wait until loop time ``when`` or until ``event`` is set (cleared by the caller).
        A loop that keeps other time than ``time.monotonic`` (a test's virtual time) keeps
        its own timers."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= when or event.is_set():
            return
        if abs(now - time.monotonic()) > _SAME_CLOCK_SECONDS:
            try:
                async with asyncio.timeout_at(when):
                    await event.wait()
            except TimeoutError:
                pass
            return
        alarmed = self.set_at(when, event)
        try:
            await event.wait()
        finally:
            alarmed.cancel()

    def close(self) -> None:
        """Stop the thread (pending events are not set); a later ``set_at`` starts another."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        with self._cond:
            self._closed = False

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        with self._cond:
            while not self._closed:
                if not self._heap:
                    self._cond.wait()
                    continue
                delay = self._heap[0][0] - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                now = time.monotonic()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    alarmed = heapq.heappop(self._heap)[2]
                    if not alarmed.cancelled:
                        due.append(alarmed)
                if due:
                    try:
                        loop.call_soon_threadsafe(_fire, due)
                    except RuntimeError:  # the loop is closed
                        return


class _Alarmed:
    __slots__ = ("cancelled", "event")

    def __init__(self, event: asyncio.Event) -> None:
        self.event = event
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def _fire(due: list[_Alarmed]) -> None:
    for alarmed in due:
        if not alarmed.cancelled:
            alarmed.event.set()
