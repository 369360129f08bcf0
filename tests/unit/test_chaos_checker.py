"""The chaos checker must catch what it claims to catch (a checker that cannot fail is useless)."""

from tests.support.chaos import Execution, Fault, check

P = 0.1


def _run(n: int, *, skip: set[int] = frozenset(), replica: str = "a") -> list[Execution]:  # type: ignore[assignment]
    return [
        Execution(slot=k * P, replica=replica, token=1, start=k * P + 0.001, end=k * P + 0.02)
        for k in range(n)
        if k not in skip
    ]


def test_a_clean_run_passes() -> None:
    v = check(_run(50), [], period=P, anchor=0.0, ttl=1.0, end_of_run=10)
    assert v.ok and v.slots_expected == 50 and not v.missed


def test_a_slot_run_twice_is_caught() -> None:
    runs = [*_run(10), Execution(slot=0.5, replica="b", token=2, start=0.53, end=0.54)]
    v = check(runs, [], period=P, anchor=0.0, ttl=1.0, end_of_run=10)
    assert v.duplicates == [0.5]


def test_two_executions_overlapping_in_time_are_caught() -> None:
    runs = [
        Execution(slot=0.0, replica="a", token=1, start=0.0, end=0.25),
        Execution(slot=0.1, replica="b", token=2, start=0.1, end=0.12),
    ]
    v = check(runs, [], period=P, anchor=0.0, ttl=1.0, end_of_run=10)
    assert len(v.overlaps) == 1 and not v.ok


def test_a_run_cut_short_by_a_kill_ends_at_the_kill() -> None:
    runs = [
        Execution(slot=0.0, replica="a", token=1, start=0.0, end=None),
        Execution(slot=1.5, replica="b", token=2, start=1.5, end=1.52),
    ]
    killed = {"a": [0.05]}
    v = check(
        runs,
        [Fault("kill", 0.05, 0.05, "a")],
        period=P,
        anchor=0.0,
        ttl=1.2,
        end_of_run=10,
        kill_times=killed,
    )
    assert not v.overlaps and not v.unexplained_misses and len(v.missed) == 14


def test_a_miss_outside_every_failover_window_is_caught() -> None:
    v = check(
        _run(50, skip={30}),
        [Fault("term", 1.0, 1.0, "a")],
        period=P,
        anchor=0.0,
        ttl=1.0,
        end_of_run=10,
    )
    assert v.unexplained_misses == [3.0]


def test_a_fencing_token_going_back_is_caught() -> None:
    runs = [
        Execution(slot=0.0, replica="a", token=5, start=0.0, end=0.01),
        Execution(slot=0.1, replica="b", token=4, start=0.1, end=0.11),
    ]
    assert len(check(runs, [], period=P, anchor=0.0, ttl=1.0, end_of_run=10).token_regressions) == 1


def test_a_slot_skipped_because_the_previous_run_was_still_going_is_explained_as_overlap() -> None:
    runs = _run(10, skip={5})
    runs[4] = Execution(slot=0.4, replica="a", token=1, start=0.41, end=0.52)  # ran past slot 0.5
    v = check(runs, [], period=P, anchor=0.0, ttl=1.0, end_of_run=10)
    assert v.ok and v.overlapped == [0.5] and not v.unexplained_misses
