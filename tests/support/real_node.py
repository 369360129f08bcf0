"""The real node of the test cluster (hack/node.sh), as the tests and the demo use it.

The node's names and addresses come from ``hack/node.env`` (the one source that the shell
scripts read too). Workloads choose the real node with :func:`placement` (a nodeSelector on
its label and a toleration of its taint); everything else lands on the kwok nodes.

Also here: the Helm values that put the chart's operator and its "try it" Redis on the real
node, and the scrape configuration of a Prometheus that finds worker pods with Kubernetes
service discovery, as users configure it, and keeps only the real node's pods.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.integration.prometheus_support import sample_value

#: Runs kubectl with these arguments (tests/e2e/conftest.py's ``Tool``, or the demo's).
Kubectl = Callable[..., subprocess.CompletedProcess[str]]

REPO = Path(__file__).resolve().parents[2]
HACK = REPO / "hack"
NODE_SCRIPT = HACK / "node.sh"


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines, ``#`` comments, no quoting (hack/versions.env, hack/node.env)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            raise ValueError(f"{path}:{number}: expected KEY=value, got {raw!r}")
        values[key] = value
    return values


NODE = read_env_file(HACK / "node.env")
NODE_NAME = NODE["NODE_NAME"]
NODE_IP = NODE["NODE_IP"]
POD_CIDR = ipaddress.ip_network(NODE["POD_CIDR"])
SERVICE_CIDR = ipaddress.ip_network(NODE["SERVICE_CIDR"])
TRY_REDIS_IMAGE = NODE["TRY_REDIS_IMAGE"]
#: The metrics port of worker pods (the operator's default, spec.metrics.port).
METRICS_PORT = 9100
#: The cache directory of hack/lib.sh (TW_CACHE).
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tickwork"
#: Prometheus with Kubernetes service discovery, built by hack/build-binaries.sh.
PROMETHEUS_BINARY = CACHE / f"prometheus-{NODE['PROMETHEUS_MODULE_VERSION']}" / "prometheus"


def placement() -> dict[str, Any]:
    """The pod-spec fields that put a pod on the real node (and only there)."""
    return {
        "nodeSelector": {NODE["NODE_LABEL_KEY"]: NODE["NODE_LABEL_VALUE"]},
        "tolerations": [
            {
                "key": NODE["NODE_TAINT_KEY"],
                "operator": "Exists",
                "effect": NODE["NODE_TAINT_EFFECT"],
            }
        ],
    }


def helm_placement_values() -> list[str]:
    """``--set`` values that put the chart's operator and try-it Redis on the real node."""
    place = placement()
    ((key, value),) = place["nodeSelector"].items()
    toleration = place["tolerations"][0]
    escaped = key.replace(".", r"\.")
    sets = []
    for prefix in ("", "redis."):
        sets.append(f"{prefix}nodeSelector.{escaped}={value}")
        sets.extend(
            f"{prefix}tolerations[0].{field}={toleration[field]}"
            for field in ("key", "operator", "effect")
        )
    return sets


def try_redis_values() -> list[str]:
    """``--set`` values for the chart's try-it Redis with the locally built Redis image."""
    repository, _, tag = TRY_REDIS_IMAGE.rpartition(":")
    return [
        "redis.enabled=true",
        f"redis.image.repository={repository}",
        f"redis.image.tag={tag}",
        "redis.image.pullPolicy=Never",
    ]


#: The example worker (examples/passive_users.py) in the image `make images` builds.
EXAMPLE_IMAGE = "tickwork/example-worker:0.1.0"
EXAMPLE_WORKER = "examples.passive_users:PassiveUserCheckerWorker"


