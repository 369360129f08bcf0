"""A real Prometheus scrapes a real ``tickwork run`` and answers PromQL about it.

One Prometheus (127.0.0.1, free port, its own storage in a temporary directory, 500 ms
scrape and rule interval, loaded with monitoring/alerts.yaml) scrapes one ``tickwork run``
of tests.workers.metrics_probe (200 ms, rate mode, in-process lease). The probe appends
one line per successful tick to a file: the runtime's own count, compared with the metrics.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import pytest
import yaml

from tests.integration.prometheus_support import (
    ALERTS,
    LABEL_VALUES,
    PrometheusServer,
    dashboard_queries,
    dashboard_variable_queries,
    http_get,
    is_number,
    load_dashboard,
    sample_value,
)
from tests.support.processes import free_port, start_tickwork, stop, wait_until
from tests.workers.metrics_probe import HOLD_FILE_ENV, TICKS_FILE_ENV, holding_marker

pytestmark = pytest.mark.integration

PROBE = "tests.workers.metrics_probe:MetricsProbeWorker"
WORKER = "metrics-probe"
SUCCESS = f'tickwork_ticks_total{{worker="{WORKER}",outcome="success"}}'
LATENESS_P90 = (
    "histogram_quantile(0.9, sum by (le) (rate(tickwork_tick_lateness_seconds_bucket[10s])))"
)
#: How dashboard variables are filled in when the test runs the dashboard's queries.
# The job and instance variables at "All" (their allValue); the worker variable at ours.
DASHBOARD_VARIABLES = {"$__rate_interval": "5s", "$worker": WORKER, "$job": ".+", "$instance": ".+"}


@dataclass
class Stack:
    worker: Popen[bytes]
    metrics_url: str
    prometheus: PrometheusServer
    ticks_file: Path
    hold_file: Path
    log_path: Path

    def own_count(self) -> int:
        """The worker's own count of its successful ticks."""
        if not self.ticks_file.exists():
            return 0
        return len(self.ticks_file.read_text(encoding="utf-8").splitlines())

    def scrape(self) -> str:
        status, body = http_get(f"{self.metrics_url}/metrics")
        assert status == 200
        return body.decode()

    def runtime_value(self, name: str, **labels: str) -> float | None:
        return sample_value(self.scrape(), name, worker=WORKER, **labels)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    ticks_file, hold_file, log_path = tmp / "ticks.txt", tmp / "hold", tmp / "tickwork.log"
    # Built first: it fails with "run `make prometheus`" when the binary is missing.
    prometheus = PrometheusServer(
        tmp / "prometheus", targets=[f"127.0.0.1:{port}"], rule_files=[ALERTS]
    )
    args = ["run", PROBE, "--period", "200ms", "--mode", "rate"]
    worker = start_tickwork(
        [*args, "--metrics-port", str(port), "--metrics-host", "127.0.0.1"],
        env={TICKS_FILE_ENV: str(ticks_file), HOLD_FILE_ENV: str(hold_file)},
        log_path=log_path,
    )
    try:
        stack = Stack(
            worker, f"http://127.0.0.1:{port}", prometheus, ticks_file, hold_file, log_path
        )
        wait_until(lambda: _answers(stack), timeout=15, interval=0.1, what="tickwork /readyz")
        prometheus.start()
        # Prometheus 2.42 applies a new scrape config's targets after up to 5 s.
        prometheus.wait_for_value("up", lambda v: v == 1, timeout=30, what="the first scrape")
        yield stack
    finally:
        hold_file.unlink(missing_ok=True)
        prometheus.stop()
        stop(worker)


def _answers(stack: Stack) -> bool:
    if stack.worker.poll() is not None:
        raise AssertionError(f"tickwork exited with {stack.worker.returncode}:\n{stack.log()}")
    try:
        return http_get(f"{stack.metrics_url}/readyz", timeout=1)[0] == 200
    except OSError:
        return False


def test_the_running_worker_answers_healthz_and_readyz_with_200(stack: Stack) -> None:
    for path in ("/healthz", "/readyz"):
        status, body = http_get(stack.metrics_url + path)
        assert (status, body.decode().startswith("ok")) == (200, True), (path, body)


def test_prometheus_scrapes_the_worker_and_sees_ticks_total_grow(stack: Stack) -> None:
    prom = stack.prometheus
    up = prom.wait_for_value('up{job="tickwork"}', lambda v: v == 1, what="the target up")
    assert up == 1
    first = prom.wait_for_value(SUCCESS, lambda v: v > 0, what="a scraped tick")
    later = prom.wait_for_value(SUCCESS, lambda v: v >= first + 5, what="five more ticks")
    assert later > first
    # A full 5 s of samples, so that rate() needs no extrapolation from a partial window.
    prom.wait_for_value(f"count_over_time({SUCCESS}[5s])", lambda v: v >= 9, what="5 s of data")
    rate = prom.scalar(f"rate({SUCCESS}[5s])")
    assert rate is not None
    assert 2.5 <= rate <= 7.5, f"{rate} ticks/s from a 200 ms worker"
    for outcome in ("failure", "timeout", "cancelled"):
        failed = prom.scalar(f'tickwork_ticks_total{{worker="{WORKER}",outcome="{outcome}"}}')
        assert failed == 0, outcome


