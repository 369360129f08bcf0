"""The ecosystem's own tools on what they check: kubeconform -strict, kube-score and pluto on
the chart's renders and manifests/, ct lint on the chart, promtool on real scrapes.

`make tools` builds or installs them (cached); kube-linter is not among them (README).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from tests.e2e.conftest import HELM
from tests.support.processes import free_port, start_tickwork, stop, wait_until
from tests.support.tools import REPO, run, tool
from tests.unit.test_chart_files import CHART, helm
from worker_operator.metrics import OperatorMetrics, Result
from worker_operator.serving import Health, serve

pytestmark = pytest.mark.integration

KUBERNETES_VERSION = "1.34.4"
SCHEMA_FILE = "{{ .ResourceKind }}{{ .KindSuffix }}.json"
# The prometheus-operator's kinds: no schema is at hand offline (its CRDs are not in a
# module this project's machines can fetch), so kubeconform reports them as skipped.
NO_SCHEMA = ["PodMonitor", "ServiceMonitor", "PrometheusRule"]
KUBE_SCORE_SKIPS = {
    s["id"]: s
    for s in yaml.safe_load((REPO / "security" / "kube-score-skips.yaml").read_text())["skips"]
}
# The chart's renders: the defaults, every optional part on, and two replicas with a budget.
RENDERS = {
    "defaults": [],
    "everything-on": [
        "--set=redis.enabled=true",
        "--set=monitoring.create=always",
        "--set=watchNamespaces={team-a,team-b}",
        "--set=operator.checkSecretReferences=true",
        "--set=podDisruptionBudget.enabled=true",
    ],
    "two-replicas": ["--set=replicaCount=2", "--set=podDisruptionBudget.enabled=true"],
}
MANIFESTS = sorted((REPO / "manifests").glob("*.yaml"))
EXAMPLES = sorted((REPO / "manifests" / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("renders")
    files = {}
    for name, args in RENDERS.items():
        result = helm("template", "tickwork", str(CHART), "--namespace", "ops", *args)
        assert result.returncode == 0, result.stderr
        files[name] = out / f"{name}.yaml"
        files[name].write_text(result.stdout, encoding="utf-8")
    return files


@pytest.fixture(scope="module")
def crd_schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kubeconform schemas of the CRD's kinds, from manifests/01-crd.yaml (the one source)."""
    out = tmp_path_factory.mktemp("crd-schemas")
    made = run(
        sys.executable,
        REPO / "hack" / "kube_json_schemas.py",
        "crd",
        REPO / "manifests/01-crd.yaml",
        out,
    )
    assert made.returncode == 0, made.stderr
    return out


def _kubeconform(crd_schemas: Path, *files: Path) -> dict[str, Any]:
    result = run(
        tool("kubeconform"),
        "-strict",
        "-summary",
        "-verbose",
        "-output=json",
        f"-kubernetes-version={KUBERNETES_VERSION}",
        f"-schema-location={tool('kube-schemas')}/{SCHEMA_FILE}",
        f"-schema-location={crd_schemas}/{SCHEMA_FILE}",
        f"-skip={','.join(NO_SCHEMA)}",
        *files,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    problems = [r for r in report["resources"] if r["status"] in ("statusInvalid", "statusError")]
    assert result.returncode == 0 and problems == [], problems or result.stderr
    return report


@pytest.mark.parametrize("render", list(RENDERS))
def test_kubeconform_strict_accepts_every_object_the_chart_renders(
    renders: dict[str, Path], crd_schemas: Path, render: str
) -> None:
    report = _kubeconform(crd_schemas, renders[render])

    skipped = {r["kind"] for r in report["resources"] if r["status"] == "statusSkipped"}
    assert skipped <= set(NO_SCHEMA)
    assert report["summary"]["valid"] >= 8


def test_kubeconform_strict_accepts_the_manifests_and_the_examples_against_the_crd(
    crd_schemas: Path,
) -> None:
    report = _kubeconform(crd_schemas, *MANIFESTS, *EXAMPLES)

    kinds = {r["kind"] for r in report["resources"] if r["status"] == "statusValid"}
    assert {"CustomResourceDefinition", "Deployment", "BackgroundWorker", "Secret"} <= kinds


def test_kubeconform_strict_refuses_an_example_with_a_field_the_crd_does_not_have(
    crd_schemas: Path, tmp_path: Path
) -> None:
    example = yaml.safe_load((REPO / "manifests/examples/passive-user-checker.yaml").read_text())
    example["spec"]["replicaz"] = 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(example), encoding="utf-8")
    result = run(
        tool("kubeconform"), "-strict", f"-schema-location={crd_schemas}/{SCHEMA_FILE}", bad
    )

    assert result.returncode == 1
    assert "additional properties 'replicaz' not allowed" in result.stdout


