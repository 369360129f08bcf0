"""Smoke test of bench/bench_metrics.py: it runs on today's metrics and prints its numbers."""

from __future__ import annotations

import pytest

from tests.support.benches import load_bench


def test_the_metrics_bench_times_real_and_no_op_ticks_and_a_render(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_bench("bench_metrics", monkeypatch)
    monkeypatch.setattr(bench, "REPEATS", 3)
    monkeypatch.setattr(bench, "TICKS_PER_REPEAT", 500)
    monkeypatch.setattr(bench, "RENDERS_PER_REPEAT", 2)
    monkeypatch.setattr(bench, "MEMORY_WORKERS", 10)

    bench.bench_tick_instrumentation()
    bench.bench_render()
    bench.bench_memory()

    out = capsys.readouterr().out
    for line in (
        "real metric calls",
        "no-op baseline",
        "instrumentation",
        "ms per render",
        "KiB per worker",
    ):
        assert line in out, out
