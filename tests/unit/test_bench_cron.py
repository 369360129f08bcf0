"""Smoke test of bench/bench_cron.py: it runs, both libraries agree, and it prints numbers."""

from __future__ import annotations

import pytest

from tests.support.benches import load_bench


def test_the_cron_bench_agrees_with_cronsim_and_prints_median_and_worst_case(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_bench("bench_cron", monkeypatch).main(["--quick"]) == 0
    out = capsys.readouterr().out
    for title in ("next fire time after an arbitrary instant", "successive fire times"):
        assert f"-- {title}" in out
    assert out.count("  median: tickwork ") == 2
    assert out.count("  worst case: tickwork ") == 2
