"""The monitoring files as data, the runtime's exported metric names, and a real Prometheus.

Used by tests/unit/test_monitoring_files.py (no server) and
tests/integration/test_prometheus.py (a ``prometheus`` process on 127.0.0.1).
HTTP is the standard library's urllib only.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from tests.support.processes import free_port, wait_until
from worker_runtime.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
ALERTS = MONITORING / "alerts.yaml"
ALERTS_TEST = MONITORING / "alerts_test.yaml"
DASHBOARD = MONITORING / "dashboard.json"

#: What counts as a metric name in rules and queries.
METRIC_NAME = re.compile(r"tickwork_[a-z_]+")
#: ``label_values(metric, label)`` in a Grafana variable query.
LABEL_VALUES = re.compile(
    r"^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s*,\s*(\w+)\s*\)$"
)


# ----------------------------------------------------------------------- exported names


def exported_samples() -> dict[str, frozenset[str]]:
    """Every sample name a runtime with one worker exports, with its label names.

    Names come from the registry itself, so they include the ``_total``, ``_bucket``,
    ``_sum`` and ``_count`` forms. ``_created`` samples are left out: ``tickwork run``
    calls ``disable_created_metrics()``, so they are never served.
    """
    registry = CollectorRegistry()
    Metrics(registry).for_worker("w")
    samples: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            samples.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in samples.items()}


def metric_names(text: str) -> set[str]:
    """The metric-like identifiers (``tickwork_...``) in ``text``."""
    return set(METRIC_NAME.findall(text))


# ---------------------------------------------------------------------------- dashboard


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """``(panel title, PromQL expression)`` for every target of every panel."""
    return [
        (panel.get("title", "?"), target["expr"])
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def dashboard_variable_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """``(variable name, query)`` for every query variable."""
    queries = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        queries.append((variable["name"], str(query)))
    return queries


# ---------------------------------------------------------------------------------- HTTP


def http_get(url: str, *, timeout: float = 5.0) -> tuple[int, bytes]:
    """``(status, body)``; error statuses are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def sample_value(exposition: str, name: str, **labels: str) -> float | None:
    """One sample's value from a ``/metrics`` text body (None when absent)."""
    wanted = {f'{key}="{value}"' for key, value in labels.items()}
    for line in exposition.splitlines():
        if not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_text = series.partition("{")
        if metric != name:
            continue
        if wanted <= set(label_text.rstrip("}").split(",")) - {""}:
            return float(value)
    return None


# ---------------------------------------------------------------------------- Prometheus


class PrometheusError(AssertionError):
    """Prometheus answered a query with an error."""


class PrometheusServer:
    """A throwaway ``prometheus`` on 127.0.0.1: its own config and storage in ``directory``.

    It scrapes the static ``targets`` (job ``job``), or the given ``scrape_configs`` (e.g.
    Kubernetes service discovery, with the ``binary`` that has it: Debian's has none).
    """

    def __init__(
        self,
        directory: Path,
        *,
        targets: Sequence[str] = (),
        scrape_configs: Sequence[dict[str, Any]] = (),
        rule_files: Sequence[Path] = (),
        scrape_interval: str = "500ms",
        job: str = "tickwork",
        binary: str | None = None,
    ) -> None:
        binary = binary or shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed; run `make prometheus`")
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.job = job
        # YAML is a superset of JSON.
        self.config = {
            "global": {
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
                "evaluation_interval": scrape_interval,
            },
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": list(scrape_configs)
            or [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "prometheus.log"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        config.write_text(json.dumps(self.config, indent=2), encoding="utf-8")
        args = [
            self.binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        try:
            wait_until(self._ready, timeout=30, interval=0.1, what=f"prometheus on {self.url}")
        except AssertionError:
            self.stop()
            raise AssertionError(f"prometheus did not start:\n{self.log()}") from None

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return http_get(f"{self.url}/-/ready", timeout=1)[0] == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    # -- HTTP API

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``; the ``data`` of a successful answer."""
        query = urllib.parse.urlencode(params)
        status, body = http_get(f"{self.url}/api/v1/{path}" + (f"?{query}" if query else ""))
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise PrometheusError(f"{path} {params}: HTTP {status}: {answer.get('error', body)}")
        return answer["data"]

    def query(self, expr: str, *, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's vector result (``[{"metric": {...}, "value": [ts, "v"]}]``)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        if data["resultType"] != "vector":
            raise PrometheusError(f"{expr}: expected a vector, got {data['resultType']}")
        result: list[dict[str, Any]] = data["result"]
        return result

    def scalar(self, expr: str, *, at: float | None = None) -> float | None:
        """The single value of ``expr`` (None when the result is empty)."""
        result = self.query(expr, at=at)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{expr}: expected one series, got {len(result)}")
        return float(result[0]["value"][1])

    def wait_for_value(
        self,
        expr: str,
        predicate: Callable[[float], bool],
        *,
        timeout: float = 20,
        what: str | None = None,
    ) -> float:
        """Poll ``expr`` until its single value satisfies ``predicate``; that value."""
        seen: list[float] = []

        def satisfied() -> bool:
            value = self.scalar(expr)
            if value is None or not predicate(value):
                return False
            seen.append(value)
            return True

        wait_until(satisfied, timeout=timeout, interval=0.1, what=what or expr)
        return seen[-1]


def is_number(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