def example_worker(
    name: str,
    namespace: str,
    *,
    redis_secret: str,
    period: str,
    lease_ttl: str,
    replicas: int = 3,
    **spec: Any,
) -> dict[str, Any]:
    """The example BackgroundWorker on the real node (rate mode), its Redis URL and password
    from the Secret ``redis_secret`` (keys ``url`` and ``password``, as the chart's try-it
    Redis makes them); ``spec`` adds or replaces fields."""
    return {
        "apiVersion": "tickwork.dev/v1alpha1",
        "kind": "BackgroundWorker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": EXAMPLE_IMAGE,
            "imagePullPolicy": "Never",
            "worker": EXAMPLE_WORKER,
            "schedule": {"period": period, "mode": "rate"},
            "lease": {"ttl": lease_ttl},
            "replicas": replicas,
            "redis": {
                "urlSecretRef": {"name": redis_secret, "key": "url"},
                "passwordSecretRef": {"name": redis_secret, "key": "password"},
            },
            **placement(),
            **spec,
        },
    }


def pod_ip_regex(network: ipaddress.IPv4Network | ipaddress.IPv6Network = POD_CIDR) -> str:
    """An RE2 pattern matching exactly the addresses of an octet-aligned IPv4 ``network``."""
    if network.version != 4 or network.prefixlen % 8:
        raise ValueError(f"{network}: expected an IPv4 network with a prefix of 8, 16 or 24 bits")
    fixed = str(network.network_address).split(".")[: network.prefixlen // 8]
    free = 4 - len(fixed)
    return r"\.".join([*fixed, *([r"\d+"] * free)])


def kubernetes_pod_scrape_config(
    *, kubeconfig: Path, namespaces: list[str], job: str = "tickwork-workers"
) -> dict[str, Any]:
    """A scrape job that discovers pods annotated ``prometheus.io/scrape: "true"`` (the
    operator annotates worker pods so), scrapes ``prometheus.io/port`` and ``/path``, and
    keeps only pods of the real node (its name and its pod range: kwok's pods have made-up
    addresses nothing listens on)."""
    return {
        "job_name": job,
        "kubernetes_sd_configs": [
            {
                "role": "pod",
                "kubeconfig_file": str(kubeconfig),
                "namespaces": {"names": namespaces},
            }
        ],
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                "regex": "true",
                "action": "keep",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_node_name"],
                "regex": re.escape(NODE_NAME),
                "action": "keep",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_ip"],
                "regex": pod_ip_regex(),
                "action": "keep",
            },
            {
                "source_labels": [
                    "__meta_kubernetes_pod_ip",
                    "__meta_kubernetes_pod_annotation_prometheus_io_port",
                ],
                "regex": r"(.+);(\d+)",
                "replacement": "$1:$2",
                "target_label": "__address__",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                "regex": "(.+)",
                "target_label": "__metrics_path__",
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }


def load_images() -> None:
    """(Re)load the project's images into the node's containerd; quick when unchanged."""
    result = subprocess.run(
        [str(NODE_SCRIPT), "load-images"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"hack/node.sh load-images failed:\n{result.stderr.strip()}")


# ------------------------------------------------------------------------ the worker's ticks

#: The example worker's last message of a tick (examples/passive_users.py).
_COMPLETED = re.compile(
    r"Completed: .*\(\d+ changed, token (?P<token>\d+), slot (?P<slot>[^)\s]+)\)"
)
#: The runtime's text log format: the message, then ``[worker=… tick=… replica=…]``.
_TEXT_FIELDS = re.compile(
    r"\[worker=(?P<worker>\S+) tick=(?P<tick>\d+) replica=(?P<replica>[^\]]+)\]"
)


@dataclass(frozen=True, order=True)
class Tick:
    """One finished run of the example worker, as its log line tells it."""

    slot: datetime
    token: int
    replica: str
    tick: int


def _fields(line: str) -> tuple[str, dict[str, Any]] | None:
    """A log line's message and fields, in the runtime's JSON or text format."""
    if line.startswith("{"):
        try:
            entry = json.loads(line)
        except ValueError:
            return None
        if not isinstance(entry, dict):
            return None
        fields = {**(entry.get("extra") or {}), **entry}
        return str(entry.get("message") or entry.get("msg") or ""), fields
    match = _TEXT_FIELDS.search(line)
    return (line, match.groupdict()) if match else None


def parse_ticks(log: str) -> list[Tick]:
    """The example worker's finished ticks in a pod's log (other lines are ignored)."""
    ticks = []
    for line in log.splitlines():
        parsed = _fields(line.strip())
        if parsed is None:
            continue
        message, fields = parsed
        match = _COMPLETED.search(message)
        if match and fields.get("replica") is not None:
            ticks.append(
                Tick(
                    slot=datetime.fromisoformat(match["slot"]),
                    token=int(match["token"]),
                    replica=str(fields["replica"]),
                    tick=int(fields.get("tick") or 0),
                )
            )
    return ticks


def runtime_name(namespace: str, name: str) -> str:
    """The name a BackgroundWorker's pods run under (TICKWORK_NAME): in their metrics'
    ``worker`` label, their logs and their Redis keys."""
    return f"{namespace}.{name}"


def pods_of(kubectl: Kubectl, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
    """The pods matching ``selector`` (labels), as JSON objects."""
    label = ",".join(f"{k}={v}" for k, v in selector.items())
    result = kubectl("get", "pods", "-n", namespace, "-l", label, "-o", "json")
    pods: list[dict[str, Any]] = json.loads(result.stdout)["items"]
    return pods


def worker_pods(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    return pods_of(kubectl, namespace, {"app.kubernetes.io/instance": name})


def running_pods(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    """The worker's pods that are Ready and not terminating."""
    return [
        pod
        for pod in worker_pods(kubectl, namespace, name)
        if not pod["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod.get("status", {}).get("conditions", [])
        )
    ]


def scrape(pod: dict[str, Any], *, port: int = METRICS_PORT, timeout: float = 2.0) -> str | None:
    """The pod's /metrics, fetched from the host by its pod IP (None when unreachable)."""
    ip = pod.get("status", {}).get("podIP")
    if not ip:
        return None
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/metrics", timeout=timeout) as r:
            return str(r.read().decode())
    except OSError:
        return None


def holders(pods: list[dict[str, Any]], worker: str) -> dict[str, int]:
    """``{pod name: fencing token}`` of the pods whose metrics say they hold the lease."""
    held = {}
    for pod in pods:
        text = scrape(pod)
        if text and sample_value(text, "tickwork_lease_held", worker=worker) == 1:
            token = sample_value(text, "tickwork_lease_fencing_token", worker=worker)
            held[pod["metadata"]["name"]] = int(token or 0)
    return held


def leftovers(cluster_dir: Path) -> list[str]:
    """What of the real node is still there after ``hack/cluster.sh down``: its processes,
    mounts, bridge, nftables tables, cgroups and runtime directory (empty: nothing)."""
    found: list[str] = []
    cache_root = str(CACHE / "containerd-root")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(cluster_dir) in cmdline or cache_root in cmdline:
            found.append(f"process {proc.name}: {cmdline[:120]}")
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1]
        if target.startswith((str(cluster_dir) + "/", cache_root + "/", "/run/tickwork-")):
            found.append(f"mount {target}")
    if Path(f"/sys/class/net/{NODE['NODE_BRIDGE']}").exists():
        found.append(f"bridge {NODE['NODE_BRIDGE']}")
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    for table in ("inet tickwork", "ip kube-proxy", "ip6 kube-proxy"):
        if f"table {table}" in tables.stdout.splitlines():
            found.append(f"nftables table {table}")
    found.extend(f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob("*/tickwork"))
    found.extend(f"directory {p}" for p in Path("/run").glob("tickwork-*"))
    return found


def kill_pod_processes(pod: Mapping[str, Any]) -> list[int]:
    """SIGKILL every process of ``pod``'s containers on the real node (found by the pod UID in
    their cgroup, as the kubelet names it with either cgroup driver): the pod dies without
    running any shutdown code, as on a node crash or an OOM kill. The pids killed."""
    uid = str(pod["metadata"]["uid"])
    marks = (f"pod{uid}", f"pod{uid.replace('-', '_')}")
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cgroup = (entry / "cgroup").read_text(encoding="utf-8")
        except OSError:
            continue
        if any(mark in cgroup for mark in marks):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed.append(int(entry.name))
    return killed
