"""``tickwork run`` as a real process, refused at start: one line, exit 2, nothing started.

User code that raises while the process starts (import, the worker's ``__init__``, the
``--services`` function, ``register_services``) is reported in one line naming the hook and
the exception, with the traceback only under ``--log-level debug``; the metrics port is
checked before any user code runs and before any log line.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.processes import RedisServer, free_port, start_tickwork, stop, wait_until

pytestmark = pytest.mark.integration
F = "tests.workers.faulty"


def _refused(tmp_path: Path, args: list[str], env: dict[str, str] | None = None) -> str:
    err = tmp_path / "stderr.log"
    proc = start_tickwork(["run", *args], env=env, log_path=err)
    assert proc.wait(timeout=60) == 2
    return err.read_text()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            [f"{F}:BrokenInit"],
            "tickwork: error: worker 'tests.workers.faulty:BrokenInit': BrokenInit() raised "
            "RuntimeError: cannot reach the config service",
        ),
        (
            [f"{F}:BrokenRegistration"],
            "tickwork: error: worker 'BrokenRegistration': register_services raised "
            "KeyError: 'DATABASE_URL'",
        ),
        (
            [f"{F}:Fine", "--services", f"{F}:broken_services"],
            "tickwork: error: services 'tests.workers.faulty:broken_services' raised "
            "ValueError: no such setting",
        ),
        (
            [f"{F}:Fine", "--services", f"{F}:exiting_services"],
            "tickwork: error: services 'tests.workers.faulty:exiting_services' raised "
            "called sys.exit(3)",
        ),
        (
            ["tests.workers.exits_at_import:Worker"],
            "tickwork: error: worker 'tests.workers.exits_at_import:Worker': importing "
            "'tests.workers.exits_at_import' failed: called sys.exit(0)",
        ),
    ],
)
def test_user_code_that_raises_at_start_is_one_line_naming_the_hook_and_exit_2(
    tmp_path: Path, args: list[str], line: str
) -> None:
    text = _refused(tmp_path, [*args, "--metrics-port", "0"])
    assert text.splitlines() == [line], text
    assert "Traceback" not in text


def test_with_log_level_debug_the_traceback_comes_before_the_one_line(tmp_path: Path) -> None:
    text = _refused(tmp_path, [f"{F}:BrokenInit", "--metrics-port", "0", "--log-level", "debug"])
    lines = text.splitlines()
    assert "Traceback (most recent call last):" in lines
    assert 'raise RuntimeError("cannot reach the config service")' in text
    assert lines.index("Traceback (most recent call last):") < len(lines) - 1
    assert lines[-1].startswith("tickwork: error: worker 'tests.workers.faulty:BrokenInit'")
    assert sum(line.startswith("tickwork: error:") for line in lines) == 1


def test_a_metrics_port_in_use_is_reported_before_any_user_code_or_log_line(
    tmp_path: Path,
) -> None:
    mark = tmp_path / "hooks-that-ran"
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        text = _refused(
            tmp_path,
            [f"{F}:Fine", "--services", f"{F}:marking_services", "--metrics-host", "127.0.0.1",
             "--metrics-port", str(port), "--log-level", "debug"],
            env={"TICKWORK_TEST_MARK": str(mark)},
        )  # fmt: skip
    [line] = text.splitlines()
    assert line.startswith(f"tickwork: error: cannot listen on 127.0.0.1:{port} for metrics: ")
    assert line.endswith("address already in use")
    assert not mark.exists(), f"user code ran: {mark.read_text()}"


def test_a_redis_url_with_a_password_in_its_query_never_shows_it(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", password="hunter2")
    server.start()
    try:
        url = f"redis://127.0.0.1:{server.port}/0?password=hunter2"
        err = tmp_path / "stderr.log"
        proc = start_tickwork(
            ["run", "tests.workers.sample:Ticker", "--period", "200ms", "--redis-url", url,
             "--metrics-port", "0", "--log-level", "debug"],
            log_path=err,
        )  # fmt: skip
        try:
            wait_until(
                lambda: "acquired" in err.read_text() or "holds the lease" in err.read_text(),
                timeout=20,
                what="the lease, taken with the password from the URL",
            )
        finally:
            assert stop(proc) == 0
    finally:
        server.stop()
    text = err.read_text()
    assert "hunter2" not in text
    assert f"redis://127.0.0.1:{server.port}/0?password=***" in text
