"""Every CLI error path: one line naming the bad value, exit 2, nothing started."""

from __future__ import annotations

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
        (["run", W, "--lease-ttl", "100ms"], {}, "too short; use at least 500ms"),
        (
            ["run", W, "--lease-ttl", "3s", "--lease-renew-interval", "2s"],
            {},
            "must be at most half the TTL",
        ),
        (["run", W, "--redis-url", "http://x:1"], {}, "must start with redis://, rediss://"),
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
            "apply only when one worker is run",
        ),
        (["run", W, "--name", "bad name!"], {}, "worker name 'bad name!' must be"),
        (["run", W, "--frobnicate"], {}, "unrecognized arguments: --frobnicate"),
        (["run"], {}, "the following arguments are required"),
        (["launch"], {}, "invalid choice: 'launch'"),
        (["run", W], {"TICKWORK_PERIOD": "yesterday"}, "period 'yesterday' is not a duration"),
        (["run", W], {"TICKWORK_METRICS_PORT": "http"}, "metrics port 'http'"),
        (["status"], {}, "needs --redis-url or TICKWORK_REDIS_URL"),
    ],
)
def test_a_bad_command_line_prints_one_line_naming_the_value_and_exits_2(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(argv, env)
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
