"""Worker pods that really run: the real node of the test cluster (hack/node.sh).

Which node each e2e file uses: this file puts every pod on the real node (kubelet +
containerd, images built by ``make images`` and loaded by hack/node.sh, nothing pulled);
the other e2e files use the kwok nodes, whose pods show Running without running anything,
for tests that need many pods or nodes.

Here, as a user installs it: ``helm install`` of the chart (the operator runs in a pod with
its ServiceAccount, and the chart's try-it Redis), the example BackgroundWorker with three
replicas applied with kubectl, a Prometheus that finds the pods with Kubernetes service
discovery. Then the promises: exactly one replica runs each tick, the fencing token grows on
every takeover, deleting the leading pod or rolling the Deployment hands the lease over in
time, scale/suspend/resume and a bad Redis Secret show in the pods and in the status, and
the pods really run with the restricted security context.

The tests of this module share one installation and one worker and run in file order.
"""

from __future__ import annotations

import functools
import itertools
import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.test_chart import apply, get
from tests.integration.prometheus_support import PrometheusServer, sample_value
from tests.support import processes, real_node, tools
from tests.support.real_node import (
    NODE_NAME,
    Tick,
    example_worker,
    holders,
    parse_ticks,
    running_pods,
    runtime_name,
    worker_pods,
)

if TYPE_CHECKING:
    from conftest import Tool

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tickwork"
WORKER = "passive-user-checker"
PERIOD_SECONDS = 2.0
LEASE_TTL_SECONDS = 5.0
RELEASE = "tickwork"
#: How often the operator reads a worker's status document (the chart's operator.statusRefresh).
STATUS_REFRESH_SECONDS = 3.0
#: Polling the API and the pods: a gentler pace than the default.
wait_until = functools.partial(processes.wait_until, interval=0.25)
#: What every measured hand-over may take on top of its bound: the metrics poll interval
#: and a loaded 2-core machine.
SLACK_SECONDS = 1.5


@dataclass
class Product:
    """The installation this module's tests share."""

    namespace: str
    redis_secret: str
    operator_pod: str


# --------------------------------------------------------------------------- helpers


def background_worker(name: str, namespace: str, secret: str, **spec: Any) -> dict[str, Any]:
    """The example BackgroundWorker of these tests, on the real node."""
    return example_worker(
        name,
        namespace,
        redis_secret=secret,
        period=f"{PERIOD_SECONDS:g}s",
        lease_ttl=f"{LEASE_TTL_SECONDS:g}s",
        **spec,
    )


def the_holder(kubectl: Tool, namespace: str, name: str, *, timeout: float = 30) -> tuple[str, int]:
    """The one pod holding the lease, and its token; fails if two ever claim it at once."""

    def one() -> tuple[str, int] | None:
        held = holders(running_pods(kubectl, namespace, name), runtime_name(namespace, name))
        assert len(held) <= 1, f"two pods hold the lease of {name} at once: {held}"
        return next(iter(held.items())) if held else None

    found: tuple[str, int] = wait_until(one, timeout=timeout, what=f"a holder of {name}")
    return found


def ticks_of(kubectl: Tool, namespace: str, pods: list[str]) -> list[Tick]:
    ticks: list[Tick] = []
    for pod in pods:
        log = kubectl("logs", pod, "-n", namespace, "--tail=-1").stdout
        ticks.extend(parse_ticks(log))
    return sorted(ticks)


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for c in (obj or {}).get("status", {}).get("conditions", []):
        if c["type"] == kind:
            return dict(c)
    return {}


def exec_in(kubectl: Tool, namespace: str, pod: str, *command: str) -> str:
    return str(kubectl("exec", pod, "-n", namespace, "--", *command).stdout)


