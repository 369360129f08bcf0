"""monitoring/: the alert rules, their promtool tests and the Grafana dashboard.

promtool is a local binary (no server); `make test` installs it (`make prometheus`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from typing import Any

import pytest
import yaml

from tests.integration.prometheus_support import (
    ALERTS,
    ALERTS_TEST,
    MONITORING,
    REPO,
    dashboard_panels,
    dashboard_queries,
    dashboard_variable_queries,
    exported_samples,
    load_dashboard,
    metric_names,
)

SEVERITIES = {"critical", "warning", "info"}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
#: A selector that filters by the dashboard's worker variable.
WORKER_FILTER = 'worker=~"$worker"'
#: ... and by its job and instance variables (every selector of every panel).
TARGET_FILTER = 'job=~"$job",instance=~"$instance"'


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not on PATH: run `make prometheus` (or `make test`)")
    return subprocess.run(
        [binary, *args], cwd=MONITORING, capture_output=True, text=True, timeout=120, check=False
    )


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def unknown_names(text: str) -> set[str]:
    return metric_names(text) - set(exported_samples())


# ------------------------------------------------------------------------------ promtool


def test_promtool_accepts_the_alert_rules() -> None:
    result = promtool("check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_fire_each_alert_in_its_case_and_nowhere_else() -> None:
    result = promtool("test", "rules", ALERTS_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_stays_silent() -> None:
    tests = yaml.safe_load(ALERTS_TEST.read_text(encoding="utf-8"))["tests"]
    checks = [check for test in tests for check in test.get("alert_rule_test", [])]
    for rule in alert_rules():
        name = rule["alert"]
        mine = [check for check in checks if check["alertname"] == name]
        assert any(check.get("exp_alerts") for check in mine), f"{name} is never seen firing"
        assert any(not check.get("exp_alerts") for check in mine), f"{name} is never checked silent"


# ------------------------------------------------------------------------------- alerts


def test_the_rules_file_has_the_six_alerts_of_issue_4() -> None:
    assert sorted(rule["alert"] for rule in alert_rules()) == [
        "TickworkMultipleLeaseHolders",
        "TickworkNoLeaseHolder",
        "TickworkRedisErrors",
        "TickworkTickLatenessHigh",
        "TickworkTicksFailing",
        "TickworkWorkerStalled",
    ]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_has_a_severity_a_for_duration_and_templated_annotations(
    rule: dict[str, Any],
) -> None:
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    assert DURATION.match(str(rule.get("for", ""))), "a `for:` duration like 5m"
    annotations = rule.get("annotations", {})
    for key in ("summary", "description"):
        assert annotations.get(key, "").strip(), f"annotation {key} is missing"
        assert "{{ $labels." in annotations[key], f"annotation {key} names no label"
    assert "$value" in annotations["summary"] + annotations["description"]


# ---------------------------------------------------------------------- exported names


def test_the_exported_names_are_the_sample_names_a_scrape_sees() -> None:
    names = exported_samples()
    for name in (
        "tickwork_ticks_total",
        "tickwork_tick_duration_seconds_bucket",
        "tickwork_tick_duration_seconds_sum",
        "tickwork_tick_duration_seconds_count",
        "tickwork_lease_held",
        "tickwork_build_info",
    ):
        assert name in names
    # Family names without their sample suffix are not series a query can select.
    for name in ("tickwork_ticks", "tickwork_tick_duration_seconds", "tickwork_ticks_created"):
        assert name not in names
    assert "worker" in names["tickwork_ticks_total"]
    assert "worker" not in names["tickwork_redis_errors_total"]


def test_a_metric_the_runtime_does_not_export_is_caught() -> None:
    expr = "rate(tickwork_tick_total[5m]) + tickwork_ticks_total + tickwork_tick_duration_seconds"
    assert unknown_names(expr) == {"tickwork_tick_total", "tickwork_tick_duration_seconds"}


@pytest.mark.parametrize("path", [ALERTS, ALERTS_TEST], ids=lambda path: path.name)
def test_the_rules_and_their_tests_name_only_metrics_the_runtime_exports(path: Any) -> None:
    text = path.read_text(encoding="utf-8")
    assert metric_names(text), "no metric found: is the pattern still right?"
    assert unknown_names(text) == set()


def test_the_dashboard_queries_only_metrics_the_runtime_exports() -> None:
    dashboard = load_dashboard()
    queries = dashboard_queries(dashboard) + dashboard_variable_queries(dashboard)
    assert len(queries) >= 10
    unknown = {title: unknown_names(expr) for title, expr in queries if unknown_names(expr)}
    assert unknown == {}


def test_every_alert_links_its_runbook_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^### (\w+)$", readme, flags=re.MULTILINE))
    source = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "urls"
    ]["Source"]
    for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            alert = rule["alert"]
            url = rule["annotations"]["runbook_url"]
            assert url == f"{source}/blob/main/README.md#{alert.lower()}", alert
            assert alert in headings, f"no README section '### {alert}'"


# ----------------------------------------------------------------------------- dashboard


def test_the_dashboard_has_a_datasource_variable_and_a_multi_value_worker_variable() -> None:
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    worker = variables["worker"]
    assert worker["type"] == "query"
    assert worker["datasource"]["uid"] == "${datasource}"
    assert worker["multi"] is True
    assert worker["includeAll"] is True
    assert dict(dashboard_variable_queries(load_dashboard()))["worker"] == (
        f"label_values(tickwork_ticks_total{{{TARGET_FILTER}}}, worker)"
    )


def test_the_dashboard_has_job_and_instance_variables_that_narrow_each_other() -> None:
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    queries = dict(dashboard_variable_queries(load_dashboard()))

    assert list(variables) == ["datasource", "job", "instance", "worker"]
    for name in ("job", "instance"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"]["uid"] == "${datasource}"
        assert (variables[name]["multi"], variables[name]["includeAll"]) == (True, True)
        assert variables[name]["allValue"] == ".+"
    assert queries["job"] == "label_values(tickwork_build_info, job)"
    assert queries["instance"] == 'label_values(tickwork_build_info{job=~"$job"}, instance)'


def test_every_panel_filters_every_selector_by_job_and_instance() -> None:
    for panel in dashboard_panels(load_dashboard()):
        if panel["type"] == "row":
            continue
        exprs = [t["expr"] for t in panel["targets"]]
        assert exprs, panel["title"]
        for expr in exprs:
            for match in re.finditer(r"(tickwork_[a-z_]+)(\{[^}]*\})?", expr):
                assert TARGET_FILTER in (match.group(2) or ""), f"{panel['title']}: {expr}"


def test_every_panel_and_query_uses_the_datasource_variable() -> None:
    for panel in dashboard_panels(load_dashboard()):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_selector_of_a_per_worker_metric_filters_by_the_worker_variable() -> None:
    samples = exported_samples()
    for title, expr in dashboard_queries(load_dashboard()):
        for match in re.finditer(r"(tickwork_[a-z_]+)(\{[^}]*\})?", expr):
            name, selector = match.group(1), match.group(2) or ""
            if "worker" in samples[name]:
                assert WORKER_FILTER in selector, f"{title}: {name}{selector}"


def test_the_dashboard_shows_what_issue_4_asks_for() -> None:
    dashboard = load_dashboard()
    text = "\n".join(expr for _, expr in dashboard_queries(dashboard))
    assert "sum by (worker, outcome) (rate(tickwork_ticks_total" in text  # ticks by outcome
    for q in ("0.5", "0.9", "0.99"):  # lateness and duration quantiles
        assert f"histogram_quantile({q}, sum by (worker, le) (rate(tickwork_tick_lateness" in text
        assert f"histogram_quantile({q}, sum by (worker, le) (rate(tickwork_tick_duration" in text
    assert "tickwork_lease_held" in text  # lease holder
    assert "tickwork_lease_acquisitions_total" in text  # lease transitions
    assert "tickwork_lease_losses_total" in text
    assert "time() - max by (worker) (tickwork_tick_last_success_timestamp_seconds" in text


def test_the_dashboard_layout_is_valid() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "tickwork-workers"
    panels = list(dashboard_panels(dashboard))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]
