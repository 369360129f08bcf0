"""A smoke version of bench/bench_status_upkeep.py: a handful of workers for a few seconds,
and a few successful status reads, so the benchmark cannot rot."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.test_operator import crd  # noqa: F401 (the CRD, applied as a user would)
from tests.support.benches import load_bench

pytestmark = pytest.mark.e2e


@pytest.mark.usefixtures("crd")
def test_the_status_upkeep_bench_measures_a_small_fleet_and_successful_reads(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_bench("bench_status_upkeep", monkeypatch)

    bench.fleet(3, 3.0, "1s")
    asyncio.run(bench.successful_reads(20))

    out = capsys.readouterr().out
    assert "3 workers Ready after" in out, out
    assert "operator CPU:" in out and "API requests in all:" in out, out
    assert "20 successful status reads:" in out, out
