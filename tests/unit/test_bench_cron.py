"""Smoke test of bench/bench_cron.py: it runs, both libraries agree, and it prints numbers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_cron.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_cron", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_cron"] = module
    spec.loader.exec_module(module)
    return module


def test_the_cron_bench_agrees_with_cronsim_and_prints_median_and_worst_case(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _bench().main(["--quick"]) == 0
    out = capsys.readouterr().out
    for title in ("next fire time after an arbitrary instant", "successive fire times"):
        assert f"-- {title}" in out
    assert out.count("  median: tickwork ") == 2
    assert out.count("  worst case: tickwork ") == 2
