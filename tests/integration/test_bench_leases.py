"""Smoke tests of bench/bench_leases.py and bench/bench_durable_writes.py on real servers."""

from __future__ import annotations

import pytest

from tests.support.benches import load_bench

pytestmark = pytest.mark.integration


def test_the_lease_bench_times_every_operation_next_to_ping(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_bench("bench_leases", monkeypatch)
    monkeypatch.setattr(bench, "ROUNDS", 20)
    monkeypatch.setattr(bench, "REPEATS", 2)
    monkeypatch.setattr(bench, "FSYNC_MODES", ("everysec",))

    bench.run()

    out = capsys.readouterr().out
    for name in ("PING (peer)", "acquire (refused)", "renew", "claim slot", "load state"):
        assert name in out, out


def test_the_durable_writes_bench_times_claims_with_and_without_a_replica_ack(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_bench("bench_durable_writes", monkeypatch)
    monkeypatch.setattr(bench, "ROUNDS", 20)
    monkeypatch.setattr(bench, "BURST", 5)
    monkeypatch.setattr(bench, "REPEATS", 2)

    bench.main()

    out = capsys.readouterr().out
    assert "durable" in out, out
