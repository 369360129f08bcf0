"""``ServerClock`` with controlled clocks: readings, their precision, and the skew warning."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from worker_runtime.clocks import CLOCK_SYNC_SECONDS, ServerClock
from worker_runtime.metrics import Metrics


class Clocks:
    def __init__(self) -> None:
        self.wall = 1_000_000.0
        self.mono = 50.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def _clock(clocks: Clocks, metrics: Metrics | None = None) -> ServerClock:
    return ServerClock(metrics=metrics, local=lambda: clocks.wall, monotonic=lambda: clocks.mono)


def test_the_server_clock_is_this_hosts_until_the_first_reading_then_the_servers() -> None:
    clocks = Clocks()
    clock = _clock(clocks)
    assert clock.now() == clocks.wall
    # The server is 3600 s ahead; the reading took 2 ms.
    clock.observe(clocks.wall + 3600, sent=clocks.mono - 0.002, received=clocks.mono)
    assert clock.now() == pytest.approx(clocks.wall + 3600.001)
    clocks.advance(5.0)
    assert clock.now() == pytest.approx(clocks.wall + 3600.001)


def test_a_step_of_this_hosts_wall_clock_does_not_move_the_server_clock() -> None:
    clocks = Clocks()
    clock = _clock(clocks)
    clock.observe(clocks.wall, sent=clocks.mono, received=clocks.mono)
    before = clock.now()
    clocks.wall -= 3600  # NTP steps the host's clock back an hour
    clocks.mono += 1.0
    assert clock.now() == pytest.approx(before + 1.0)


def test_a_less_exact_reading_does_not_replace_a_sharp_one_until_it_is_old() -> None:
    clocks = Clocks()
    clock = _clock(clocks)
    clock.observe(clocks.wall, sent=clocks.mono - 0.001, received=clocks.mono)
    sharp = clock.now()
    clocks.advance(1.0)
    # A slow reading (200 ms round trip) that would put the server 0.5 s ahead is ignored.
    clock.observe(clocks.wall + 0.5, sent=clocks.mono - 0.2, received=clocks.mono)
    assert clock.now() == pytest.approx(sharp + 1.0)
    clocks.advance(10 * CLOCK_SYNC_SECONDS)
    clock.observe(clocks.wall + 0.5, sent=clocks.mono - 0.2, received=clocks.mono)
    assert clock.now() == pytest.approx(clocks.wall + 0.6)


def test_readings_come_every_sync_interval_and_sooner_while_none_is_sharp() -> None:
    clocks = Clocks()
    clock = _clock(clocks)
    assert clock.due()
    assert not clock.due()
    clock.observe(clocks.wall, sent=clocks.mono - 0.1, received=clocks.mono)  # blurred
    clocks.advance(1.0)
    assert clock.due(), "a blurred reading is retried soon"
    clock.observe(clocks.wall, sent=clocks.mono - 0.001, received=clocks.mono)  # sharp
    clocks.advance(1.0)
    assert not clock.due()
    clocks.advance(CLOCK_SYNC_SECONDS)
    assert clock.due()


def test_an_offset_beyond_the_tolerance_is_exported_and_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clocks = Clocks()
    metrics = Metrics(CollectorRegistry())
    clock = _clock(clocks, metrics)
    for _ in range(3):
        clocks.advance(CLOCK_SYNC_SECONDS)
        clock.observe(clocks.wall - 3600, sent=clocks.mono, received=clocks.mono)
    assert metrics.registry.get_sample_value("tickwork_clock_offset_seconds") == -3600
    warnings = [r.getMessage() for r in caplog.records if "Redis server's" in r.getMessage()]
    assert warnings == [
        "this host's clock is 3600.000s ahead of the Redis server's; slots are planned on the "
        "server's clock (fix the host's time sync)"
    ]


def test_a_host_clock_that_reads_within_the_readings_window_is_taken_as_the_servers() -> None:
    clocks = Clocks()
    clock = _clock(clocks)
    # The server read 0.3 ms after the request left and the reply took 1.7 ms to come back:
    # the midpoint would put the server 0.7 ms behind this host, which agrees with it.
    clock.observe(clocks.wall - 0.0017, sent=clocks.mono - 0.002, received=clocks.mono)
    assert clock.now() == pytest.approx(clocks.wall, abs=1e-9)
    clocks.advance(1.0)
    assert clock.now() == pytest.approx(clocks.wall, abs=1e-9)
    # A server 2 s behind is outside the window: the midpoint.
    clocks.advance(10 * CLOCK_SYNC_SECONDS)
    clock.observe(clocks.wall - 2.0, sent=clocks.mono - 0.002, received=clocks.mono)
    assert clock.now() == pytest.approx(clocks.wall - 1.999)
