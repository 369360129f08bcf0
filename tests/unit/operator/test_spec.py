"""Reading a BackgroundWorker: defaults, and one-line errors for what the schema cannot catch."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.unit.operator.conftest import worker_body
from worker_operator.spec import SpecError, parse_worker


def test_a_minimal_resource_gets_the_documented_defaults() -> None:
    body = worker_body()
    del body["spec"]["lease"], body["spec"]["metrics"], body["spec"]["log"]
    del body["spec"]["shutdownGrace"], body["spec"]["replicas"], body["spec"]["suspend"]
    body["spec"]["schedule"] = {"period": "10m"}

    worker = parse_worker(body)

    assert worker.replicas == 1
    assert worker.suspend is False
    assert worker.lease.ttl == "15s"
    assert worker.lease.renew_interval is None
    assert worker.metrics_port == 9100
    assert worker.shutdown_grace_seconds == 30.0
    assert (worker.log_format, worker.log_level) == ("json", "info")
    assert worker.schedule.misfire == "skip"
    assert worker.runtime_name == "team-a.passive-users"


def test_the_schedule_summary_reads_like_the_schedule() -> None:
    period = parse_worker(worker_body(schedule={"period": "10m"})).schedule
    rate = parse_worker(worker_body(schedule={"period": "1m", "mode": "rate"})).schedule
    cron = parse_worker(worker_body(schedule={"cron": "*/5 * * * *"})).schedule
    zoned = parse_worker(
        worker_body(schedule={"cron": "0 3 * * *", "timeZone": "Europe/Berlin"})
    ).schedule

    assert period.summary() == "every 10m"
    assert rate.summary() == "every 1m (rate)"
    assert cron.summary() == "*/5 * * * * (UTC)"
    assert zoned.summary() == "0 3 * * * (Europe/Berlin)"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"schedule": {"cron": "0 0 31 2 *"}}, "never matches"),
        ({"schedule": {"cron": "61 * * * *"}}, "minute '61' is outside 0-59"),
        (
            {"schedule": {"cron": "0 3 * * *", "timeZone": "Mars/Olympus"}},
            "'Mars/Olympus' is not an IANA",
        ),
        ({"schedule": {"period": "10m", "cron": "* * * * *"}}, "exactly one of period and cron"),
        ({"schedule": {}}, "exactly one of period and cron"),
        ({"schedule": {"period": "50ms"}}, "shorter than the minimum 100ms"),
        ({"schedule": {"period": "5 minutes"}}, "'5 minutes' is not a duration"),
        ({"schedule": {"cron": "* * * * *", "mode": "rate"}}, "mode applies only to a period"),
        ({"schedule": {"period": "1m", "timeZone": "UTC"}}, "timeZone applies only to a cron"),
        ({"schedule": {"period": "1m", "misfireGrace": "1m"}}, "only with misfire: catch_up"),
        (
            {"schedule": {"period": "1m", "mode": "rate", "jitter": "1m"}},
            "must be shorter than the period",
        ),
        ({"lease": {"ttl": "200ms"}}, "shorter than the minimum 500ms"),
        ({"lease": {"ttl": "10s", "renewInterval": "6s"}}, "at most half of spec.lease.ttl 10s"),
        ({"replicas": 2}, "spec.replicas 2 needs spec.redis"),
        (
            {"redis": {"url": "http://redis:6379"}},
            re.escape("must start with redis://, rediss://, redis+sentinel://"),
        ),
        ({"redis": {"url": "redis://:hunter2@redis:6379"}}, "must not contain a password"),
        ({"redis": {"url": "redis://redis:6379/0?password=x"}}, "must not contain a password"),
        ({"redis": {"url": "redis://redis:6379/99"}}, "must be a number from 0 to 15"),
        ({"redis": {"url": "redis://redis:6379/0?socket_timeout=1"}}, "is set by tickwork"),
        ({"lease": {"ttl": "2h"}}, "spec.lease.ttl 2h is longer than the maximum 1h"),
        (
            {"lease": {"renewInterval": "10ms"}},
            "renewInterval 10ms is shorter than the minimum 100ms",
        ),
        ({"schedule": {"period": "9999h"}}, "period '9999h' is longer than the maximum 8784h"),
        ({"schedule": {"cron": "*/ * * * *"}}, "step '' must be a positive number"),
        (
            {"redis": {"url": "redis://r", "urlSecretRef": {"name": "r"}}},
            "exactly one of url and urlSecretRef",
        ),
        ({"worker": "admin_workers.passive_users"}, "is not MODULE:CLASS"),
        (
            {"podLabels": {"app.kubernetes.io/instance": "x"}},
            "must not set app.kubernetes.io/instance",
        ),
        ({"env": [{"name": "TICKWORK_PERIOD", "value": "1s"}]}, "must not set TICKWORK_PERIOD"),
        ({"metrics": {"port": 80}}, "spec.metrics.port 80 must be at least 1024"),
        ({"image": "two words"}, "is not an image reference"),
        ({"image": "Registry!!!"}, "is not an image reference"),
        (
            {"replicas": 101, "redis": {"url": "redis://r:6379"}},
            "spec.replicas 101 must be at most 100",
        ),
        ({"shutdownGrace": "2h"}, "spec.shutdownGrace 2h is longer than the maximum 1h"),
        ({"schedule": {"period": "99999999h"}}, "is longer than the maximum 8784h"),
        (
            {"envFrom": [{"prefix": "TICKWORK_", "configMapRef": {"name": "c"}}]},
            "would make TICKWORK_",
        ),
    ],
)
def test_a_spec_the_runtime_would_refuse_is_an_error_naming_the_value(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_worker(worker_body(**spec))


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2@redis:6379",
        "redis://redis:6379/0?password=hunter2",
        "redis://redis:6379/0?ssl_password=hunter2",
        "redis://redis:6379/x?password=hunter2",
    ],
)
def test_the_password_of_a_refused_redis_url_is_not_repeated(url: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_worker(worker_body(redis={"url": url}))

    assert "hunter2" not in str(caught.value)


def test_secret_references_list_every_secret_the_pods_read() -> None:
    worker = parse_worker(
        worker_body(
            redis={"urlSecretRef": {"name": "redis"}, "passwordSecretRef": {"name": "auth"}}
        )
    )

    assert [(path, ref.name, ref.key) for path, ref in worker.secret_refs()] == [
        ("spec.redis.urlSecretRef", "redis", "url"),
        ("spec.redis.passwordSecretRef", "auth", "password"),
    ]
