"""Smoke versions of the side-by-side bench (bench/harness.py): every system, every part,
small and short (seconds each), so that the benchmarks cannot rot. The numbers are not
judged here (the machine is shared); what each system guarantees is."""

from __future__ import annotations

import argparse
import math
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import harness, systems

pytestmark = pytest.mark.integration

TTL_SECONDS = 2.0


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Bench]:
    missing = systems.missing_peers()
    if missing:
        pytest.fail(f"peers {missing} are not installed: run `make bench-peers`", pytrace=False)
    run = harness.Bench(tmp_path_factory.mktemp("bench"), lease_ttl_seconds=TTL_SECONDS)
    yield run
    run.close()


@pytest.fixture(scope="module")
def steady_at_one_second(bench: harness.Bench) -> dict[str, harness.Steady]:
    return {
        system: harness.steady(bench, system, start, period=1.0, seconds=3.0)
        for system, start in harness.lateness_systems(1.0).items()
    }


def test_every_system_runs_its_job_and_records_when_it_started(
    steady_at_one_second: dict[str, harness.Steady],
) -> None:
    assert set(steady_at_one_second) == {
        "tickwork x3 (Redis)", "apscheduler3 x1", "apscheduler3 x3", "apscheduler4 x1",
        "redbeat (2 beats + worker)", "arq x3",
    }  # fmt: skip
    for system, result in steady_at_one_second.items():
        assert result.slots >= 2, system
        assert 0 <= result.p50 <= result.p99 < 1.0, (system, result.lateness)


def test_tickwork_redbeat_and_arq_run_each_slot_once_while_three_apschedulers_run_it_thrice(
    steady_at_one_second: dict[str, harness.Steady],
) -> None:
    most = {system: r.max_runs_per_slot for system, r in steady_at_one_second.items()}
    assert most == {
        "tickwork x3 (Redis)": 1, "apscheduler3 x1": 1, "apscheduler3 x3": 3,
        "apscheduler4 x1": 1, "redbeat (2 beats + worker)": 1, "arq x3": 1,
    }  # fmt: skip


def test_redis_commands_are_counted_for_the_systems_that_use_redis_and_only_for_them(
    steady_at_one_second: dict[str, harness.Steady],
) -> None:
    for system, result in steady_at_one_second.items():
        uses_redis = not system.startswith("apscheduler")
        assert (result.commands_per_run > 0) == uses_redis, (system, result.commands)


def test_at_100_ms_tickwork_and_apscheduler_run_ten_slots_a_second(bench: harness.Bench) -> None:
    table = harness.lateness_systems(0.1)
    assert "arq x3" not in table  # arq's cron has one-second resolution
    for system in ("tickwork x3 (Redis)", "apscheduler3 x1"):
        result = harness.steady(bench, system, table[system], period=0.1, seconds=1.5)
        assert result.slots >= 10, system
        assert result.max_runs_per_slot == 1, system
        assert result.p99 < 0.1, (system, result.lateness)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
@pytest.mark.parametrize("system", ["tickwork", "redbeat"])
def test_the_failover_bench_times_the_next_run_after_the_holder_is_signalled(
    bench: harness.Bench, system: str, sig: signal.Signals
) -> None:
    (takeover,) = harness.failover(bench, system, sig=sig, samples=1)
    assert takeover.system == system and takeover.sig == sig.name
    # the next run comes within the TTL (a killed holder's lease or lock expires) + a period
    assert 0 < takeover.seconds < TTL_SECONDS + 2.0
    assert takeover.past_due >= -0.05
    assert takeover.other_replica


def test_the_many_workers_bench_runs_every_slot_of_every_worker_once(
    bench: harness.Bench,
) -> None:
    workers = 20
    for system, start in harness.many_systems(workers).items():
        result = harness.steady(bench, system, start, period=1.0, seconds=3.0, per_second=workers)
        assert result.max_runs_per_slot == 1, system
        assert result.runs_per_second >= 0.8 * workers, (system, result.runs)
        # CPU is read in clock ticks (10 ms): 20 idle jobs over 3 s may show 0
        assert 0 <= result.cpu_share < 2 and result.rss_mib > 10, system


def test_py_spy_summarises_where_a_tickwork_process_spends_its_time(
    bench: harness.Bench, tmp_path: Path
) -> None:
    with bench.system("profile") as settings:
        (proc,) = harness.many_systems(20)["tickwork (Redis leases)"](settings)
        try:
            profile = harness.py_spy_profile(proc.pid, 2.0, tmp_path / "profile")
        finally:
            harness.stop_all([proc])
    assert profile, "py-spy recorded no samples"
    assert math.isclose(sum(share for _, share in profile), 1.0, abs_tol=0.9)
    assert all(0 < share <= 1 for _, share in profile)


def test_the_results_file_has_a_table_per_measurement_with_ratios_to_apscheduler(
    steady_at_one_second: dict[str, harness.Steady],
) -> None:
    args = argparse.Namespace(
        repeats=1, seconds=3.0, fast_seconds=1.5, ttl=TTL_SECONDS, workers=20, takeovers=1
    )
    report = harness.Report(started=datetime.now(UTC), args=args)
    report.lateness[1.0] = {system: [r] for system, r in steady_at_one_second.items()}
    report.takeovers = [harness.Takeover("tickwork", "SIGTERM", 0.4, 0.002, 0, True)]
    text = harness.render(report)
    assert "### Start lateness at 1000 ms, measured inside the job" in text
    assert "| apscheduler3 x1 | 1 |" in text and "| 1.00x | 1.00x |" in text
    assert "| tickwork | SIGTERM | 1 | 0.40 |" in text
    assert "Redis 7" in text and "load (/proc/loadavg)" in text


def test_an_unknown_part_is_refused_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert harness.main(["--only", "lateness,bogus"]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and "expected lateness, failover, many, operator" in err
