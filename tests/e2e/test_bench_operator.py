"""A smoke version of bench/bench_operator.py: both operators (Tickwork's and the Go
controller-runtime baseline) on the test control plane, a handful of resources each."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import bench_operator

pytestmark = pytest.mark.e2e


def test_the_operator_bench_measures_both_operators_with_the_api_servers_own_request_count(
    kubeconfig: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    results = bench_operator.run(resources=3, burst=10, ready=2, base=tmp_path)
    for which in bench_operator.OPERATORS:
        figures = results[which]
        assert 0 < figures["sequential_p50"] <= figures["sequential_p99"] < 30, which
        # kwok makes each worker's one pod Ready: the Deployment says so, and the Tickwork
        # operator's own Ready condition follows it
        assert 0 < figures["available_p50"] <= figures["available_max"] < 120, which
        if which == "tickwork":
            assert figures["available_p50"] <= figures["ready_p50"] <= figures["ready_max"] < 120
        else:
            assert figures["ready_p50"] is None
        assert figures["burst_rate"] > 0 and figures["burst_p99"] < 120, which
        # at least the apply of each Deployment, counted by the API server
        assert figures["burst_requests_per_worker"] >= 1, which
        assert figures["rss_mib"] > 5, which
    text = "\n".join(bench_operator.render(results))
    assert "| measurement | Tickwork operator | Go baseline | Tickwork / Go |" in text
    assert "time to Ready: create → the resource's Ready=True condition, p50 ms" in text