# -------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def product(kubectl: Tool, helm: Tool, real_node_ready: str) -> Iterator[Product]:
    """``helm install`` of the chart: the operator in a pod, the try-it Redis; both on the
    real node, serving one fresh namespace."""
    namespace = f"e2e-real-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    try:
        kubectl("wait", "--for=create", "serviceaccount/default", "-n", namespace, "--timeout=30s")
        sets = [
            "image.pullPolicy=Never",
            f"watchNamespaces={{{namespace}}}",
            "operator.logFormat=text",
            f"operator.statusRefresh={STATUS_REFRESH_SECONDS:g}s",
            *real_node.helm_placement_values(),
            *real_node.try_redis_values(),
        ]
        helm(
            "install",
            RELEASE,
            str(CHART),
            "--namespace",
            namespace,
            *[arg for value in sets for arg in ("--set", value)],
            "--wait",
            "--timeout=180s",
            timeout_seconds=240,
        )
        pods = real_node.pods_of(kubectl, namespace, {"app.kubernetes.io/component": "operator"})
        assert len(pods) == 1, pods
        secret = f"{RELEASE}-redis"
        assert get(kubectl, "secret", secret, namespace) is not None, "no Redis Secret"
        yield Product(namespace, secret, pods[0]["metadata"]["name"])
    finally:
        helm("uninstall", RELEASE, "--namespace", namespace, "--wait", check=False)
        kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found")


@pytest.fixture(scope="module")
def worker(kubectl: Tool, product: Product) -> str:
    """The example BackgroundWorker, three replicas, all Ready."""
    apply(kubectl, background_worker(WORKER, product.namespace, product.redis_secret))
    wait_until(
        lambda: len(running_pods(kubectl, product.namespace, WORKER)) == 3,
        timeout=120,
        what="three Ready worker pods",
        details=lambda: kubectl("get", "pods", "-n", product.namespace, "-o", "wide").stdout,
    )
    return WORKER


# ----------------------------------------------------------------------------- tests


def test_the_operator_installed_with_helm_runs_in_a_pod_on_the_real_node_and_leads(
    kubectl: Tool, product: Product
) -> None:
    pod = get(kubectl, "pod", product.operator_pod, product.namespace)
    assert pod["spec"]["nodeName"] == NODE_NAME
    assert pod["spec"]["serviceAccountName"] == f"{RELEASE}-operator"
    statuses = pod["status"]["containerStatuses"]
    assert all(s["ready"] and s["state"].get("running") for s in statuses), statuses
    # /readyz answers on the pod's own address (from the host, over the bridge).
    ports = pod["spec"]["containers"][0]["ports"]
    port = next(p["containerPort"] for p in ports if p["name"] == "http-metrics")
    with urllib.request.urlopen(f"http://{pod['status']['podIP']}:{port}/readyz", timeout=5) as r:
        assert r.status == 200
    # It took the leader Lease in its namespace, under its own pod name.
    leases = kubectl.json("get", "leases", "-n", product.namespace, "-o", "json")["items"]
    holders_ = [lease["spec"].get("holderIdentity") or "" for lease in leases]
    assert any(product.operator_pod in h for h in holders_), holders_


def test_three_replicas_share_one_lease_and_each_tick_runs_exactly_once(
    kubectl: Tool, product: Product, worker: str
) -> None:
    runtime = runtime_name(product.namespace, worker)
    pods = running_pods(kubectl, product.namespace, worker)
    assert {p["spec"]["nodeName"] for p in pods} == {NODE_NAME}
    names = [p["metadata"]["name"] for p in pods]
    holder, _ = the_holder(kubectl, product.namespace, worker)
    assert holder in names
    # A few periods of ticks, from the three pods' logs.
    wait_until(
        lambda: len(ticks_of(kubectl, product.namespace, names)) >= 5,
        timeout=8 * PERIOD_SECONDS + 10,
        what="five finished ticks",
    )
    ticks = ticks_of(kubectl, product.namespace, names)
    slots = [t.slot for t in ticks]
    assert len(slots) == len(set(slots)), f"a slot ran twice: {ticks}"
    gaps = {round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(slots)}
    assert gaps <= {PERIOD_SECONDS}, f"slots are not one period apart: {sorted(gaps)}"
    tokens = [t.token for t in ticks]
    assert tokens == sorted(tokens), f"the fencing token went down: {ticks}"
    # Only the holder ran them (no takeover happened meanwhile: one token).
    assert {t.replica for t in ticks} == {holder} and len(set(tokens)) == 1, ticks
    # Redis says the same: `tickwork status`, run inside a worker pod (its env has the URL).
    status = json.loads(
        exec_in(kubectl, product.namespace, names[0], "tickwork", "status", runtime, "--json")
    )
    record = status.get(runtime, status)
    assert holder in json.dumps(record), record


