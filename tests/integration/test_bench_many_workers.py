"""A smoke test of ``bench/bench_many_workers.py``: the bench runs, small, in seconds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_many_workers.py"


def test_the_many_workers_bench_runs_every_slot_and_releases_every_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("bench_many_workers", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)
    spec.loader.exec_module(bench)
    result = bench.run(workers=20, seconds=3.0, directory=tmp_path)
    print(result.report())
    assert result.ticks >= 20 * 2
    assert (result.misfires, result.overlaps) == (0, 0)
    assert (result.exit_code, result.leases_left) == (0, 0)
    assert result.exit_seconds < 10
    assert 0 < result.lateness_p99_seconds < 1.0
