"""`--log-format json`: the runtime and the operator write one JSON shape, extra fields kept."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import free_port, start_tickwork, stop, wait_until
from worker_runtime.logs import JSON_KEYS

pytestmark = pytest.mark.integration

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
LEVELS = {"debug", "info", "warning", "error", "critical"}


def _entries(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert entries, "no log lines"
    return entries


def _assert_the_shape(entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        assert tuple(entry)[: len(JSON_KEYS)] == JSON_KEYS, entry
        assert TIMESTAMP.fullmatch(entry["timestamp"]), entry
        assert entry["level"] in LEVELS, entry
        assert isinstance(entry["message"], str) and entry["logger"], entry


def test_the_runtime_writes_json_lines_with_the_tick_context(tmp_path: Path) -> None:
    log = tmp_path / "stderr.log"
    proc = start_tickwork(
        [
            "run",
            "examples.passive_users:PassiveUserCheckerWorker",
            "--period",
            "200ms",
            "--log-format",
            "json",
            "--log-level",
            "debug",
            "--metrics-port",
            "0",
            "--replica-id",
            "r-1",
        ],
        env={"TICKWORK_EXAMPLE_DB": str(tmp_path / "users.sqlite3")},
        log_path=log,
    )
    try:
        wait_until(lambda: '"tick": 2' in log.read_text(), timeout=20, what="two ticks logged")
    finally:
        assert stop(proc) == 0
    entries = _entries(log.read_text())

    _assert_the_shape(entries)
    ticks = [e for e in entries if "tick" in e]
    assert ticks and all(
        (e["worker"], e["replica"]) == ("PassiveUserCheckerWorker", "r-1") for e in ticks
    )


def test_the_operator_writes_the_same_json_shape(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    # An API server address where nothing listens: the operator logs its retries and gives up.
    kubeconfig.write_text(
        textwrap.dedent(
            f"""
            apiVersion: v1
            kind: Config
            clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:{free_port()}"}}}}]
            users: [{{name: u, user: {{token: not-a-secret}}}}]
            contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
            current-context: x
            """
        )
    )
    operator = Path(sys.executable).with_name("tickwork-operator")
    result = subprocess.run(
        [operator, "--log-format", "json", "--kubeconfig", kubeconfig, "--no-leader-election"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    entries = _entries(result.stderr)

    assert result.returncode != 0
    _assert_the_shape(entries)
    assert entries[-1]["level"] == "error"
    assert "cannot reach the Kubernetes API" in entries[-1]["message"]


_KOPF_OBJECT_LOG = textwrap.dedent(
    """
    import kopf
    from kopf._core.actions.loggers import LocalObjectLogger
    from worker_operator.cli import parse_args
    from worker_operator.handlers import configure_logging

    settings, _ = parse_args(["--log-format", "json", "--no-leader-election"], {})
    configure_logging(settings)
    body = kopf.Body({
        "apiVersion": "tickwork.dev/v1alpha1", "kind": "BackgroundWorker",
        "metadata": {"name": "w", "namespace": "ns", "uid": "u-1"},
    })
    logger = LocalObjectLogger(body=body, settings=kopf.OperatorSettings())
    logger.warning("handler %s retried", "reconcile", extra={"attempt": 2})
    """
)


def test_a_kopf_object_log_line_carries_the_object_and_its_extra_fields() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _KOPF_OBJECT_LOG],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (entry,) = _entries(result.stderr)

    _assert_the_shape([entry])
    assert entry["message"] == "handler reconcile retried"
    assert entry["attempt"] == 2
    assert entry["object"]["name"] == "w" and entry["object"]["namespace"] == "ns"
    assert "k8s_skip" not in entry and "severity" not in entry and "settings" not in entry
