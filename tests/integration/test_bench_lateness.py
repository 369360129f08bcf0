"""A smoke test of ``bench/bench_lateness.py``: the bench runs, small, in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.benches import load_bench

pytestmark = pytest.mark.integration


def test_the_lateness_bench_measures_the_ticks_of_three_replicas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_bench("bench_lateness", monkeypatch)
    result = bench.run(period="100ms", ticks=20, directory=tmp_path)
    print(result.report())
    assert result.ticks == 20
    assert 0 <= result.p50_seconds <= result.p99_seconds < 1.0