def test_ticks_total_in_prometheus_equals_the_workers_own_count_exactly(stack: Stack) -> None:
    prom = stack.prometheus
    prom.wait_for_value(SUCCESS, lambda v: v >= 3, what="three scraped ticks")
    # Freeze: the next tick waits for the hold file to go. Ticks never overlap, so when
    # the probe says it is holding, every earlier tick has ended and been counted.
    stack.hold_file.touch()
    try:
        wait_until(holding_marker(stack.hold_file).exists, timeout=10, what="a held tick")
        frozen_at = time.time()
        own = stack.own_count()
        assert own >= 3
        assert stack.runtime_value("tickwork_ticks_in_progress") == 1
        assert stack.runtime_value("tickwork_ticks_total", outcome="success") == own
        # A scrape that happened after the freeze (Prometheus runs on this host's clock).
        scraped_at = prom.wait_for_value(
            f"timestamp({SUCCESS})",
            lambda ts: ts > frozen_at + 0.1,
            what="a scrape after the freeze",
        )
        # The values of that one scrape (queried at its timestamp).
        assert prom.scalar(SUCCESS, at=scraped_at) == own
        everything = f'sum(tickwork_ticks_total{{worker="{WORKER}"}})'
        assert prom.scalar(everything, at=scraped_at) == own
        in_progress = f'tickwork_ticks_in_progress{{worker="{WORKER}"}}'
        assert prom.scalar(in_progress, at=scraped_at) == 1
        assert stack.own_count() == own, "the worker ticked while held"
    finally:
        stack.hold_file.unlink(missing_ok=True)
    wait_until(lambda: stack.own_count() > own, timeout=10, what="ticks after the hold")


def test_lateness_quantiles_are_queryable_with_histogram_quantile(stack: Stack) -> None:
    p90 = stack.prometheus.wait_for_value(LATENESS_P90, is_number, what="a lateness p90")
    # Buckets run from 1 ms to 60 s; a 200 ms worker on an idle loop starts within ms.
    assert 0 <= p90 <= 60


def test_every_dashboard_query_runs_on_prometheus_and_returns_series(stack: Stack) -> None:
    prom = stack.prometheus
    dashboard = load_dashboard()
    prom.wait_for_value(LATENESS_P90, is_number, what="a lateness p90")
    for title, expr in dashboard_queries(dashboard):
        query = expr
        for variable, value in DASHBOARD_VARIABLES.items():
            query = query.replace(variable, value)
        assert "$" not in query, f"{title}: unfilled variable in {query}"
        result = prom.query(query)  # raises on a PromQL error
        assert result, f"{title}: no series for {query}"
        values = [float(series["value"][1]) for series in result]
        assert all(not math.isinf(v) for v in values), f"{title}: {query} = {values}"
    for name, query in dashboard_variable_queries(dashboard):
        for variable, value in DASHBOARD_VARIABLES.items():
            query = query.replace(variable, value)
        match = LABEL_VALUES.match(query)
        assert match, f"variable {name}: only label_values(selector, label) is supported here"
        selector, label = match.groups()
        values = prom.api(f"label/{label}/values", **{"match[]": selector})
        assert values, f"variable {name}: no values for {query}"
        if name == "worker":
            assert WORKER in values, f"variable {name}: {values}"


def test_the_alert_rules_evaluate_cleanly_and_stay_silent_for_a_healthy_worker(
    stack: Stack,
) -> None:
    prom = stack.prometheus

    def evaluated() -> list[dict[str, object]] | None:
        rules = [rule for group in prom.api("rules")["groups"] for rule in group["rules"]]
        done = all(not str(rule["lastEvaluation"]).startswith("0001") for rule in rules)
        return rules if rules and done else None

    # Evaluate twice after the worker has ticked for a while.
    prom.wait_for_value(SUCCESS, lambda v: v >= 10, what="ten scraped ticks")
    time.sleep(1.2)
    rules = wait_until(evaluated, timeout=20, interval=0.2, what="every rule evaluated")
    alerts = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"][0]["rules"]
    assert sorted(rule["name"] for rule in rules) == sorted(rule["alert"] for rule in alerts)
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
    assert prom.api("alerts")["alerts"] == []


def test_sigterm_stops_the_scraped_worker_with_exit_code_0(stack: Stack) -> None:
    prom = stack.prometheus
    prom.wait_for_value(SUCCESS, lambda v: v > 0, what="a scraped tick")
    assert stop(stack.worker, sig=signal.SIGTERM, timeout=30) == 0, stack.log()
    own = stack.own_count()
    # Prometheus never saw a tick the worker did not count itself.
    last = prom.scalar(f"last_over_time({SUCCESS}[1m])")
    assert last is not None
    assert 0 < last <= own
    assert "all workers stopped" in stack.log()