def _kube_score(*files: Path) -> dict[str, set[str]]:
    """``check id -> objects`` that fail it (warnings included)."""
    result = run(tool("kube-score"), "score", "-o", "json", "--kubernetes-version", "v1.34", *files)
    assert result.returncode in (0, 1), result.stderr
    failed: dict[str, set[str]] = {}
    for obj in json.loads(result.stdout):
        for check in obj["checks"]:
            if not check["skipped"] and check["grade"] < 10:
                failed.setdefault(check["check"]["id"], set()).add(obj["object_name"])
    return failed


def test_kube_score_finds_nothing_but_the_listed_skips_and_every_skip_is_still_needed(
    renders: dict[str, Path],
) -> None:
    failed = _kube_score(*renders.values(), *MANIFESTS)

    unlisted = {check: objs for check, objs in failed.items() if check not in KUBE_SCORE_SKIPS}
    stale = sorted(set(KUBE_SCORE_SKIPS) - set(failed))
    assert unlisted == {}
    assert stale == [], "nothing fails these any more: drop them from kube-score-skips.yaml"
    assert all(s["reason"].strip() and s["where"].strip() for s in KUBE_SCORE_SKIPS.values())


def test_pluto_finds_no_deprecated_or_removed_api_in_the_renders_or_the_manifests(
    renders: dict[str, Path], tmp_path: Path
) -> None:
    target = f"k8s=v{KUBERNETES_VERSION}"
    for name, path in [*renders.items(), *((p.name, p) for p in [*MANIFESTS, *EXAMPLES])]:
        result = run(tool("pluto"), "detect", str(path), "--target-versions", target, "-o", "json")
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
    # ... and it does find one: a PodDisruptionBudget of the removed policy/v1beta1.
    old = tmp_path / "old.yaml"
    old.write_text(
        "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\n"
        "metadata: {name: old}\nspec: {maxUnavailable: 1}\n"
    )
    result = run(tool("pluto"), "detect", str(old), "--target-versions", target)
    assert result.returncode == 3, result.stdout


def _ct(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``ct lint`` with yamllint, yamale and helm on PATH and ct's own default config files."""
    path = os.pathsep.join([str(tool("ct-python")), str(HELM.parent), os.environ["PATH"]])
    full_env = {
        **os.environ,
        "PATH": path,
        "CT_CONFIG_DIR": str(tool("ct").parent / "etc"),
        **(env or {}),
    }
    return run(tool("ct"), "lint", *args, cwd=cwd, env=full_env)


def test_ct_lint_accepts_the_chart_with_its_default_settings() -> None:
    # Every default but the maintainer lookup, which asks github.com whether each maintainer
    # is an account there: this machine reaches no such host (the next test checks the rest).
    result = _ct("--charts", "charts/tickwork", "--validate-maintainers=false", cwd=REPO)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "All charts linted successfully" in result.stdout


def test_ct_lint_finds_the_maintainers_and_goes_on_to_look_up_their_accounts(
    tmp_path: Path,
) -> None:
    # A repository whose remote is on GitHub, so that ct knows where to look the accounts up;
    # the lookup goes to a local port where nothing listens (no traffic leaves the machine).
    shutil.copytree(CHART, tmp_path / "charts" / "tickwork")
    for command in (
        ["init", "-q"],
        ["remote", "add", "origin", "https://github.com/tickwork/tickwork.git"],
    ):
        assert run("git", *command, cwd=tmp_path).returncode == 0
    closed = f"http://127.0.0.1:{free_port()}"
    result = _ct(
        "--charts", "charts/tickwork", cwd=tmp_path, env={"HTTPS_PROXY": closed, "NO_PROXY": ""}
    )
    output = result.stdout + result.stderr

    assert "Validating maintainers..." in output
    assert "chart doesn't have maintainers" not in output
    assert "failed validating maintainers" in output  # the lookup, refused locally


def _promtool_check(exposition: bytes) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not on PATH: run `make prometheus`"
    return subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition.decode(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_promtool_check_metrics_accepts_a_real_scrape_of_the_runtime(tmp_path: Path) -> None:
    port = free_port()
    proc = start_tickwork(
        ["run", "tests.workers.sample:Ticker", "--period", "200ms", "--metrics-port", str(port)],
        log_path=tmp_path / "stderr.log",
    )
    try:

        def scrape() -> bytes | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    body: bytes = r.read()
            except OSError:
                return None
            # Once a tick has run, every family has a sample worth checking.
            untouched = b'tickwork_ticks_total{outcome="success",worker="Ticker"} 0.0'
            return None if untouched in body else body

        body = wait_until(scrape, timeout=20, what="a scrape after the first tick")
    finally:
        stop(proc)
    result = _promtool_check(body)

    assert (result.returncode, result.stdout + result.stderr) == (0, "")


async def test_promtool_check_metrics_accepts_a_real_scrape_of_the_operator() -> None:
    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry)
    metrics.observe(trigger="create", result=Result.SUCCESS, seconds=0.02)
    async with serve(host="127.0.0.1", port=0, health=Health(), registry=registry) as port:
        url = f"http://127.0.0.1:{port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    result = _promtool_check(body)

    assert (result.returncode, result.stdout + result.stderr) == (0, "")
