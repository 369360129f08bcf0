"""The operator next to a minimal Go controller-runtime reconciler, on the same control plane.

Both map a BackgroundWorker to an owned Deployment by server-side apply; the Go one
(bench/baselines/go-reconciler, default controller-runtime settings) does nothing else, the
Tickwork operator also writes status and Events. Each runs alone, in a namespace of its own,
as a ServiceAccount of its own (cluster-admin) whose requests a FlowSchema of its own
classifies, so the API server's own ``apiserver_flowcontrol_dispatched_requests_total``
counts exactly that operator's requests. Measured per operator:

- create → owned Deployment seen by a watch, one resource at a time (RESOURCES of them);
- time to Ready, one resource at a time (READY of them, one replica each, on the kwok nodes):
  create → the Deployment's replica available, and for the Tickwork operator create → the
  BackgroundWorker's own ``Ready=True`` condition (the Go baseline reports no status);
- a burst of BURST resources created at once → every Deployment (rate/s, per-resource p99);
- API requests per new worker over the burst (until every Deployment exists, then 5 s more);
- the operator's RSS and CPU with BURST resources (CPU share over a 10 s quiet window).

Run alone: ``.venv/bin/python bench/bench_operator.py [RESOURCES] [BURST]``; `make bench`
runs it through bench/harness.py. Needs the project's control plane (`TICKWORK_REAL_NODE=0
make cluster-up`) or ``KUBECONFIG``, and the Go baseline (`make bench-go-baseline`).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

import yaml

from bench.measuring import cpu_seconds, percentile, rss_mib
from bench.systems import CACHE, CLUSTER_VERSIONS, REPO, go_baseline_path

GROUP, VERSION, PLURAL = "tickwork.dev", "v1alpha1", "backgroundworkers"
CONCURRENT_CREATES = 20
# No pods: the kwok nodes hold 110 pods each, and 1,000 Pending pods would measure the
# scheduler and the Tickwork operator's reports of Unschedulable pods, not the mapping.
REPLICAS = 0
#: Workers of one replica each for the time-to-Ready part (kwok makes their pods Ready).
READY_RESOURCES = 20
OPERATORS = ("tickwork", "go-baseline")


class NotAvailable(Exception):
    """The control plane or the Go baseline is missing: the part is skipped, saying why."""


def _kubectl_path() -> Path:
    return CACHE / f"kubectl-layer-{CLUSTER_VERSIONS['KUBECTL_LAYER_VERSION']}" / "kubectl"


def _kubeconfig() -> Path:
    if os.environ.get("KUBECONFIG"):
        return Path(os.environ["KUBECONFIG"].split(os.pathsep)[0])
    return Path(os.environ.get("TICKWORK_CLUSTER_DIR") or REPO / ".cluster") / "kubeconfig"


def go_baseline() -> Path:
    path = go_baseline_path()
    if not path.exists():
        raise NotAvailable(f"the Go baseline {path} is not built (run `make bench-go-baseline`)")
    return path


class Cluster:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.kubectl_binary = _kubectl_path()

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [str(self.kubectl_binary), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=bench",
                     "-f", "-", stdin=yaml.safe_dump_all(objects))  # fmt: skip

    def dispatched(self) -> dict[str, float]:
        """``apiserver_flowcontrol_dispatched_requests_total`` by flow schema."""
        counts: dict[str, float] = {}
        for line in self.kubectl("get", "--raw", "/metrics").splitlines():
            if line.startswith("apiserver_flowcontrol_dispatched_requests_total{"):
                labels, _, value = line.rpartition(" ")
                schema = labels.split('flow_schema="', 1)[1].split('"', 1)[0]
                counts[schema] = counts.get(schema, 0.0) + float(value)
        return counts

    def kubeconfig_for(self, account: str, namespace: str, directory: Path) -> Path:
        """A kubeconfig whose user is the ServiceAccount ``account`` (a fresh token)."""
        token = self.kubectl("create", "token", account, "-n", namespace, "--duration=4h").strip()
        admin = yaml.safe_load(self.kubeconfig.read_text())
        cluster = admin["clusters"][0]["cluster"]
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "bench", "cluster": cluster}],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": account}}],
            "current-context": "bench",
        }  # fmt: skip
        path = directory / f"{account}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path


def _identity_objects(account: str, namespace: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": account, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": account},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "cluster-admin"},
         "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]},
        # Its own flow schema (exempt from queueing, like the admin's): the API server counts
        # this account's requests apart from everyone else's.
        {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
         "metadata": {"name": account},
         "spec": {"matchingPrecedence": 3, "priorityLevelConfiguration": {"name": "exempt"},
                  "rules": [{"subjects": [{"kind": "ServiceAccount", "serviceAccount":
                                           {"name": account, "namespace": namespace}}],
                             "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"],
                                                "resources": ["*"], "clusterScope": True,
                                                "namespaces": ["*"]}],
                             "nonResourceRules": [{"verbs": ["*"],
                                                   "nonResourceURLs": ["*"]}]}]}},
    ]  # fmt: skip


def _worker(name: str, namespace: str, replicas: int = REPLICAS) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "BackgroundWorker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"image": "tickwork/example-worker:0.1.0",
                 "worker": "examples.passive_users:PassiveUserCheckerWorker",
                 "schedule": {"period": "10m"}, "replicas": replicas},
    }  # fmt: skip


async def _measure(
    kubeconfig: Path, namespace: str, *, resources: int, burst: int, ready: int, pid: int,
    cluster: Cluster, schema: str, reports_status: bool,
) -> dict[str, Any]:  # fmt: skip
    from kubernetes_asyncio import client, config, watch
    from kubernetes_asyncio.client.exceptions import ApiException

    api_client = await config.new_client_from_config(config_file=str(kubeconfig))
    custom, apps = client.CustomObjectsApi(api_client), client.AppsV1Api(api_client)
    seen: dict[str, float] = {}
    # when each Deployment first had every replica available, and each BackgroundWorker
    # first said Ready=True
    available: dict[str, float] = {}
    worker_ready: dict[str, float] = {}
    changed = asyncio.Event()

    async def watch_deployments() -> None:
        version = None
        while True:
            stream = watch.Watch()
            try:
                async for event in stream.stream(
                    apps.list_namespaced_deployment, namespace, resource_version=version,
                    timeout_seconds=300,
                ):  # fmt: skip
                    obj, now = event["object"], time.time()
                    version = obj.metadata.resource_version
                    if event["type"] == "ADDED":
                        seen.setdefault(obj.metadata.name, now)
                    wanted = obj.spec.replicas or 0
                    if wanted and (obj.status.available_replicas or 0) >= wanted:
                        available.setdefault(obj.metadata.name, now)
                    changed.set()
            except ApiException as exc:  # e.g. 429 while a new CRD's watch cache starts
                if exc.status not in (410, 429, 500, 503, 504):
                    raise
                version = None
                await asyncio.sleep(0.2)
            finally:
                await stream.close()

    async def watch_workers() -> None:
        version = None
        while True:
            stream = watch.Watch()
            try:
                async for event in stream.stream(
                    custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                    resource_version=version, timeout_seconds=300,
                ):  # fmt: skip
                    obj, now = event["object"], time.time()
                    version = obj["metadata"]["resourceVersion"]
                    conditions = obj.get("status", {}).get("conditions", [])
                    if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                        worker_ready.setdefault(obj["metadata"]["name"], now)
                        changed.set()
            except ApiException as exc:  # e.g. 429 while a new CRD's watch cache starts
                if exc.status not in (410, 429, 500, 503, 504):
                    raise
                version = None
                await asyncio.sleep(0.2)
            finally:
                await stream.close()

    async def create(name: str) -> float:
        sent = time.time()
        await custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, _worker(name, namespace)
        )
        return sent

    async def until(predicate: Any, limit_seconds: float) -> None:
        deadline = time.monotonic() + limit_seconds
        while not predicate():
            changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"timed out after {limit_seconds:g}s ({len(seen)} Deployments)")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=min(left, 1.0))

    watchers = [asyncio.create_task(watch_deployments()), asyncio.create_task(watch_workers())]
    try:
        await asyncio.sleep(0.5)
        # ready: the operator answers a first resource
        await create("warmup")
        await until(lambda: "warmup" in seen, 120)
        sequential = []
        before = cluster.dispatched().get(schema, 0.0)
        for index in range(resources):
            name = f"seq-{index:04d}"
            sent = await create(name)
            await until(lambda n=name: n in seen, 60)  # type: ignore[misc]
            sequential.append(seen[name] - sent)
        await asyncio.sleep(3.0)
        sequential_requests = cluster.dispatched().get(schema, 0.0) - before
        # time to Ready: one replica each, one at a time
        to_available, to_ready = [], []
        for index in range(ready):
            name = f"ready-{index:04d}"
            asked = time.time()
            await custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, _worker(name, namespace, replicas=1)
            )
            await until(lambda n=name: n in available, 120)
            to_available.append(available[name] - asked)
            if reports_status:
                await until(lambda n=name: n in worker_ready, 120)
                to_ready.append(worker_ready[name] - asked)
        # the burst
        names = [f"burst-{index:04d}" for index in range(burst)]
        before = cluster.dispatched().get(schema, 0.0)
        cpu_before = cpu_seconds(pid)
        sent: dict[str, float] = {}
        gate = asyncio.Semaphore(CONCURRENT_CREATES)

        async def create_one(name: str) -> None:
            async with gate:
                sent[name] = await create(name)

        start = time.time()
        await asyncio.gather(*(create_one(n) for n in names))
        created = time.time()
        await until(lambda: all(n in seen for n in names), 600)
        done = max(seen[n] for n in names)
        cpu_burst = cpu_seconds(pid) - cpu_before
        await asyncio.sleep(5.0)
        burst_requests = cluster.dispatched().get(schema, 0.0) - before
        rss = rss_mib(pid)
        quiet_cpu0, quiet_t0 = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(10.0)
        quiet_share = (cpu_seconds(pid) - quiet_cpu0) / (time.monotonic() - quiet_t0)
        latencies = [seen[n] - sent[n] for n in names]
        return {
            "sequential_p50": percentile(sequential, 0.5),
            "sequential_p99": percentile(sequential, 0.99),
            "sequential_requests_per_worker": sequential_requests / max(1, resources),
            "ready_resources": ready,
            "available_p50": percentile(to_available, 0.5),
            "available_max": max(to_available, default=0.0),
            "ready_p50": percentile(to_ready, 0.5) if to_ready else None,
            "ready_max": max(to_ready) if to_ready else None,
            "burst": burst,
            "burst_create_seconds": created - start,
            "burst_seconds": done - start,
            "burst_rate": burst / (done - start),
            "burst_p50": percentile(latencies, 0.5),
            "burst_p99": percentile(latencies, 0.99),
            "burst_requests_per_worker": burst_requests / max(1, burst),
            "burst_cpu_seconds": cpu_burst,
            "rss_mib": rss,
            "quiet_cpu_share": quiet_share,
        }
    finally:
        for watcher in watchers:
            watcher.cancel()
        for watcher in watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await api_client.close()


def _start_operator(
    which: str, kubeconfig: Path, namespace: str, log: Path
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKWORK_")}
    env["KUBECONFIG"] = str(kubeconfig)
    if which == "tickwork":
        args = [str(Path(sys.executable).with_name("tickwork-operator")), "--namespace",
                namespace, "--no-leader-election"]  # fmt: skip
    else:
        args = [str(go_baseline()), "--namespace", namespace]
    with open(log, "ab") as out:
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=out)


def run(
    *, resources: int = 100, burst: int = 1000, ready: int = READY_RESOURCES,
    base: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Both operators, one after the other, on the same control plane: their figures."""
    kubeconfig = _kubeconfig()
    cluster = Cluster(kubeconfig)
    if not cluster.kubectl_binary.exists():
        raise NotAvailable(f"{cluster.kubectl_binary} is missing (run `make cluster-build`)")
    if not kubeconfig.exists() or "ok" not in cluster.kubectl(
        "get", "--raw", "/readyz", check=False
    ):
        raise NotAvailable(
            f"no control plane answers at {kubeconfig} (run `TICKWORK_REAL_NODE=0 make cluster-up`)"
        )
    go_baseline()
    cluster.kubectl("apply", "--server-side", "--field-manager=bench", "-f",
                    str(REPO / "charts" / "tickwork" / "crds"))  # fmt: skip
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/backgroundworkers.tickwork.dev")  # fmt: skip
    results: dict[str, Any] = {"resources": resources, "burst": burst, "ready": ready}
    with tempfile.TemporaryDirectory(prefix="tickwork-bench-operator-", dir=base) as tmp:
        directory = Path(tmp)
        for which in OPERATORS:
            suffix = uuid.uuid4().hex[:6]
            namespace, account = f"bench-{which}-{suffix}", f"bench-{which}"
            cluster.apply({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": namespace}})  # fmt: skip
            cluster.apply(*_identity_objects(account, namespace))
            operator_config = cluster.kubeconfig_for(account, namespace, directory)
            log = directory / f"{which}.log"
            proc = _start_operator(which, operator_config, namespace, log)
            try:
                print(f"== operator {which}: {resources} one by one, a burst of {burst}",
                      flush=True)  # fmt: skip
                results[which] = asyncio.run(
                    _measure(kubeconfig, namespace, resources=resources, burst=burst,
                             ready=ready, pid=proc.pid, cluster=cluster, schema=account,
                             reports_status=which == "tickwork")
                )  # fmt: skip
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                cluster.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=300s",
                                check=False)  # fmt: skip
                cluster.kubectl("delete", "clusterrolebinding,flowschema", account, check=False)
    results["operator_version"] = "tickwork-operator (this tree)"
    return results


def render(results: dict[str, Any]) -> list[str]:
    t, g = results.get("tickwork"), results.get("go-baseline")
    if not t or not g:
        return ["## Operator", "", "Not measured in this run.", ""]

    def row(label: str, key: str, fmt: str, scale: float = 1.0) -> str:
        a, b = t[key] * scale, g[key] * scale
        ratio = f"{a / b:.2f}x" if b else "-"
        return f"| {label} | {a:{fmt}} | {b:{fmt}} | {ratio} |"

    burst, total = results["burst"], _total(results)

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f}"

    def ready_row(label: str, key: str) -> str:
        a, b = t[key], g[key]
        return f"| {label} | {ms(a)} | {ms(b)} | {a / b:.2f}x |"

    ready = results.get("ready", 0)
    ready_rows = [
        ready_row("time to Ready: create → its replica available, p50 ms", "available_p50"),
        ready_row("time to Ready: create → its replica available, max ms", "available_max"),
        f"| time to Ready: create → the resource's Ready=True condition, p50 ms | "
        f"{ms(t['ready_p50'])} | - (no status) | - |",
        f"| time to Ready: create → the resource's Ready=True condition, max ms | "
        f"{ms(t['ready_max'])} | - (no status) | - |",
    ] if ready and "available_p50" in t and "available_p50" in g else []  # fmt: skip

    return [
        "## Operator next to a Go controller-runtime reconciler (kwok nodes)",
        "",
        f"Each operator alone on the same control plane, in a namespace of its own; "
        f"{results['resources']} resources one at a time, then a burst of {results['burst']} "
        f"({CONCURRENT_CREATES} creates in flight); each BackgroundWorker has "
        f"{REPLICAS} replicas (no pods: the kwok nodes hold 110 pods each); between the two, "
        f"{ready} resources of one replica each, one at a time, for the time to Ready (kwok "
        "marks each pod Ready once it is scheduled). "
        "API requests are the API server's own count "
        "(`apiserver_flowcontrol_dispatched_requests_total` of a FlowSchema that matches only "
        "the operator's ServiceAccount; watches and the status writes included). The Go "
        "baseline (bench/baselines/go-reconciler, controller-runtime "
        "v0.22.4, default settings: 1 reconcile at a time and no client-side rate limit, "
        "since controller-runtime's GetConfig sets QPS -1 and leaves throttling to API "
        "Priority and Fairness, here the exempt level) applies "
        "the Deployment and nothing else: no status, no Events.",
        "",
        "| measurement | Tickwork operator | Go baseline | Tickwork / Go |",
        "|---|---|---|---|",
        row("create → Deployment, one at a time, p50 ms", "sequential_p50", ".1f", 1000),
        row("create → Deployment, one at a time, p99 ms", "sequential_p99", ".1f", 1000),
        row("API requests per new worker, one at a time", "sequential_requests_per_worker", ".1f"),
        *ready_rows,
        row(f"burst of {burst} → every create answered, s", "burst_create_seconds", ".1f"),
        row(f"burst of {burst} → all Deployments, s", "burst_seconds", ".1f"),
        row("burst rate, Deployments/s", "burst_rate", ".1f"),
        row("burst, per-resource create → Deployment p50 s", "burst_p50", ".2f"),
        row("burst, per-resource create → Deployment p99 s", "burst_p99", ".2f"),
        row("API requests per new worker, burst", "burst_requests_per_worker", ".1f"),
        row("operator CPU during the burst, s", "burst_cpu_seconds", ".1f"),
        row(f"operator RSS with {total} resources, MiB", "rss_mib", ".0f"),
        row("operator CPU when quiet, % of a core", "quiet_cpu_share", ".1f", 100),
        "",
    ]


