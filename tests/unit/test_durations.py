from datetime import timedelta

import pytest

from worker_runtime.durations import format_duration, parse_duration, to_seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("10m", 600),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2.5", 2.5),
        ("1d", 86400),
    ],
)
def test_durations_are_read_the_way_operators_write_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ten", "10x", "m10", "-1", "1h-5m", "5 m", "nan"])
def test_a_bad_duration_is_refused_with_a_message_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="period") as info:
        parse_duration(text, what="period")
    assert "\n" not in str(info.value)
    if text:
        assert repr(text) in str(info.value)


def test_timedeltas_numbers_and_strings_all_become_seconds() -> None:
    assert to_seconds(timedelta(minutes=2)) == 120
    assert to_seconds(3) == 3.0
    assert to_seconds("250ms") == 0.25
    with pytest.raises(TypeError, match="True"):
        to_seconds(True)


def test_durations_print_in_their_shortest_form() -> None:
    assert format_duration(0.2) == "200ms"
    assert format_duration(90) == "1m30s"
    assert format_duration(3600) == "1h"
    assert format_duration(0) == "0s"
