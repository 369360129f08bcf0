"""Smoke test of bench/bench_metrics.py: it runs on today's metrics and prints its numbers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_metrics.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_metrics", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_metrics"] = module
    spec.loader.exec_module(module)
    return module


def test_the_metrics_bench_times_real_and_no_op_ticks_and_a_render(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _bench()
    monkeypatch.setattr(bench, "REPEATS", 3)
    monkeypatch.setattr(bench, "TICKS_PER_REPEAT", 500)
    monkeypatch.setattr(bench, "RENDERS_PER_REPEAT", 2)

    bench.bench_tick_instrumentation()
    bench.bench_render()

    out = capsys.readouterr().out
    for line in ("real metric calls", "no-op baseline", "instrumentation", "ms per render"):
        assert line in out, out