def test_prometheus_finds_the_pods_by_kubernetes_discovery_and_sees_one_holder(
    kubectl: Tool, kubeconfig: Path, product: Product, worker: str, tmp_path: Path
) -> None:
    server = PrometheusServer(
        tmp_path / "prometheus",
        binary=str(real_node.PROMETHEUS_BINARY),
        scrape_configs=[
            real_node.kubernetes_pod_scrape_config(
                kubeconfig=kubeconfig, namespaces=[product.namespace]
            )
        ],
        scrape_interval="1s",
    )
    runtime = runtime_name(product.namespace, worker)
    server.start()
    try:
        held = server.wait_for_value(
            f'sum by (worker) (tickwork_lease_held{{worker="{runtime}"}})',
            lambda v: v == 1,
            timeout=30,
        )
        assert held == 1
        pods = {p["metadata"]["name"] for p in running_pods(kubectl, product.namespace, worker)}
        wait_until(
            lambda: (
                {
                    s["metric"]["pod"]
                    for s in server.query(
                        f'count by (pod) (tickwork_ticks_total{{worker="{runtime}"}})'
                    )
                }
                == pods
            ),
            timeout=30,
            what="tickwork_ticks_total of all three pods",
        )
        # Every target is a pod of the real node: nothing else is scraped.
        targets = server.api("targets")["activeTargets"]
        assert targets and all(
            t["labels"]["pod"] in pods and t["health"] == "up" for t in targets
        ), targets
    finally:
        server.stop()


def test_the_worker_pods_really_run_with_the_restricted_security_context(
    kubectl: Tool, product: Product, worker: str
) -> None:
    pod = running_pods(kubectl, product.namespace, worker)[0]["metadata"]["name"]
    uid = exec_in(kubectl, product.namespace, pod, "id", "-u").strip()
    assert uid != "0", "the worker runs as root"
    status = exec_in(kubectl, product.namespace, pod, "cat", "/proc/self/status")
    caps = {
        line.split(":")[0]: line.split(":")[1].strip()
        for line in status.splitlines()
        if line.startswith("Cap")
    }
    assert int(caps["CapEff"], 16) == 0 and int(caps["CapPrm"], 16) == 0, caps
    assert int(caps["CapBnd"], 16) == 0, caps
    assert [line for line in status.splitlines() if line.startswith("NoNewPrivs")] == [
        "NoNewPrivs:\t1"
    ]
    written = kubectl(
        "exec", pod, "-n", product.namespace, "--", "touch", "/app/written", check=False
    )
    assert written.returncode != 0 and "Read-only file system" in written.stderr, written.stderr
    # /tmp is writable (an emptyDir): the example's SQLite store lives there.
    exec_in(kubectl, product.namespace, pod, "touch", "/tmp/written")


def test_pods_resolve_services_by_name_and_reach_nothing_off_this_machine(
    kubectl: Tool, product: Product, worker: str
) -> None:
    pod = running_pods(kubectl, product.namespace, worker)[0]["metadata"]["name"]
    service = get(kubectl, "service", f"{RELEASE}-redis", product.namespace)
    probe = (
        "import socket, sys\n"
        "name = sys.argv[1]\n"
        "print(socket.gethostbyname(name))\n"
        "for host in sys.argv[2:]:\n"
        "    s = socket.socket(); s.settimeout(2)\n"
        "    try:\n"
        "        s.connect((host, 80)); print('reached', host)\n"
        "    except OSError as e:\n"
        "        print('unreachable', host, e.errno)\n"
    )
    out = exec_in(
        kubectl,
        product.namespace,
        pod,
        "python",
        "-c",
        probe,
        f"{RELEASE}-redis.{product.namespace}.svc",
        "192.0.2.1",
        "8.8.8.8",
    ).splitlines()
    assert out[0] == service["spec"]["clusterIP"]
    assert [line.split()[0] for line in out[1:]] == ["unreachable", "unreachable"], out


