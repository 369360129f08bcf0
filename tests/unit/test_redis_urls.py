"""Redis URLs: every secret part redacted, and a usable URL accepted as redis-py reads it."""

from __future__ import annotations

import pytest

from worker_runtime.redis_urls import (
    Deployment,
    check_redis_url,
    parse_redis_url,
    redact_url,
    url_secrets,
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("redis://:hunter2@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://alice:hunter2@h:6379/0", "redis://***:***@h:6379/0"),
        ("redis://a:b:hunter2@h:6379/0", "redis://***:***@h:6379/0"),
        ("redis://hunter2@h/0", "redis://***@h/0"),
        ("redis://h/0?password=hunter2", "redis://h/0?password=***"),
        ("redis://h/0?db=1&PassWord=hunter2&x", "redis://h/0?db=1&PassWord=***&x"),
        (
            "rediss://h/0?ssl_ca_certs=/ca.crt&ssl_password=hunter2",
            "rediss://h/0?ssl_ca_certs=/ca.crt&ssl_password=***",
        ),
        ("redis://h/0?api%5Ftoken=hunter2", "redis://h/0?api%5Ftoken=***"),
        ("redis://h/0#hunter2", "redis://h/0#***"),
        ("redis://[::1/0?password=hunter2", "<unparsable URL>"),
        (
            "redis+sentinel://:hunter2@s1:26379,s2:26379/mymaster?sentinel_password=hunter2",
            "redis+sentinel://:***@s1:26379,s2:26379/mymaster?sentinel_password=***",
        ),
        ("redis+cluster://alice:hunter2@n1,n2:7000", "redis+cluster://***:***@n1,n2:7000"),
    ],
)
def test_every_secret_part_of_a_url_is_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "hunter2" not in redact_url(url)


def test_the_secret_parts_a_url_carries_are_named() -> None:
    assert url_secrets("redis://h:6379/0?db=2") == []
    assert url_secrets("redis://:pw@h/0?password=x&ssl_password=y") == [
        "user info",
        "password",
        "ssl_password",
    ]


@pytest.mark.parametrize(
    "url",
    [
        "redis://h",
        "redis://h:6379",
        "redis://h:6379/",
        "redis://h:6379/15",
        "redis://user:pw@h:6379/0?db=3",
        "rediss://h:6380/0?ssl_ca_certs=/etc/ca.crt&ssl_cert_reqs=required&ssl_check_hostname=false",
        "unix:///run/redis.sock?db=1",
        "redis://[::1]:6379/0",
        "redis+sentinel://s1:26379,s2:26379,s3/mymaster",
        "redis+sentinel://:pw@s1/mymaster/2?sentinel_password=x&sentinel_username=y",
        "rediss+sentinel://s1/my.master-1?ssl_ca_certs=/etc/ca.crt",
        "redis+cluster://n1:7000,n2:7001,[::1]:7002",
        "rediss+cluster://user:pw@n1:7000/0?ssl_check_hostname=false",
    ],
)
def test_a_usable_url_is_accepted(url: str) -> None:
    check_redis_url(url)


def test_a_sentinel_url_names_the_sentinels_the_service_the_database_and_the_credentials() -> None:
    target = parse_redis_url(
        "rediss+sentinel://bob:p%40ss@s1,10.0.0.2:26380/mymaster/3?sentinel_password=x"
    )
    assert target.deployment is Deployment.SENTINEL
    assert target.tls
    assert target.hosts == (("s1", 26379), ("10.0.0.2", 26380))
    assert (target.service, target.db) == ("mymaster", 3)
    assert (target.username, target.password) == ("bob", "p@ss")
    assert target.options == {"sentinel_password": "x"}
    assert "p@ss" not in repr(target) and "sentinel_password" not in repr(target)


def test_a_cluster_url_names_its_start_nodes_with_the_default_port() -> None:
    target = parse_redis_url("redis+cluster://n1,[::1]:7002")
    assert target.deployment is Deployment.CLUSTER
    assert not target.tls
    assert target.hosts == (("n1", 6379), ("::1", 7002))
    assert target.service is None and target.db == 0


def test_a_single_server_url_is_a_single_deployment() -> None:
    assert parse_redis_url("redis://h:6379/4").deployment is Deployment.SINGLE
    assert parse_redis_url("redis://h:6379/4").db == 4
    assert parse_redis_url("unix:///run/redis.sock?db=1").db == 1
