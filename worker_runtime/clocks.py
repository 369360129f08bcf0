"""``ServerClock``: one clock for every replica — the lease server's.

Slots are wall-clock instants shared by replicas on different hosts, and the last claimed slot
stays in Redis. If each replica planned on its own clock, one replica an hour ahead would claim
a slot an hour in the future and every replica would then wait for it; an hour behind, it would
hold the lease and run nothing. So replicas plan on the Redis server's clock: ``TIME`` is read
now and then (a few times a minute, piggybacked on the calls the leases make anyway), and
between readings the server's time is carried forward on this host's *monotonic* clock — so a
step of this host's wall clock (NTP, a VM resumed) changes nothing either.

This host's own offset from the server is exported (``tickwork_clock_offset_seconds``) and
logged when it exceeds ``CLOCK_TOLERANCE_SECONDS``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from worker_runtime.metrics import Metrics

__all__ = ["CLOCK_SYNC_SECONDS", "CLOCK_TOLERANCE_SECONDS", "ServerClock"]

log = logging.getLogger(__name__)

#: How often the server's clock is read (when the leases make calls at all); sooner while no
#: sharp reading (a round trip under ``_SHARP_ROUND_TRIP_SECONDS``) has been had.
CLOCK_SYNC_SECONDS = 10.0
_RESYNC_SECONDS = 0.5
#: A local clock this far off the server's is worth a warning; a slot recorded (or claimed)
#: this far ahead of the server's clock was planned on a wrong clock and is corrected.
CLOCK_TOLERANCE_SECONDS = 1.0
# A reading is as exact as half its round trip: one this quick needs no early retry.
_SHARP_ROUND_TRIP_SECONDS = 0.005
# Redis's TIME counts microseconds.
_TIME_RESOLUTION_SECONDS = 1e-6
# The best reading is kept this long against less exact ones.
_KEEP_SECONDS = 6 * CLOCK_SYNC_SECONDS


class ServerClock:
    def __init__(
        self,
        *,
        metrics: Metrics | None = None,
        local: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._local = local
        self._monotonic = monotonic
        self._base: tuple[float, float] | None = None  # (server time, monotonic) at a reading
        self._round_trip = float("inf")
        self._last_try: float | None = None
        self._warned_offset: float | None = None

    @property
    def synced(self) -> bool:
        return self._base is not None

    def now(self) -> float:
        """The server's time now (this host's clock until the first reading)."""
        if self._base is None:
            return self._local()
        server, mono = self._base
        return server + (self._monotonic() - mono)

    def due(self) -> bool:
        """True when a reading should be taken (marks it as being taken)."""
        mono = self._monotonic()
        every = (
            CLOCK_SYNC_SECONDS if self._round_trip <= _SHARP_ROUND_TRIP_SECONDS else _RESYNC_SECONDS
        )
        if self._last_try is not None and mono - self._last_try < every:
            return False
        self._last_try = mono
        return True

    def observe(self, server_time: float, *, sent: float, received: float) -> None:
        """A ``TIME`` reply read between the monotonic instants ``sent`` and ``received``."""
        round_trip = max(0.0, received - sent)
        if (
            self._base is not None
            and round_trip > self._round_trip * 1.5 + 0.001
            and received - self._base[1] < _KEEP_SECONDS
        ):
            return  # keep the sharper recent reading
        # At ``received`` the server's clock read between ``server_time`` and ``server_time``
        # plus the round trip (and TIME's microsecond). If this host's clock reads inside that
        # window it agrees with the server as far as can be told: take it (exact on the same
        # host, where the reply's way back through the client is slower than the request's
        # and the midpoint reads late). Otherwise the window's midpoint.
        local = self._local() - (self._monotonic() - received)
        if server_time <= local <= server_time + round_trip + _TIME_RESOLUTION_SECONDS:
            estimate = local
        else:
            estimate = server_time + round_trip / 2
        self._base = (estimate, received)
        self._round_trip = round_trip
        offset = self.now() - self._local()
        if self._metrics is not None:
            self._metrics.clock_offset.set(offset)
        self._report(offset)

    def _report(self, offset: float) -> None:
        if abs(offset) <= CLOCK_TOLERANCE_SECONDS:
            if self._warned_offset is not None:
                log.info("this host's clock agrees with the Redis server's again")
            self._warned_offset = None
            return
        if (
            self._warned_offset is not None
            and abs(offset - self._warned_offset) <= CLOCK_TOLERANCE_SECONDS
        ):
            return
        self._warned_offset = offset
        log.warning(
            "this host's clock is %.3fs %s the Redis server's; slots are planned on the "
            "server's clock (fix the host's time sync)",
            abs(offset),
            "behind" if offset > 0 else "ahead of",
        )
