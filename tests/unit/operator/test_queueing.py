"""The work queue: delays, per-cause backoff streaks, and waking up on earlier requests."""

from __future__ import annotations

import asyncio

from worker_operator.queueing import Backoff, WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_from_its_first_delay_up_to_its_cap() -> None:
    policy = Backoff(initial_seconds=15, max_seconds=300)

    assert [policy.delay(n) for n in range(7)] == [15, 30, 60, 120, 240, 300, 300]
    assert policy.delay(10_000) == 300


def test_the_earliest_request_wins_and_due_keys_are_taken_once() -> None:
    clock = Clock()
    queue: WorkQueue[str] = WorkQueue(monotonic=clock)

    queue.add_after("a", 10)
    queue.add_after("a", 30)
    queue.add_after("b", 5)
    clock.now += 6
    first = queue.due()
    clock.now += 5
    second = queue.due()

    assert (first, second, queue.due()) == (["b"], ["a"], [])


def test_each_cause_has_its_own_streak_until_reset() -> None:
    clock = Clock()
    queue: WorkQueue[str] = WorkQueue(monotonic=clock)
    policy = Backoff(initial_seconds=1, max_seconds=8)

    errors = [queue.backoff("a", "error", policy) for _ in range(5)]
    degraded = queue.backoff("a", "degraded", policy)
    queue.reset("a", "error")
    again = queue.backoff("a", "error", policy)
    queue.forget("a")

    assert errors == [1, 2, 4, 8, 8]
    assert (degraded, again) == (1, 1)
    assert queue.deadline("a") is None
    assert queue.backoff("a", "degraded", policy) == 1  # forgotten with its key


async def test_a_waiting_loop_wakes_for_an_earlier_request_or_stop() -> None:
    queue: WorkQueue[str] = WorkQueue()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    waiter = asyncio.create_task(queue.wait(stop, until=loop.time() + 60))
    await asyncio.sleep(0)

    queue.add_after("a", 0)
    await asyncio.wait_for(waiter, timeout=5)
    stopped = asyncio.create_task(queue.wait(stop, until=loop.time() + 60))
    await asyncio.sleep(0)
    stop.set()
    await asyncio.wait_for(stopped, timeout=5)

    assert queue.due() == ["a"]