def bgw_columns(kubectl: Tool, namespace: str, name: str) -> dict[str, str]:
    """``kubectl get bgw NAME`` as the user reads it: column header → cell."""
    lines = kubectl("get", "bgw", name, "-n", namespace).stdout.splitlines()
    header, row = lines[0], lines[1]
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    # Headers with a space ("LAST SUCCESS") start one column.
    names = header.split()
    merged: list[tuple[str, int]] = []
    for start, word in zip(starts, names, strict=True):
        if merged and merged[-1][0] == "LAST":
            merged[-1] = (f"LAST {word}", merged[-1][1])
        else:
            merged.append((word, start))
    cells = {}
    for index, (title, start) in enumerate(merged):
        end = merged[index + 1][1] if index + 1 < len(merged) else None
        cells[title] = row[start:end].strip()
    return cells


def run_status(kubectl: Tool, namespace: str, name: str) -> dict[str, Any]:
    return dict((get(kubectl, "bgw", name, namespace) or {}).get("status") or {})


def test_kubectl_get_bgw_shows_the_holder_last_success_and_next_slot_and_they_change_as_it_runs(
    kubectl: Tool, product: Product, worker: str
) -> None:
    ns = product.namespace
    holder, token = the_holder(kubectl, ns, worker)
    first = wait_until(
        lambda: (
            (s := run_status(kubectl, ns, worker)).get("leaseHolder") == holder
            and s.get("lastSuccessfulTime")
            and s
        ),
        timeout=STATUS_REFRESH_SECONDS + 20,
        what="the holder and a last success in status",
    )
    assert first["lastOutcome"] in ("success", "running")
    assert first["fencingToken"] >= token
    assert first["nextScheduleTime"] > first["lastScheduleTime"]
    columns = bgw_columns(kubectl, ns, worker)
    print(f"kubectl get bgw: {columns}")
    assert columns["HOLDER"] == holder
    assert columns["READY"] == "3/3"
    assert columns["STATUS"] == "True"
    assert columns["REASON"] == "ReplicasReady"
    assert columns["SCHEDULE"] == first["schedule"]
    assert columns["LAST SUCCESS"][-1] in "sm" and columns["LAST SUCCESS"][:-1].isdigit()
    assert columns["NEXT"] == first["nextScheduleTime"]

    later = wait_until(
        lambda: (
            (s := run_status(kubectl, ns, worker)).get("lastScheduleTime", "")
            > first["lastScheduleTime"]
            and s.get("nextScheduleTime", "") > first["nextScheduleTime"]
            and s.get("lastSuccessfulTime", "") > first["lastSuccessfulTime"]
            and s
        ),
        timeout=STATUS_REFRESH_SECONDS + 3 * PERIOD_SECONDS + 10,
        what="later slots, successes and next slots in status",
    )
    assert later["leaseHolder"] == holder
    assert bgw_columns(kubectl, ns, worker)["NEXT"] != columns["NEXT"]


def kstatus_of(kubectl: Tool, namespace: str, name: str) -> tuple[str, str]:
    """cli-utils' kstatus of the BackgroundWorker (hack/kstatus): its status and message."""
    listing = kubectl("get", "bgw", name, "-n", namespace, "-o", "json").stdout
    wrapped = {"apiVersion": "v1", "kind": "List", "items": [json.loads(listing)]}
    result = tools.run(tools.tool("kstatus"), input=json.dumps(wrapped))
    assert result.returncode == 0, result.stderr
    _, status, message = (result.stdout.strip() + " ").split(" ", 2)
    return status, message.strip()


