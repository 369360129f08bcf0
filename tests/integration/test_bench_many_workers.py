"""A smoke test of ``bench/bench_many_workers.py``: the bench runs, small, in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.benches import load_bench

pytestmark = pytest.mark.integration


def test_the_many_workers_bench_runs_every_slot_and_releases_every_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_bench("bench_many_workers", monkeypatch)
    result = bench.run(workers=20, seconds=3.0, directory=tmp_path)
    print(result.report())
    assert result.ticks >= 20 * 2
    assert (result.misfires, result.overlaps) == (0, 0)
    assert (result.exit_code, result.leases_left) == (0, 0)
    assert result.exit_seconds < 10
    assert 0 < result.lateness_p99_seconds < 1.0
