"""Waiting on several asyncio events at once, without leaking tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

__all__ = ["wait_any"]


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
