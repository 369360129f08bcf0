"""Redis URLs: every secret part redacted, and a usable URL accepted as redis-py reads it."""

from __future__ import annotations

import pytest

from worker_runtime.redis_urls import check_redis_url, redact_url, url_secrets


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
    ],
)
def test_a_usable_url_is_accepted(url: str) -> None:
    check_redis_url(url)
