"""`make demo`: the whole product on the local cluster's real node, in one command.

1. starts the local cluster (control plane + the real node; hack/cluster.sh) unless it runs;
2. loads the images `make images` built into the node's containerd;
3. `helm install`s the chart: the operator in a pod, the chart's try-it Redis;
4. starts a Prometheus that finds the worker pods with Kubernetes service discovery;
5. `kubectl apply`s the example BackgroundWorker (3 replicas, a tick every 2 s);
6. shows a live table of ticks (time, slot, pod, fencing token, outcome) and Prometheus's
   answers; deletes the leading pod and measures the takeover; `kubectl scale`s to one
   replica; rolls the Deployment and measures the takeover again;
7. on Ctrl-C, SIGTERM or after DEMO_SECONDS, removes everything it made and stops what it
   started (the cluster too, when it started it). `make demo-down` does that after a crash.

State: .demo/ (Prometheus's data, pid and what to clean up).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.prometheus_support import PrometheusServer  # noqa: E402
from tests.support import processes, real_node  # noqa: E402
from tests.support.real_node import Tick, holders, parse_ticks, running_pods  # noqa: E402

STATE = REPO / ".demo"
CLUSTER = REPO / ".cluster"
KUBECONFIG = CLUSTER / "kubeconfig"
HACK = REPO / "hack"
NAMESPACE = "tickwork-demo"
RELEASE = "tickwork"
WORKER = "passive-user-checker"
#: The name its pods run under (their metrics' worker label).
RUNTIME = real_node.runtime_name(NAMESPACE, WORKER)
PERIOD = "2s"
LEASE_TTL = "5s"
VERSIONS = real_node.read_env_file(HACK / "versions.env")
CACHE = real_node.CACHE
KUBECTL = CACHE / f"kubectl-layer-{VERSIONS['KUBECTL_LAYER_VERSION']}" / "kubectl"
HELM = CACHE / f"kubectl-layer-{VERSIONS['KUBECTL_LAYER_VERSION']}" / "helm"
#: When each act of the demo starts, in seconds after the first tick is shown.
ACTS = {"failover": 16.0, "scale": 34.0, "rollout": 48.0}
#: How often Prometheus's answers are shown, in seconds.
PROMQL_EVERY = 12.0


class Stop(Exception):
    """Ctrl-C, SIGTERM or the end of DEMO_SECONDS."""


START = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - START:6.1f}s] {text}", flush=True)


@contextmanager
def step(what: str) -> Iterator[None]:
    began = time.monotonic()
    say(f"{what} ...")
    yield
    say(f"{what}: done in {time.monotonic() - began:.1f}s")


def run(*args: str | Path, check: bool = True, timeout: float = 300) -> str:
    env = {**os.environ, "KUBECONFIG": str(KUBECONFIG)}
    home = STATE / "helm"
    env.update(
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_DATA_HOME=str(home / "data"),
    )
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, timeout=timeout
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed:\n{result.stderr.strip()}")
    return result.stdout


def kubectl(*args: str, check: bool = True, **_: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(KUBECONFIG)}
    result = subprocess.run(
        [str(KUBECTL), *args], capture_output=True, text=True, env=env, timeout=120
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed:\n{result.stderr.strip()}")
    return result


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
    return processes.wait_until(predicate, timeout=timeout, interval=0.25, what=what)


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines())


# ------------------------------------------------------------------------------- setup


def start_cluster() -> None:
    status = subprocess.run([str(HACK / "cluster.sh"), "status"], capture_output=True, check=False)
    node_up = status.returncode == 0 and (
        kubectl("get", "node", real_node.NODE_NAME, check=False).returncode == 0
    )
    with step("the local cluster (control plane + real node)"):
        if not node_up:
            (STATE / "started-cluster").touch()
        subprocess.run([str(HACK / "cluster.sh"), "up"], check=True)
    with step("loading the images into the node's containerd"):
        real_node.load_images()


def install() -> None:
    (STATE / "installed").touch()
    with step(f"helm install {RELEASE} charts/tickwork -n {NAMESPACE} (operator + try-it Redis)"):
        kubectl("create", "namespace", NAMESPACE, check=False)
        sets = [
            "image.pullPolicy=Never",
            f"watchNamespaces={{{NAMESPACE}}}",
            *real_node.helm_placement_values(),
            *real_node.try_redis_values(),
        ]
        run(
            HELM,
            "upgrade",
            "--install",
            RELEASE,
            REPO / "charts" / "tickwork",
            "--namespace",
            NAMESPACE,
            *[a for s in sets for a in ("--set", s)],
            "--wait",
            "--timeout=180s",
        )
    print(indent(kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide").stdout), flush=True)


def start_prometheus() -> PrometheusServer:
    with step("Prometheus with Kubernetes service discovery (role: pod)"):
        server = PrometheusServer(
            STATE / "prometheus",
            binary=str(real_node.PROMETHEUS_BINARY),
            scrape_configs=[
                real_node.kubernetes_pod_scrape_config(
                    kubeconfig=KUBECONFIG, namespaces=[NAMESPACE]
                )
            ],
            scrape_interval="2s",
        )
        server.start()
        assert server.proc is not None
        (STATE / "prometheus.pid").write_text(str(server.proc.pid))
    say(f"Prometheus: {server.url}/targets")
    return server


def apply_worker() -> None:
    manifest = real_node.example_worker(
        WORKER,
        NAMESPACE,
        redis_secret=f"{RELEASE}-redis",
        period=PERIOD,
        lease_ttl=LEASE_TTL,
    )
    with step("kubectl apply: the example BackgroundWorker (3 replicas, a tick every 2s)"):
        subprocess.run(
            [str(KUBECTL), "apply", "-f", "-"],
            input=json.dumps(manifest),
            text=True,
            check=True,
            capture_output=True,
            env={**os.environ, "KUBECONFIG": str(KUBECONFIG)},
        )
        wait_for(
            lambda: len(running_pods(kubectl, NAMESPACE, WORKER)) == 3,
            timeout=120,
            what="three Ready worker pods",
        )
    print("$ kubectl get bgw -n " + NAMESPACE, flush=True)
    print(indent(kubectl("get", "bgw", "-n", NAMESPACE).stdout), flush=True)
    print(f"$ kubectl get pods -n {NAMESPACE} -l app.kubernetes.io/instance={WORKER}", flush=True)
    pods = kubectl("get", "pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={WORKER}")
    print(indent(pods.stdout), flush=True)


# ---------------------------------------------------------------------------- the show


class Show:
    def __init__(self, prometheus: PrometheusServer, deadline: float | None) -> None:
        self.prometheus = prometheus
        self.deadline = deadline
        self.seen: dict[Any, Tick] = {}
        self.logs: dict[str, str] = {}
        self.began = time.monotonic()
        self.next_promql = self.began + PROMQL_EVERY
        self.acts_done: set[str] = set()

    def tick_rows(self) -> None:
        for pod in running_pods(kubectl, NAMESPACE, WORKER):
            name = pod["metadata"]["name"]
            result = kubectl("logs", name, "-n", NAMESPACE, "--tail=200", check=False)
            if result.returncode == 0:
                self.logs[name] = result.stdout
        for log in self.logs.values():
            for tick in parse_ticks(log):
                key = (tick.slot, tick.replica, tick.token)
                if key in self.seen:
                    continue
                self.seen[key] = tick
                print(
                    f"  TICK  {time.strftime('%H:%M:%S')}  slot {tick.slot:%H:%M:%S}  "
                    f"pod {tick.replica:<44}  token {tick.token:<4}  success",
                    flush=True,
                )

    def promql(self) -> None:
        queries = {
            "ticks per pod": f'sum by (pod) (tickwork_ticks_total{{worker="{RUNTIME}"}})',
            "lease holders": f'sum(tickwork_lease_held{{worker="{RUNTIME}"}})',
            "lateness p99 (s)": (
                "histogram_quantile(0.99, sum by (le) "
                f'(rate(tickwork_tick_lateness_seconds_bucket{{worker="{RUNTIME}"}}[1m])))'
            ),
        }
        for label, expr in queries.items():
            try:
                result = self.prometheus.query(expr)
            except (AssertionError, OSError) as exc:
                say(f"PROMQL {label}: {exc}")
                continue
            values = ", ".join(
                (f"{r['metric'].get('pod', '')}={float(r['value'][1]):g}").lstrip("=")
                for r in result
            )
            say(f"PROMQL {label}: {values or 'no data yet'}    [{expr}]")

    def holder(self) -> tuple[str, int]:
        def one() -> tuple[str, int] | None:
            held = holders(running_pods(kubectl, NAMESPACE, WORKER), RUNTIME)
            return next(iter(held.items())) if len(held) == 1 else None

        found: tuple[str, int] = wait_for(one, timeout=60, what="the lease holder")
        return found

    def takeover(self, old: str, token: int, since: float) -> None:
        def other() -> tuple[str, int] | None:
            pods = [
                p for p in running_pods(kubectl, NAMESPACE, WORKER) if p["metadata"]["name"] != old
            ]
            held = holders(pods, RUNTIME)
            return next(iter(held.items())) if held else None

        new, new_token = wait_for(other, timeout=60, what="another holder")
        say(
            f"TAKEOVER {old} -> {new} in {time.monotonic() - since:.2f}s "
            f"(fencing token {token} -> {new_token})"
        )

    def act(self, name: str) -> None:
        self.acts_done.add(name)
        if name == "failover":
            old, token = self.holder()
            say(f"ACT failover: kubectl delete pod {old} (it holds the lease, token {token})")
            since = time.monotonic()
            kubectl("delete", "pod", old, "-n", NAMESPACE, "--wait=false")
            self.takeover(old, token, since)
        elif name == "scale":
            say(f"ACT scale: kubectl scale bgw/{WORKER} --replicas=1")
            kubectl("scale", f"bgw/{WORKER}", "-n", NAMESPACE, "--replicas=1")
            wait_for(
                lambda: len(real_node.worker_pods(kubectl, NAMESPACE, WORKER)) == 1,
                timeout=60,
                what="one pod",
            )
            print(indent(kubectl("get", "bgw,pods", "-n", NAMESPACE).stdout), flush=True)
        elif name == "rollout":
            old, token = self.holder()
            say(f"ACT rolling update: a new env value; {old} holds the lease (token {token})")
            patch = {"spec": {"env": [{"name": "DEMO_ROLLOUT", "value": str(int(time.time()))}]}}
            body = json.dumps(patch)
            kubectl("patch", f"bgw/{WORKER}", "-n", NAMESPACE, "--type=merge", "-p", body)

            def terminating() -> float | None:
                pod = kubectl("get", "pod", old, "-n", NAMESPACE, "-o", "json", check=False)
                gone = pod.returncode != 0 or json.loads(pod.stdout)["metadata"].get(
                    "deletionTimestamp"
                )
                return time.monotonic() if gone else None

            since = wait_for(terminating, timeout=120, what=f"{old} to get SIGTERM")
            self.takeover(old, token, since)

    def loop(self) -> None:
        print("  TICK  TIME      SLOT            POD" + " " * 45 + "TOKEN  OUTCOME", flush=True)
        while True:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise Stop
            self.tick_rows()
            elapsed = time.monotonic() - self.began
            for name, at in ACTS.items():
                if name not in self.acts_done and elapsed >= at:
                    self.act(name)
            if time.monotonic() >= self.next_promql:
                self.promql()
                self.next_promql = time.monotonic() + PROMQL_EVERY
            time.sleep(1.0)


# ----------------------------------------------------------------------------- cleanup


def down() -> None:
    """Remove what the demo made; stop what it started (safe to run twice)."""
    say("cleaning up ...")
    pid_file = STATE / "prometheus.pid"
    if pid_file.exists():
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    cluster_up = (
        KUBECONFIG.exists()
        and subprocess.run(
            [str(HACK / "cluster.sh"), "status"], capture_output=True, check=False
        ).returncode
        == 0
    )
    if cluster_up and (STATE / "installed").exists():
        run(HELM, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", check=False)
        kubectl("delete", "namespace", NAMESPACE, "--timeout=60s", check=False)
    if (STATE / "started-cluster").exists():
        subprocess.run([str(HACK / "cluster.sh"), "down"], check=False)
    shutil.rmtree(STATE, ignore_errors=True)
    say("demo stopped; nothing of it is left running")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="up", choices=("up", "down"))
    args = parser.parse_args(argv)
    if args.command == "down":
        down()
        return 0
    seconds = os.environ.get("DEMO_SECONDS")
    if seconds is not None and not seconds.isdigit():
        print(f"DEMO_SECONDS={seconds!r}: expected a whole number of seconds", file=sys.stderr)
        return 2

    def on_signal(signum: int, frame: object) -> None:
        raise Stop

    signal.signal(signal.SIGTERM, on_signal)
    STATE.mkdir(exist_ok=True)
    try:
        start_cluster()
        install()
        prometheus = start_prometheus()
        apply_worker()
        deadline = None if seconds is None else time.monotonic() + int(seconds)
        say("live: one line per tick; Ctrl-C stops the demo and removes everything it made")
        Show(prometheus, deadline).loop()
    except (Stop, KeyboardInterrupt):
        pass
    except (RuntimeError, AssertionError, subprocess.CalledProcessError, OSError) as exc:
        failed = str(exc).strip().splitlines() or [type(exc).__name__]
        say(f"FAILED: {failed[0]}")
        print("\n".join(failed[1:]), file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        down()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
