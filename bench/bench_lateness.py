"""Start lateness as ``do_work`` feels it: 3 ``tickwork run`` replicas on one Redis.

Each replica runs ``tests.workers.sample:Ticker`` (which logs ``time.time()`` as the first
thing ``do_work`` does); lateness is that minus the slot, over every tick of a window, for a
1 s and a 100 ms period. Prints p50 and p99 per period.

Run: ``.venv/bin/python bench/bench_lateness.py [TICKS_AT_1S] [TICKS_AT_100MS]``.
The smoke test ``tests/integration/test_bench_lateness.py`` runs it small.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.processes import RedisServer, read_events, start_tickwork, stop, wait_until

REPLICAS = 3
WARM_UP_TICKS = 3


@dataclass(frozen=True)
class Result:
    period: str
    ticks: int
    p50_seconds: float
    p99_seconds: float
    replicas_that_ran: int

    def report(self) -> str:
        return (
            f"period {self.period:>5}: {self.ticks} ticks on {self.replicas_that_ran} of "
            f"{REPLICAS} replicas, lateness p50 {self.p50_seconds * 1000:.2f} ms / "
            f"p99 {self.p99_seconds * 1000:.2f} ms"
        )


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(*, period: str, ticks: int, directory: Path | None = None) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        base = directory or Path(tmp)
        server = RedisServer(base / f"redis-{period}")
        server.start()
        log = base / f"events-{period}.jsonl"
        procs = [
            start_tickwork(
                ["run", "tests.workers.sample:Ticker", "--period", period, "--redis-url",
                 server.url, "--replica-id", f"r{i}", "--metrics-port", "0"],
                env={"TICKWORK_TEST_LOG": str(log)},
            )
            for i in range(REPLICAS)
        ]  # fmt: skip
        try:

            def starts() -> list[dict[str, object]]:
                return [e for e in read_events(log) if e["event"] == "start"]

            total = WARM_UP_TICKS + ticks
            wait_until(lambda: len(starts()) >= total, timeout=total * 5 + 30, what="ticks")
            events = starts()[WARM_UP_TICKS:total]
        finally:
            for proc in procs:
                stop(proc)
            server.stop()
    lateness = [float(e["time"]) - float(e["slot"]) for e in events]  # type: ignore[arg-type]
    return Result(
        period=period,
        ticks=len(lateness),
        p50_seconds=statistics.median(lateness),
        p99_seconds=_quantile(lateness, 0.99),
        replicas_that_ran=len({e["replica"] for e in events}),
    )


if __name__ == "__main__":
    at_1s = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    at_100ms = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    for period, ticks in (("1s", at_1s), ("100ms", at_100ms)):
        print(run(period=period, ticks=ticks).report(), flush=True)
