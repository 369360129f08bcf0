"""``Alarm``: wakes the event loop at an instant, never early, and closer to it than asyncio's
own timers (whose ``epoll_wait`` timeout is rounded up to whole milliseconds)."""

from __future__ import annotations

import asyncio
import statistics
import threading

from worker_runtime.waiting import Alarm


async def _lateness_with_alarm(alarm: Alarm, when: float) -> float:
    event = asyncio.Event()
    await alarm.sleep_until(when, event)
    return asyncio.get_running_loop().time() - when


async def _lateness_with_asyncio(when: float) -> float:
    try:
        async with asyncio.timeout_at(when):
            await asyncio.Event().wait()
    except TimeoutError:
        pass
    return asyncio.get_running_loop().time() - when


def test_the_alarm_wakes_at_the_instant_never_early_and_closer_than_asyncio_timers() -> None:
    async def main() -> tuple[list[float], list[float]]:
        alarm = Alarm()
        loop = asyncio.get_running_loop()
        ours: list[float] = []
        theirs: list[float] = []
        try:
            for i in range(60):  # interleaved, so that both see the same machine load
                when = loop.time() + 0.0073 + (i % 7) * 0.0011  # not on a millisecond
                if i % 2:
                    ours.append(await _lateness_with_alarm(alarm, when))
                else:
                    theirs.append(await _lateness_with_asyncio(when))
        finally:
            alarm.close()
        return ours, theirs

    ours, theirs = asyncio.run(main())
    assert min(ours) >= 0, "the alarm woke before the instant"
    assert statistics.median(ours) < statistics.median(theirs), (ours, theirs)


def test_a_set_event_wakes_a_sleeper_early_and_close_stops_the_thread() -> None:
    async def main() -> float:
        alarm = Alarm()
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        started = loop.time()
        loop.call_later(0.02, event.set)
        try:
            await alarm.sleep_until(started + 5.0, event)
        finally:
            alarm.close()
        return loop.time() - started

    assert asyncio.run(main()) < 1.0
    assert not [t for t in threading.enumerate() if t.name == "tickwork-alarm"]


def test_many_sleepers_due_together_are_woken_together() -> None:
    async def main() -> list[float]:
        alarm = Alarm()
        loop = asyncio.get_running_loop()
        when = loop.time() + 0.02
        try:
            return list(
                await asyncio.gather(*(_lateness_with_alarm(alarm, when) for _ in range(500)))
            )
        finally:
            alarm.close()

    lateness = asyncio.run(main())
    assert min(lateness) >= 0
    assert max(lateness) < 0.5
