"""``tickwork run --redis-url`` as real processes against a real redis-server."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.processes import (
    TICKWORK,
    RedisServer,
    free_port,
    metric,
    read_events,
    start_tickwork,
    stop,
    wait_until,
)

pytestmark = pytest.mark.integration
W = "tests.workers.sample:Ticker"


def _http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _starts(path: Path) -> list[dict[str, object]]:
    return [e for e in read_events(path) if e["event"] == "start"]


def test_two_replicas_share_the_ticks_and_never_run_one_slot_twice(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    procs = [
        start_tickwork(
            ["run", W, "--period", "200ms", "--redis-url", redis_server.url, "--lease-ttl", "1s",
             "--replica-id", f"r{i}", "--metrics-port", "0"],
            env={"TICKWORK_TEST_LOG": str(log)},
        )
        for i in range(2)
    ]  # fmt: skip
    try:
        wait_until(lambda: len(_starts(log)) >= 10, timeout=20, what="ten ticks")
        holder = _starts(log)[-1]["replica"]
        stop(procs[0 if holder == "r0" else 1])
        wait_until(
            lambda: _starts(log)[-1]["replica"] != holder, timeout=5, what="the other replica"
        )
        count = len(_starts(log))
        wait_until(lambda: len(_starts(log)) >= count + 5, timeout=10, what="five more ticks")
    finally:
        for proc in procs:
            stop(proc)
    starts = _starts(log)
    slots = [e["slot"] for e in starts]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    tokens = [int(e["token"]) for e in starts]  # type: ignore[call-overload]
    assert tokens == sorted(tokens)
    assert {e["replica"] for e in starts} == {"r0", "r1"}


def test_the_password_can_come_from_a_file_or_the_environment_and_is_never_logged(
    tmp_path: Path,
) -> None:
    secret = "s3cret-passw0rd"
    server = RedisServer(tmp_path / "redis", password=secret)
    server.start()
    try:
        bare = f"redis://127.0.0.1:{server.port}/0"
        pw_file = tmp_path / "pw"
        pw_file.write_text(secret + "\n")
        for extra, env in [
            (["--redis-password-file", str(pw_file)], {}),
            ([], {"TICKWORK_REDIS_PASSWORD": secret}),
            ([], {"TICKWORK_REDIS_URL": server.url}),
        ]:
            log = tmp_path / f"events-{len(extra)}-{len(env)}.jsonl"
            stderr = tmp_path / "stderr.log"
            url_args = [] if "TICKWORK_REDIS_URL" in env else ["--redis-url", bare]
            proc = start_tickwork(
                [
                    "run",
                    W,
                    "--period",
                    "200ms",
                    *url_args,
                    *extra,
                    "--metrics-port",
                    "0",
                    "--log-level",
                    "debug",
                ],
                env={"TICKWORK_TEST_LOG": str(log), **env},
                log_path=stderr,
            )
            try:
                wait_until(
                    lambda log=log: _starts(log), timeout=15, what="a tick with the password"
                )
            finally:
                stop(proc)
        # A wrong password: the URL in the logs is redacted.
        stderr = tmp_path / "wrong.log"
        proc = start_tickwork(
            [
                "run",
                W,
                "--redis-url",
                f"redis://:wrong-{secret}@127.0.0.1:{server.port}/0",
                "--metrics-port",
                "0",
            ],
            log_path=stderr,
        )
        try:
            # Wait for the refusal itself: a fixed sleep loses to a slow start on a busy machine.
            wait_until(
                lambda: "AuthenticationError" in stderr.read_text(),
                timeout=20,
                what="the wrong password's AuthenticationError",
                details=stderr.read_text,
            )
        finally:
            stop(proc)
        logs = (tmp_path / "stderr.log").read_text() + stderr.read_text()
        assert secret not in logs
        assert "127.0.0.1" in stderr.read_text()
    finally:
        server.stop()


def test_with_redis_down_nothing_runs_and_readyz_says_so_until_redis_is_back(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    port = free_port()
    redis_server.stop()
    proc = start_tickwork(
        ["run", W, "--period", "200ms", "--redis-url", redis_server.url, "--lease-ttl", "1s",
         "--metrics-port", str(port), "--metrics-host", "127.0.0.1"],
        env={"TICKWORK_TEST_LOG": str(log)},
        log_path=tmp_path / "stderr.log",
    )  # fmt: skip
    try:
        wait_until(lambda: _http_status(port, "/healthz") == 200, timeout=15, what="/healthz")
        time.sleep(1.5)
        assert _starts(log) == []
        assert _http_status(port, "/readyz") == 503
        redis_server.start()
        wait_until(lambda: _starts(log), timeout=10, what="ticks after Redis came back")
        wait_until(lambda: _http_status(port, "/readyz") == 200, timeout=10, what="ready")
        # Redis goes away again while the worker holds the lease: ticking stops.
        redis_server.stop()
        time.sleep(1.5)  # longer than the lease TTL
        settled = len(_starts(log))
        time.sleep(1.0)
        assert len(_starts(log)) == settled
        assert _http_status(port, "/readyz") == 503
        metrics = (
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        )
        assert 'tickwork_lease_held{worker="Ticker"} 0.0' in metrics
        assert 'tickwork_lease_losses_total{reason="expired",worker="Ticker"} 1.0' in metrics
    finally:
        assert stop(proc) == 0


def test_tickwork_status_prints_the_record_of_each_worker(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    proc = start_tickwork(
        [
            "run",
            W,
            "--period",
            "200ms",
            "--redis-url",
            redis_server.url,
            "--replica-id",
            "pod-7",
            "--metrics-port",
            "0",
        ],
        env={"TICKWORK_TEST_LOG": str(log)},
    )
    try:
        wait_until(lambda: len(_starts(log)) >= 2, timeout=15, what="two ticks")
    finally:
        stop(proc)
    out = subprocess.run(
        [TICKWORK, "status", "--redis-url", redis_server.url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    header, row = out.splitlines()[:2]
    assert header.split()[:2] == ["WORKER", "OUTCOME"]
    assert row.split()[0] == "Ticker" and row.split()[1] == "success"
    assert "pod-7" in row
    missing = subprocess.run(
        [TICKWORK, "status", "Nope", "--redis-url", redis_server.url],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and "no status recorded for worker 'Nope'" in missing.stderr


def test_the_follower_counts_slots_it_did_not_run_and_the_holder_reports_its_lease(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    ports = [free_port(), free_port()]
    procs = [
        start_tickwork(
            ["run", W, "--period", "200ms", "--redis-url", redis_server.url,
             "--replica-id", f"r{i}", "--lease-ttl", "1s",
             "--metrics-port", str(ports[i]), "--metrics-host", "127.0.0.1"],
            env={"TICKWORK_TEST_LOG": str(log)},
        )
        for i in range(2)
    ]  # fmt: skip
    try:
        wait_until(lambda: len(_starts(log)) >= 8, timeout=20, what="eight ticks")
        holder = 0 if _starts(log)[-1]["replica"] == "r0" else 1
        follower = 1 - holder
        held = 'tickwork_lease_held{worker="Ticker"}'
        assert metric(ports[holder], held) == 1
        assert metric(ports[follower], held) == 0
        token = metric(ports[holder], 'tickwork_lease_fencing_token{worker="Ticker"}')
        assert token == _starts(log)[-1]["token"]
        not_leader = 'tickwork_ticks_skipped_total{reason="not_leader",worker="Ticker"}'
        assert metric(ports[follower], not_leader) >= 3
        assert (
            metric(ports[holder], 'tickwork_lease_operation_duration_seconds_count{op="renew"}')
            >= 1
        )
        # The follower tries again when the holder's lease would run out (it is renewed
        # meanwhile): about once per TTL, not once per quarter period.
        assert (
            metric(ports[follower], 'tickwork_lease_operation_duration_seconds_count{op="acquire"}')
            >= 1
        )
    finally:
        for proc in procs:
            stop(proc)


def _ticks_then_status(url: str, tmp_path: Path) -> str:
    """Run the ticker on ``url`` until two ticks, stop it, and return its log; then check
    that ``tickwork status`` reads its record from the same URL."""
    log = tmp_path / "events.jsonl"
    stderr = tmp_path / "stderr.log"
    proc = start_tickwork(
        ["run", W, "--period", "200ms", "--redis-url", url, "--metrics-port", "0"],
        env={"TICKWORK_TEST_LOG": str(log)},
        log_path=stderr,
    )
    try:
        wait_until(
            lambda: len(_starts(log)) >= 2, timeout=15, what="two ticks", details=stderr.read_text
        )
    finally:
        assert stop(proc) == 0
    out = subprocess.run(
        [TICKWORK, "status", "Ticker", "--redis-url", url], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].split()[:2] == ["Ticker", "success"]
    return stderr.read_text()


def test_rediss_tls_with_a_password_works_and_the_password_stays_out_of_the_logs(
    tmp_path: Path,
) -> None:
    secret = "tls-s3cret"
    server = RedisServer(tmp_path / "redis", password=secret, tls=True)
    server.start()
    try:
        assert server.url.startswith("rediss://")
        text = _ticks_then_status(server.url, tmp_path)
        assert "rediss://:***@127.0.0.1" in text and secret not in text
    finally:
        server.stop()


def test_a_services_function_registers_what_the_ticks_use(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    proc = start_tickwork(
        ["run", "tests.workers.sample:Greeter", "--services", "tests.workers.sample:register",
         "--period", "200ms", "--metrics-port", "0"],
        env={"TICKWORK_TEST_LOG": str(log)},
    )  # fmt: skip
    try:
        wait_until(lambda: len(_starts(log)) >= 2, timeout=15, what="two greetings")
    finally:
        assert stop(proc) == 0
    assert {e.get("greeting") for e in _starts(log)} == {"hello from --services"}


def test_a_unix_socket_url_runs_ticks_and_tickwork_status_reads_them(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", unix_socket=True)
    server.start()
    try:
        assert "Traceback" not in _ticks_then_status(server.unix_url, tmp_path)
    finally:
        server.stop()