def test_kubectl_wait_for_ready_and_kstatus_read_the_worker_as_current(
    kubectl: Tool, product: Product, worker: str
) -> None:
    ns = product.namespace
    kubectl(
        "wait",
        "--for=condition=Ready",
        f"bgw/{worker}",
        "-n",
        ns,
        "--timeout=60s",
        timeout_seconds=90,
    )
    status, message = kstatus_of(kubectl, ns, worker)
    print(f"kstatus: {status} {message}")
    assert status == "Current", message
    # A rollout in progress reads as InProgress, then Current again.
    kubectl(
        "patch",
        "bgw",
        worker,
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"env": [{"name": "EXAMPLE_KSTATUS", "value": uuid.uuid4().hex}]}}),
    )

    def reconciling() -> tuple[dict[str, Any], tuple[str, str]] | None:
        # The worker's own Reconciling condition, and kstatus reading it, while pods roll.
        found = condition(get(kubectl, "bgw", worker, ns), "Reconciling")
        if found.get("status") != "True":
            return None
        read = kstatus_of(kubectl, ns, worker)
        return (found, read) if read[0] == "InProgress" else None

    seen = wait_until(
        reconciling, timeout=30, what="Reconciling=True and kstatus InProgress in the rollout"
    )
    print(f"during the rollout: {seen}")
    wait_until(
        lambda: kstatus_of(kubectl, ns, worker)[0] == "Current",
        timeout=150,
        what="kstatus Current after the rollout",
    )
    kubectl(
        "wait",
        "--for=condition=Ready",
        f"bgw/{worker}",
        "-n",
        ns,
        "--timeout=60s",
        timeout_seconds=90,
    )


def test_killing_the_holder_pod_changes_holder_within_ttl_a_period_and_one_status_refresh(
    kubectl: Tool, product: Product, worker: str
) -> None:
    ns = product.namespace
    holder, _ = the_holder(kubectl, ns, worker)
    wait_until(
        lambda: run_status(kubectl, ns, worker).get("leaseHolder") == holder,
        timeout=STATUS_REFRESH_SECONDS + 20,
        what="the holder in status",
    )
    pod = get(kubectl, "pod", holder, ns)
    started = time.monotonic()
    # Killed (no SIGTERM: the lease is not released), then removed so that it cannot restart.
    assert real_node.kill_pod_processes(pod), f"no process of {holder} found"
    kubectl("delete", "pod", holder, "-n", ns, "--grace-period=0", "--force", "--wait=false")
    bound = LEASE_TTL_SECONDS + PERIOD_SECONDS + STATUS_REFRESH_SECONDS
    shown = wait_until(
        lambda: (
            (h := bgw_columns(kubectl, ns, worker).get("HOLDER")) not in (holder, "", None) and h
        ),
        timeout=bound + 20,
        what="another pod in the HOLDER column",
    )
    took = time.monotonic() - started
    print(f"HOLDER changed {took:.2f} s after the holder pod was killed (bound {bound:g} s)")
    live = {p["metadata"]["name"] for p in running_pods(kubectl, ns, worker)}
    assert shown in live, (shown, live)
    assert took <= bound + SLACK_SECONDS, f"HOLDER changed after {took:.2f} s"
    wait_until(
        lambda: len(running_pods(kubectl, ns, worker)) == 3,
        timeout=90,
        what="three Ready pods again",
    )


def test_a_failing_worker_shows_last_outcome_failure_and_a_run_failed_warning_event(
    kubectl: Tool, product: Product
) -> None:
    ns = product.namespace
    name = "failing-worker"
    apply(
        kubectl,
        background_worker(
            name,
            ns,
            product.redis_secret,
            replicas=1,
            worker="examples.failing:UnreachableDatabaseWorker",
        ),
    )
    try:
        status = wait_until(
            lambda: (s := run_status(kubectl, ns, name)).get("lastOutcome") == "failure" and s,
            timeout=120,
            what="lastOutcome: failure",
            details=lambda: kubectl("get", "pods", "-n", ns, "-o", "wide").stdout,
        )
        assert "lastSuccessfulTime" not in status
        assert status["leaseHolder"]

        def run_failed() -> list[dict[str, Any]]:
            events = kubectl.json(
                "get",
                "events",
                "-n",
                ns,
                "--field-selector",
                f"involvedObject.kind=BackgroundWorker,involvedObject.name={name}",
                "-o",
                "json",
            )["items"]
            return [e for e in events if e["reason"] == "RunFailed"]

        (event,) = wait_until(run_failed, timeout=30, what="a RunFailed Event")
        assert event["type"] == "Warning"
        assert "ended with failure" in event["message"]
        print(f"RunFailed: {event['message']}")
        # The pod's log says why, with the exception.
        pod = worker_pods(kubectl, ns, name)[0]["metadata"]["name"]
        assert "db.example.invalid:5432 is unreachable" in kubectl("logs", pod, "-n", ns).stdout
        # Still failing: no second Warning for the same streak.
        time.sleep(STATUS_REFRESH_SECONDS + 2 * PERIOD_SECONDS)
        assert len(run_failed()) == 1
    finally:
        kubectl("delete", "bgw", name, "-n", ns, "--ignore-not-found")