def _total(results: dict[str, Any]) -> int:
    """The resources the operator holds at the end (the warm-up one left out)."""
    return int(results["burst"] + results["resources"] + results.get("ready", 0))


def goals(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """Issue 14's operator goals against these figures: (goal, measured, met)."""
    t, g = results.get("tickwork"), results.get("go-baseline")
    if not t or not g:
        return []
    ratio = t["burst_rate"] / g["burst_rate"]
    total = _total(results)
    return [
        ("operator burst rate >= 2x the Go baseline's (default settings)",
         f"{t['burst_rate']:.1f}/s vs {g['burst_rate']:.1f}/s ({ratio:.2f}x)", ratio >= 2),
        ("operator: <= 5 API requests per new worker (burst)",
         f"{t['burst_requests_per_worker']:.1f}", t["burst_requests_per_worker"] <= 5),
        (f"operator RSS <= 150 MiB with {total} resources", f"{t['rss_mib']:.0f} MiB",
         t["rss_mib"] <= 150),
    ]  # fmt: skip


def goal_row(goal: str, measured: str, met: bool | None) -> str:
    return f"| {goal} | {measured} | {'yes' if met else '**no**'} |"


def replace_section(
    results_md: Path, section: list[str], note: str, results: dict[str, Any]
) -> None:
    """Put ``section`` in place of the operator section of an existing RESULTS.md, and the
    operator's rows of its goals table."""
    lines = [
        line for line in results_md.read_text().splitlines() if not line.startswith("| operator")
    ]
    table_end = next(
        (i for i, line in enumerate(lines) if line.endswith(("| yes |", "| **no** |"))), None
    )
    if table_end is not None:
        while table_end < len(lines) and lines[table_end].startswith("| "):
            table_end += 1
        lines[table_end:table_end] = [goal_row(*row) for row in goals(results)]
    start = next((i for i, line in enumerate(lines) if line.startswith("## Operator")), None)
    if start is None:
        start = end = len(lines)
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
    body = [section[0], "", note, *section[1:]]
    results_md.write_text("\n".join([*lines[:start], *body, *lines[end:]]) + "\n")


if __name__ == "__main__":
    import argparse
    from datetime import UTC, datetime

    parser = argparse.ArgumentParser(description="the operator next to the Go baseline")
    parser.add_argument("resources", type=int, nargs="?", default=100)
    parser.add_argument("burst", type=int, nargs="?", default=1000)
    parser.add_argument("--ready", type=int, default=READY_RESOURCES,
                        help="resources of one replica for the time to Ready")  # fmt: skip
    parser.add_argument("--results", type=Path, help="replace the operator section of this file")
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().strip()
    began = datetime.now(UTC)
    figures = run(resources=args.resources, burst=args.burst, ready=args.ready)
    section = render(figures)
    print("\n".join(section))
    if args.results:
        note = (
            f"Measured by `bench/bench_operator.py` on its own, {began:%Y-%m-%d %H:%M} UTC "
            f"(load before: {load}; after: {Path('/proc/loadavg').read_text().strip()})."
        )
        replace_section(args.results, section, note, figures)
