"""The bench's pure parts: slots on a grid, percentiles, and how the operator part rewrites
its section and goal rows of bench/RESULTS.md."""

from __future__ import annotations

import math
from pathlib import Path

from bench import bench_operator, measuring, recording


def test_a_run_belongs_to_the_latest_slot_of_its_grid_at_or_before_its_start() -> None:
    assert recording.grid_slot(10.003, anchor=4.0, period=1.0) == 10.0
    assert recording.grid_slot(10.0, anchor=4.0, period=1.0) == 10.0
    assert math.isclose(recording.grid_slot(10.26, anchor=4.0, period=0.1), 10.2)


def test_percentiles_are_nearest_rank_and_medians_skip_missing_values() -> None:
    values = [float(v) for v in range(1, 101)]
    assert measuring.percentile(values, 0.5) == 50.0
    assert measuring.percentile(values, 0.99) == 99.0
    assert measuring.percentile([3.0], 0.99) == 3.0
    assert math.isnan(measuring.percentile([], 0.5))
    assert measuring.median([1.0, math.nan, 3.0]) == 2.0


def test_records_written_by_one_process_are_read_back_with_their_lateness(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.txt"
    path.write_text("tickwork r1 100.000000 100.002500 Bench\nbad line\n")
    (run,) = recording.read(path)
    assert (run.system, run.replica, run.job) == ("tickwork", "r1", "Bench")
    assert math.isclose(run.lateness, 0.0025, abs_tol=1e-9)


def test_the_operator_part_replaces_its_section_and_its_goal_rows_only(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text(
        "# Benchmark results\n\n## The goals of issue 14 in this run\n\n"
        "| goal | measured | met |\n|---|---|---|\n| lateness | 1.0x | yes |\n"
        "| operator burst rate >= 2x the Go baseline's (default settings) | old | **no** |\n\n"
        "## Operator next to a Go controller-runtime reconciler (kwok nodes)\n\nold table\n\n"
        "## After\n\nkept\n"
    )
    figures = {
        "resources": 2, "burst": 10,
        "tickwork": {"burst_rate": 50.0, "burst_requests_per_worker": 4.0, "rss_mib": 100.0},
        "go-baseline": {"burst_rate": 20.0, "burst_requests_per_worker": 3.0, "rss_mib": 60.0},
    }  # fmt: skip
    bench_operator.replace_section(results, ["## Operator (new)", "", "new table"], "note", figures)
    text = results.read_text()
    assert "old" not in text
    assert "| lateness | 1.0x | yes |" in text and "## After\n\nkept" in text
    assert "| 50.0/s vs 20.0/s (2.50x) | yes |" in text
    assert "| operator RSS <= 150 MiB with 12 resources | 100 MiB | yes |" in text
    assert "## Operator (new)\n\nnote\n\nnew table" in text