def test_tickwork_trigger_in_a_pod_runs_one_extra_slot_exactly_once_and_counts_it_as_manual(
    kubectl: Tool, product: Product, worker: str
) -> None:
    ns = product.namespace
    runtime = runtime_name(ns, worker)
    wait_until(
        lambda: len(running_pods(kubectl, ns, worker)) == 3, timeout=90, what="three Ready pods"
    )
    holder, token = the_holder(kubectl, ns, worker)
    result = kubectl(
        "exec",
        f"deploy/{worker}",
        "-n",
        ns,
        "--",
        "tickwork",
        "trigger",
        worker,
        "--wait",
        "30s",
        timeout_seconds=60,
    )
    print(result.stdout.strip())
    assert "ended with success" in result.stdout, result.stdout
    record = json.loads(
        kubectl(
            "exec", f"deploy/{worker}", "-n", ns, "--", "tickwork", "status", runtime, "--json"
        ).stdout
    )[runtime]
    assert record["triggered_outcome"] == "success"
    slot = float(record["triggered_slot"])
    time.sleep(PERIOD_SECONDS)
    pods = [p["metadata"]["name"] for p in running_pods(kubectl, ns, worker)]
    runs = [t for t in ticks_of(kubectl, ns, pods) if abs(t.slot.timestamp() - slot) < 0.01]
    # Exactly once, in the pods' logs, on the holder, fenced like any slot.
    assert len(runs) == 1, runs
    assert runs[0].replica == holder
    assert runs[0].token == token
    pod = get(kubectl, "pod", holder, ns)
    text = real_node.scrape(pod)
    assert text is not None
    assert (
        sample_value(
            text,
            "tickwork_triggered_ticks_total",
            worker=runtime,
            trigger="manual",
            outcome="success",
        )
        == 1
    )


def test_deleting_the_leading_pod_hands_the_lease_over_within_ttl_and_a_period(
    kubectl: Tool, product: Product, worker: str
) -> None:
    holder, token = the_holder(kubectl, product.namespace, worker)
    started = time.monotonic()
    kubectl("delete", "pod", holder, "-n", product.namespace, "--wait=false")

    def new_holder() -> tuple[str, int] | None:
        pods = [p for p in running_pods(kubectl, product.namespace, worker)]
        others = [p for p in pods if p["metadata"]["name"] != holder]
        held = holders(others, runtime_name(product.namespace, worker))
        return next(iter(held.items())) if held else None

    bound = LEASE_TTL_SECONDS + PERIOD_SECONDS
    successor, new_token = wait_until(new_holder, timeout=bound + 10, what="a new lease holder")
    takeover = time.monotonic() - started
    print(f"takeover after deleting the leading pod: {takeover:.2f} s (bound {bound:g} s)")
    assert successor != holder
    assert new_token > token, f"the fencing token did not grow: {token} -> {new_token}"
    assert takeover <= bound + SLACK_SECONDS, f"takeover took {takeover:.2f} s"


