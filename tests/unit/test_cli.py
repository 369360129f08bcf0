"""Every CLI error path: one line naming the bad value, exit 2, nothing started."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker_runtime.cli import main

W = "tests.workers.sample:Ticker"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["run", "nodots"], {}, "worker 'nodots' must look like package.module:Name"),
        (["run", "no_such_module_xyz:Worker"], {}, "cannot import 'no_such_module_xyz'"),
        (["run", "tests.workers.sample:Missing"], {}, "has no attribute 'Missing'"),
        (
            ["run", "tests.workers.sample:NotAWorker"],
            {},
            "is not a subclass of worker_runtime.PeriodicWorker",
        ),
        (["run", "tests.workers.sample:NoSchedule"], {}, "has no schedule"),
        (["run", W, "--period", "fast"], {}, "period 'fast' is not a duration"),
        (["run", W, "--period", "10ms"], {}, "shorter than the minimum 100ms"),
        (["run", W, "--mode", "sometimes"], {}, "mode 'sometimes' is not one of: delay, rate"),
        (["run", W, "--cron", "* * *"], {}, "cron '* * *' has 3 fields"),
        (
            ["run", W, "--cron", "* * * * *", "--timezone", "Moon/Base"],
            {},
            "'Moon/Base' is not an IANA",
        ),
        (["run", W, "--misfire", "retry"], {}, "misfire policy 'retry' is not one of"),
        (["run", W, "--run-on-start", "maybe"], {}, "'maybe' is not a boolean"),
        (["run", W, "--shutdown-grace", "forever"], {}, "shutdown grace 'forever'"),
        (["run", W, "--log-format", "xml"], {}, "log format 'xml' is not one of: text, json"),
        (["run", W, "--log-level", "loud"], {}, "log level 'loud' is not one of"),
        (["run", W, "--metrics-port", "99999"], {}, "metrics port '99999' must be a number"),
        (
            ["run", W, "--lease-ttl", "100ms"],
            {},
            "--lease-ttl 100ms is shorter than the minimum 500ms",
        ),
        (
            ["run", W, "--lease-ttl", "3s", "--lease-renew-interval", "2s"],
            {},
            "--lease-renew-interval 2s must be at most half of --lease-ttl 3s",
        ),
        (
            ["run", W, "--lease-ttl", "1e300"],
            {},
            "--lease-ttl: lease TTL '1e300' is not a duration",
        ),
        (["run", W, "--lease-ttl", "2h"], {}, "--lease-ttl 2h is longer than the maximum 1h"),
        (["run", W, "--lease-ttl", "999999999h"], {}, "longer than the maximum 8784h"),
        (
            ["run", W, "--lease-renew-interval", "1ms"],
            {},
            "--lease-renew-interval 1ms is shorter than the minimum 100ms",
        ),
        (
            ["run", W],
            {"TICKWORK_LEASE_RENEW_INTERVAL": "1ms"},
            "TICKWORK_LEASE_RENEW_INTERVAL 1ms is shorter than the minimum 100ms",
        ),
        (
            ["run", W, "--metrics-port", "\u00b2"],
            {},
            "--metrics-port: metrics port '\u00b2' must be",
        ),
        (["run", W, "--metrics-port", "\u0663"], {}, "--metrics-port: metrics port"),
        (["run", W, "--period", "\u0663s"], {}, "--period: period '\u0663s' is not a duration"),
        (["run", W, "--cron", "\u0663 * * * *"], {}, "--cron: cron '\u0663 * * * *' may contain"),
        (["run", W, "--cron", "*/ * * * *"], {}, "--cron: cron '*/ * * * *': minute step ''"),
        (["run", W, "--timeout", "1\u00a0s"], {}, "--timeout: timeout '1\\xa0s' is not"),
        (["run", W, "--replica-id", "a\nb"], {}, "--replica-id: replica id 'a\\nb' must be"),
        (["run", W], {"TICKWORK_REPLICA_ID": "a b"}, "TICKWORK_REPLICA_ID: replica id 'a b'"),
        (["run", W, "--name", "ticker\n"], {}, "--name: worker name 'ticker\\n' must be"),
        (["run", W, "--metrics-host", "0.0.0.0\r"], {}, "--metrics-host: metrics host"),
        (
            ["run", W, "--redis-url", "redis://h:6379/0?socket_timeout=abc"],
            {},
            "option 'socket_timeout' is set by tickwork from the lease timing",
        ),
        (
            ["run", W, "--redis-url", "redis://h:6379/0?frobnicate=1"],
            {},
            "--redis-url: --redis-url 'redis://h:6379/0?frobnicate=1': unknown option",
        ),
        (
            ["run", W, "--redis-url", "redis://h:6379/0?ssl_ca_certs=/ca.crt"],
            {},
            "(TLS options need rediss://)",
        ),
        (["run", W, "--redis-url", "redis://h/abc"], {}, "database in the path 'abc' must be a"),
        (["run", W, "--redis-url", "redis://h/99999"], {}, "must be a number from 0 to 15"),
        (["run", W, "--redis-url", "redis://h/1/2"], {}, "database in the path '1/2'"),
        (["run", W, "--redis-url", "redis://h/0?db=x"], {}, "the database option 'x'"),
        (["run", W, "--redis-url", "redis://h/0?db=1&db=2"], {}, "option 'db' is given twice"),
        (["run", W, "--redis-url", "redis://h:port/0"], {}, "is not a valid URL"),
        (["run", W, "--redis-url", "redis://h/0 "], {}, "must be ASCII without spaces"),
        (
            ["run", W],
            {"TICKWORK_REDIS_URL": "redis://h/x"},
            "TICKWORK_REDIS_URL: TICKWORK_REDIS_URL 'redis://h/x'",
        ),
        (["run", W, "--redis-url", "http://x:1"], {}, "must start with redis://, rediss://"),
        (["status", "--redis-url", "redis://h/0?timeout=1"], {}, "option 'timeout' is set by"),
        (["run", W, "--redis-url", "redis://:s3cret@"], {}, "has no host"),
        (
            ["run", W, "--redis-password-file", "/nonexistent/pw"],
            {},
            "'/nonexistent/pw' cannot be read",
        ),
        (
            ["run", W, "--services", "tests.workers.sample:nothing"],
            {},
            "has no attribute 'nothing'",
        ),
        (["run", W, W], {}, "'Ticker' is used twice"),
        (
            ["run", W, "tests.workers.sample:NoSchedule", "--period", "1s"],
            {},
            "--period applies only when one worker is run, not 2",
        ),
        (
            ["run", W, "tests.workers.sample:NoSchedule", "--jitter", "1s"],
            {"TICKWORK_PERIOD": "1s"},
            "TICKWORK_PERIOD, --jitter apply only when one worker is run, not 2",
        ),
        # a value that starts with "-" is the flag's value, named in the error
        (["run", W, "--period", "-1s"], {}, "--period: period '-1s' is not a duration"),
        (["run", W, "--shutdown-grace", "-5s"], {}, "shutdown grace '-5s' is not a duration"),
        (["trigger", "Ticker", "--wait", "-1s"], {}, "--wait '-1s' is not a duration"),
        (
            ["run", W],
            {"TICKWORK_SHUTDOWN_GRACE": "2h"},
            "TICKWORK_SHUTDOWN_GRACE: shutdown grace 2h is longer than the maximum 1h",
        ),
        (["run", W, "--name", "bad name!"], {}, "worker name 'bad name!' must be"),
        (["run", W, "--frobnicate"], {}, "unrecognized arguments: --frobnicate"),
        (["run"], {}, "the following arguments are required"),
        (["launch"], {}, "invalid choice: 'launch'"),
        (["run", W], {"TICKWORK_PERIOD": "yesterday"}, "period 'yesterday' is not a duration"),
        (["run", W], {"TICKWORK_METRICS_PORT": "http"}, "metrics port 'http'"),
        (["status"], {}, "needs --redis-url or TICKWORK_REDIS_URL"),
        (
            ["run", W, "--redis-url", "redis+sentinel://s1:26379,s2:26379"],
            {},
            "needs the name the sentinels know the primary by",
        ),
        (
            ["run", W, "--redis-url", "redis+cluster://n1:7000,n2:7000/3"],
            {},
            "Redis Cluster has only database 0, not 3",
        ),
        (
            ["run", W, "--redis-url", "redis+cluster://n1:7000,,n2:7000"],
            {},
            "'' is not host[:port] (hosts are separated by commas)",
        ),
        (
            ["run", W, "--redis-url", "redis+sentinel://s1:99999/mymaster"],
            {},
            "the port of 's1:99999' is not from 1 to 65535",
        ),
        (
            ["run", W, "--redis-url", "redis+sentinel://s1/mymaster?ssl_ca_certs=/ca.crt"],
            {},
            "(TLS options need rediss+sentinel://)",
        ),
        (
            ["run", W, "--redis-url", "redis://h/0", "--redis-durable-writes", "maybe"],
            {},
            "--redis-durable-writes: --redis-durable-writes 'maybe' is not a boolean",
        ),
        (
            ["run", W],
            {"TICKWORK_REDIS_DURABLE_WRITES": "true"},
            "TICKWORK_REDIS_DURABLE_WRITES needs --redis-url",
        ),
    ],
)
def test_a_bad_command_line_prints_one_line_naming_the_value_and_exits_2(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # No metrics server unless the case asks for one: port 9100 may be taken on this host.
    code = main(argv, {"TICKWORK_METRICS_PORT": "0", **env})
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1, f"expected one line, got: {err!r}"
    assert err.startswith("tickwork: error: ")


def test_the_redis_password_never_appears_in_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", W, "--redis-url", "ftp://user:hunter2@host:6379"], {}) == 2
    err = capsys.readouterr().err
    assert "hunter2" not in err and "***" in err


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"], {})
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("tickwork 0.")


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2@h:6379/0?socket_timeout=abc",
        "redis://user:hunter2@h:6379/99999",
        "redis://hunter2@h:6379/x",
        "redis://h:6379/0?password=hunter2&frobnicate=1",
        "redis://h:6379/0?password=hunter2&db=abc",
        "rediss://h:6380/0?ssl_password=hunter2&ssl_cert_reqs=sometimes",
        "redis://h:6379/0?my_api_token=hunter2&x=1",
        "redis://h:6379/0?password=hunter2 ",
    ],
)
def test_no_secret_part_of_a_refused_redis_url_reaches_the_error(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["run", W, "--redis-url", url], ["status", "--redis-url", url]):
        assert main(argv, {}) == 2
        err = capsys.readouterr().err
        assert "hunter2" not in err and "***" in err, err
        assert err.count("\n") == 1


def test_a_password_file_that_is_not_utf8_names_the_file_and_shows_no_byte_of_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "redis-password"
    secret.write_bytes(b"hunter\xff\xfe2")
    assert main(["run", W, "--redis-password-file", str(secret)], {}) == 2
    err = capsys.readouterr().err
    assert f"--redis-password-file: redis password file '{secret}' is not UTF-8 text" in err
    assert "hunter" not in err and "xff" not in err and "0xff" not in err
    assert err.count("\n") == 1


def test_a_password_with_a_control_character_is_refused_without_showing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text("hunter\x002\n")
    assert main(["run", W, "--redis-password-file", str(secret)], {}) == 2
    err = capsys.readouterr().err
    assert "contains a control character" in err and "hunter" not in err
    assert main(["run", W], {"TICKWORK_REDIS_PASSWORD": "hunter\r2"}) == 2
    err = capsys.readouterr().err
    assert "TICKWORK_REDIS_PASSWORD contains a control character" in err and "hunter" not in err


def test_trigger_means_the_pod_s_own_worker_by_default_or_by_its_bare_resource_name() -> None:
    from worker_runtime.cli import trigger_target

    pod = {"TICKWORK_NAME": "shop.passive-users"}
    assert trigger_target(None, pod) == "shop.passive-users"
    assert trigger_target("passive-users", pod) == "shop.passive-users"
    assert trigger_target("billing.other", pod) == "billing.other"
    assert trigger_target("other", {}) == "other"


def test_trigger_without_a_worker_name_outside_a_pod_exits_2_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from worker_runtime.cli import main

    assert main(["trigger", "--redis-url", "redis://localhost:1"], env={}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a worker name" in err
