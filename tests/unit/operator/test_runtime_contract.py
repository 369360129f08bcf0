"""The contract between the operator and the runtime: every Deployment the operator builds is
a command line ``tickwork run`` accepts, meaning what the resource said."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.operator.conftest import worker_body
from worker_operator.builders import build_deployment
from worker_operator.settings import OperatorSettings
from worker_operator.spec import parse_worker
from worker_runtime.cli import build_parser, settings_from
from worker_runtime.scheduling import Schedule

SCHEDULES: list[dict[str, Any]] = [
    {"period": "10m", "runOnStart": False, "misfire": "skip"},
    {"period": "500ms", "mode": "rate", "jitter": "100ms", "timeout": "2s", "misfire": "skip"},
    {"cron": "*/10 * * * *", "timeZone": "Europe/Berlin", "runOnStart": True, "misfire": "skip"},
    {"period": "1h30m", "misfire": "catch_up", "misfireGrace": "5m", "runOnStart": False},
]


def _runtime_view(spec: dict[str, Any]) -> tuple[Any, Schedule]:
    deployment = build_deployment(parse_worker(worker_body(**spec)), OperatorSettings())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {
        e["name"]: e.get("value", "from-a-secret-or-the-pod")
        for e in container["env"]
        if e["name"].startswith("TICKWORK_")
    }
    if "TICKWORK_REDIS_URL" in env:
        env["TICKWORK_REDIS_URL"] = "redis://redis:6379/0"
    args = build_parser().parse_args(container["args"])
    settings = settings_from(args, env)
    schedule = Schedule.build(**settings.schedule_overrides)  # type: ignore[arg-type]
    return settings, schedule


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: next(iter(s.values())))
def test_the_runtime_accepts_the_deployment_the_operator_builds(schedule: dict[str, Any]) -> None:
    settings, built = _runtime_view({"schedule": schedule})
    assert settings.workers == ("admin_workers.passive_users:PassiveUserCheckerWorker",)
    assert settings.name == "team-a.passive-users"
    expected = Schedule.build(
        period=schedule.get("period"),
        mode=schedule.get("mode", "delay"),
        cron=schedule.get("cron"),
        timezone=schedule.get("timeZone"),
        run_on_start=schedule.get("runOnStart", False),
        timeout=schedule.get("timeout"),
        jitter=schedule.get("jitter"),
        misfire=schedule.get("misfire", "skip"),
        misfire_grace=schedule.get("misfireGrace"),
    )
    assert built == expected


def test_lease_redis_metrics_shutdown_and_logging_reach_the_runtime() -> None:
    settings, _ = _runtime_view(
        {
            "lease": {"ttl": "9s", "renewInterval": "3s"},
            "redis": {"urlSecretRef": {"name": "redis", "key": "url"}},
            "metrics": {"port": 9200, "scrape": True},
            "shutdownGrace": "45s",
            "log": {"format": "text", "level": "debug"},
        }
    )
    assert (settings.lease_ttl_seconds, settings.lease_renew_interval_seconds) == (9.0, 3.0)
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.metrics_port == 9200
    assert settings.shutdown_grace_seconds == 45.0
    assert (settings.log_format, settings.log_level) == ("text", "DEBUG")
    settings.lease_timing()  # valid together


def test_the_operator_reads_the_status_document_where_and_as_the_runtime_serves_it() -> None:
    from worker_operator.constants import STATUS_DOCUMENT_VERSION as OPERATOR_VERSION
    from worker_operator.constants import STATUS_PATH as OPERATOR_PATH
    from worker_runtime.serving import STATUS_PATH
    from worker_runtime.status import STATUS_DOCUMENT_VERSION

    assert OPERATOR_PATH == STATUS_PATH
    assert OPERATOR_VERSION == STATUS_DOCUMENT_VERSION