def test_a_rolling_update_releases_the_lease_on_sigterm_and_the_takeover_is_within_a_period(
    kubectl: Tool, product: Product, worker: str
) -> None:
    wait_until(
        lambda: len(running_pods(kubectl, product.namespace, worker)) == 3,
        timeout=60,
        what="three Ready pods again",
    )
    holder, token = the_holder(kubectl, product.namespace, worker)
    kubectl(
        "patch",
        "bgw",
        worker,
        "-n",
        product.namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"env": [{"name": "EXAMPLE_ROLLOUT", "value": uuid.uuid4().hex}]}}),
    )

    def holder_terminating() -> float | None:
        pod = get(kubectl, "pod", holder, product.namespace)
        return time.monotonic() if pod is None or pod["metadata"].get("deletionTimestamp") else None

    terminating_at = wait_until(holder_terminating, timeout=120, what=f"{holder} to be stopped")

    def new_holder() -> tuple[str, int] | None:
        pods = [
            p
            for p in running_pods(kubectl, product.namespace, worker)
            if p["metadata"]["name"] != holder
        ]
        held = holders(pods, runtime_name(product.namespace, worker))
        return next(iter(held.items())) if held else None

    _, new_token = wait_until(new_holder, timeout=30, what="a holder after the old one")
    takeover = time.monotonic() - terminating_at
    print(f"takeover in a rolling update: {takeover:.2f} s (bound {PERIOD_SECONDS:g} s)")
    assert new_token > token
    assert takeover <= PERIOD_SECONDS + SLACK_SECONDS, f"takeover took {takeover:.2f} s"
    # The old leader said it released the lease (its log, read while it terminates, or the
    # successor got it without waiting for the TTL, as measured above).
    kubectl(
        "rollout",
        "status",
        f"deployment/{worker}",
        "-n",
        product.namespace,
        "--timeout=120s",
        timeout_seconds=150,
    )


def test_kubectl_scale_suspend_and_resume_show_in_the_pods_and_the_status(
    kubectl: Tool, product: Product, worker: str
) -> None:
    ns = product.namespace
    kubectl("scale", f"bgw/{worker}", "-n", ns, "--replicas=1")
    wait_until(
        lambda: (
            len(worker_pods(kubectl, ns, worker)) == 1
            and len(running_pods(kubectl, ns, worker)) == 1
        ),
        timeout=90,
        what="one worker pod",
    )
    wait_until(
        lambda: (get(kubectl, "bgw", worker, ns) or {}).get("status", {}).get("readyReplicas") == 1,
        timeout=30,
        what="status.readyReplicas == 1",
    )
    # The single pod holds the lease and runs the ticks.
    the_holder(kubectl, ns, worker)

    kubectl("patch", "bgw", worker, "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_until(lambda: not worker_pods(kubectl, ns, worker), timeout=60, what="no worker pods")
    wait_until(
        lambda: condition(get(kubectl, "bgw", worker, ns), "Ready").get("reason") == "Suspended",
        timeout=30,
        what="Ready=False (Suspended)",
    )

    kubectl("patch", "bgw", worker, "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_until(
        lambda: (
            len(running_pods(kubectl, ns, worker)) == 1
            and condition(get(kubectl, "bgw", worker, ns), "Ready").get("status") == "True"
        ),
        timeout=90,
        what="the worker Ready again",
    )
    the_holder(kubectl, ns, worker)


def test_a_bad_redis_secret_shows_in_the_pods_and_as_degraded_with_the_reason(
    kubectl: Tool, product: Product
) -> None:
    ns = product.namespace
    name = "bad-redis"
    apply(
        kubectl,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "bad-redis", "namespace": ns},
            "stringData": {"url": "http://not-redis:6379/0", "password": "x"},
        },
        background_worker(name, ns, "bad-redis", replicas=1),
    )
    try:

        def degraded() -> dict[str, Any] | None:
            found = condition(get(kubectl, "bgw", name, ns), "Degraded")
            return found if found.get("status") == "True" else None

        found = wait_until(degraded, timeout=120, what="Degraded=True")
        assert found["reason"] == "CrashLoopBackOff", found
        # kstatus-based tools (Flux, Argo CD, cli-utils) read it as Failed (Stalled=True).
        wait_until(
            lambda: kstatus_of(kubectl, ns, name)[0] == "Failed", timeout=30, what="kstatus Failed"
        )
        pod = worker_pods(kubectl, ns, name)[0]["metadata"]["name"]
        log = (
            kubectl("logs", pod, "-n", ns, "--previous", check=False).stdout
            or kubectl("logs", pod, "-n", ns).stdout
        )
        # The runtime's one-line refusal names the bad value and what was expected.
        assert "http://not-redis:6379/0" in log and "redis://" in log, log
        assert "Traceback" not in log, log
    finally:
        kubectl("delete", "bgw", name, "-n", ns, "--ignore-not-found")
