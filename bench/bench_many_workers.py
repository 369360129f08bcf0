"""One ``tickwork run`` process carrying 1,000 workers at 1 s on Redis leases.

Prints, for a measuring window after every worker holds its lease: the process's CPU share
(of one core), its RSS, tick lateness (p50 and p99 from the runtime's own histogram, summed
over every worker), ticks run, slots missed (misfire) and skipped (overlap) — both must be 0 —
and then, after SIGTERM: how long the process took to exit and how many leases were left in
Redis (must be 0: every lease released within the shutdown grace).

Run: ``make bench`` or ``.venv/bin/python bench/bench_many_workers.py [WORKERS] [SECONDS]``.
The smoke test ``tests/integration/test_bench_many_workers.py`` runs it small.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import RedisServer, free_port, start_tickwork, wait_until

GRACE_SECONDS = 30.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Result:
    workers: int
    seconds: float
    cpu_share: float  # of one core, over the window
    rss_mib: float
    ticks: int
    lateness_p50_seconds: float
    lateness_p99_seconds: float
    misfires: int
    overlaps: int
    exit_code: int
    exit_seconds: float
    leases_left: int
    log_lines: int

    def report(self) -> str:
        return "\n".join(
            [
                f"{self.workers} workers at 1 s, one process, Redis leases; "
                f"{self.seconds:.0f} s window after every lease was held",
                f"  CPU share           {self.cpu_share * 100:.1f} % of one core",
                f"  RSS                 {self.rss_mib:.1f} MiB",
                f"  ticks               {self.ticks} ({self.ticks / self.seconds:.0f}/s)",
                f"  lateness p50 / p99  {self.lateness_p50_seconds * 1000:.1f} ms / "
                f"{self.lateness_p99_seconds * 1000:.1f} ms",
                f"  misfires            {self.misfires}",
                f"  overlaps            {self.overlaps}",
                f"  SIGTERM → exit      {self.exit_seconds:.2f} s (code {self.exit_code}, "
                f"grace {GRACE_SECONDS:g} s)",
                f"  leases left         {self.leases_left}",
                f"  log lines           {self.log_lines}",
            ]
        )


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _scrape(port: int) -> dict[str, dict[str, float]]:
    """Every tickwork sample summed over workers: {sample name: {le or "": value}}."""
    # 1,000 workers make a 5 MB exposition: under load it takes seconds to render.
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60).read()
    totals: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if not sample.name.startswith("tickwork_"):
                continue
            key = sample.labels.get("le", "") + "|" + sample.labels.get("reason", "")
            per = totals.setdefault(sample.name, {})
            per[key] = per.get(key, 0.0) + sample.value
    return totals


def _quantile(buckets: dict[float, float], q: float) -> float:
    """A quantile from cumulative histogram buckets (linear within a bucket)."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return 0.0
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def _lateness(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict:
    name = "tickwork_tick_lateness_seconds_bucket"
    return {
        float(key.split("|")[0]): after[name][key] - before[name].get(key, 0.0)
        for key in after[name]
    }


def run(*, workers: int = 1000, seconds: float = 30.0, directory: Path | None = None) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        base = directory or Path(tmp)
        server = RedisServer(base / "redis", appendfsync="everysec")
        server.start()
        port = free_port()
        log = base / "tickwork.log"
        names = [f"tests.workers.fleet:Fleet{i:04d}" for i in range(workers)]
        proc = start_tickwork(
            ["run", *names, "--redis-url", server.url, "--metrics-port", str(port),
             "--metrics-host", "127.0.0.1", "--shutdown-grace", f"{GRACE_SECONDS:g}s"],
            log_path=log,
        )  # fmt: skip
        client = redis.Redis.from_url(server.url)
        try:

            def leases() -> int:
                return sum(1 for _ in client.scan_iter(match="tickwork:{*}:lease", count=1000))

            wait_until(lambda: leases() >= workers, timeout=120, interval=0.5, what="leases")
            time.sleep(2.0)  # let the first slot of every worker pass
            # A scrape of 1,000 workers takes a while: the window runs from the middle of one
            # to the middle of the other (else ticks/s would read a few % short).
            wall_before = time.time()
            before, cpu_before = _scrape(port), _cpu_seconds(proc.pid)
            wall_before = (wall_before + time.time()) / 2
            rss = _rss_mib(proc.pid)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                rss = max(rss, _rss_mib(proc.pid))
            wall_after = time.time()
            after, cpu_after = _scrape(port), _cpu_seconds(proc.pid)
            wall_after = (wall_after + time.time()) / 2
            window = wall_after - wall_before
            lateness = _lateness(before, after)

            def delta(name: str, key: str = "|") -> int:
                return round(after[name].get(key, 0.0) - before[name].get(key, 0.0))

            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=GRACE_SECONDS + 30)
            exit_seconds = time.monotonic() - sent
            leases_left = leases()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            client.close()
            server.stop()
        return Result(
            workers=workers,
            seconds=window,
            cpu_share=(cpu_after - cpu_before) / window,
            rss_mib=rss,
            ticks=delta("tickwork_ticks_total"),
            lateness_p50_seconds=_quantile(lateness, 0.50),
            lateness_p99_seconds=_quantile(lateness, 0.99),
            misfires=delta("tickwork_ticks_skipped_total", "|misfire"),
            overlaps=delta("tickwork_ticks_skipped_total", "|overlap"),
            exit_code=code,
            exit_seconds=exit_seconds,
            leases_left=leases_left,
            log_lines=len(log.read_text(errors="replace").splitlines()),
        )


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    window = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    print(run(workers=count, seconds=window).report())
