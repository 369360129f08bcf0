"""The work queue: which resources to reconcile again, and when.

* ``add_after(key, delay)`` asks for a reconcile after ``delay`` (the earliest request wins);
* ``backoff(key, ...)`` asks again after an exponentially growing, capped delay — one
  streak per key and per cause (``degraded``, ``transient``, ...), until ``reset``;
* ``due()`` takes the keys whose time has come; ``next_at()`` says when the next one is;
* ``wait(stop, until)`` sleeps until the next key is due, a new earlier request arrives, or
  ``stop`` is set.

Pure bookkeeping with an injected monotonic clock: no I/O, no Kubernetes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Backoff", "WorkQueue"]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """``initial_seconds · 2^n``, at most ``max_seconds``, for the n-th retry of a streak."""

    initial_seconds: float
    max_seconds: float

    def delay(self, attempt: int) -> float:
        return min(self.max_seconds, self.initial_seconds * 2.0 ** min(attempt, 62))


class WorkQueue(Generic[K]):
    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._deadlines: dict[K, float] = {}
        self._streaks: dict[tuple[K, str], int] = {}
        self._wake = asyncio.Event()

    def __contains__(self, key: object) -> bool:
        return key in self._deadlines

    def deadline(self, key: K) -> float | None:
        return self._deadlines.get(key)

    def add_after(self, key: K, delay_seconds: float) -> None:
        deadline = self._monotonic() + max(0.0, delay_seconds)
        current = self._deadlines.get(key)
        if current is None or deadline < current:
            self._deadlines[key] = deadline
            self._wake.set()

    def backoff(self, key: K, cause: str, policy: Backoff) -> float:
        """Requeue ``key`` after the next delay of its ``cause`` streak; returns the delay."""
        attempt = self._streaks.get((key, cause), 0)
        self._streaks[(key, cause)] = attempt + 1
        delay = policy.delay(attempt)
        self.add_after(key, delay)
        return delay

    def reset(self, key: K, cause: str) -> None:
        self._streaks.pop((key, cause), None)

    def forget(self, key: K) -> None:
        self._deadlines.pop(key, None)
        for streak in [s for s in self._streaks if s[0] == key]:
            del self._streaks[streak]

    def next_at(self) -> float | None:
        return min(self._deadlines.values(), default=None)

    def due(self) -> list[K]:
        now = self._monotonic()
        keys = [key for key, at in self._deadlines.items() if at <= now]
        for key in keys:
            del self._deadlines[key]
        return keys

    async def wait(self, stop: asyncio.Event, *, until: float) -> None:
        """Sleep until ``until`` (monotonic), an earlier request, or ``stop``."""
        self._wake.clear()
        wake_at = min(until, self.next_at() or until)
        delay = wake_at - self._monotonic()
        if delay <= 0 or stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await _first_of(stop, self._wake)


async def _first_of(*events: asyncio.Event) -> None:
    """Return as soon as one of ``events`` is set."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(e.wait()) for e in events]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
