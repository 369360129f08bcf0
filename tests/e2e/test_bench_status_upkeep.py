"""A smoke version of bench/bench_status_upkeep.py: a handful of workers for a few seconds,
and a few successful status reads, so the benchmark cannot rot."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.e2e.test_operator import crd  # noqa: F401 (the CRD, applied as a user would)

pytestmark = pytest.mark.e2e

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_status_upkeep.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_status_upkeep", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_status_upkeep"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("crd")
def test_the_status_upkeep_bench_measures_a_small_fleet_and_successful_reads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench = _bench()

    bench.fleet(3, 3.0, "1s")
    asyncio.run(bench.successful_reads(20))

    out = capsys.readouterr().out
    assert "3 workers Ready after" in out, out
    assert "operator CPU:" in out and "API requests in all:" in out, out
    assert "20 successful status reads:" in out, out
