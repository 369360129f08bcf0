"""Fixtures for end-to-end tests against a real Kubernetes control plane.

The control plane is the project's own (see hack/cluster.sh): upstream etcd,
kube-apiserver, kube-controller-manager and kube-scheduler built from source,
plus kwok simulating two nodes, all host processes on 127.0.0.1, and one real
node (hack/node.sh: kubelet + containerd, kube-proxy, CoreDNS) whose pods run.

Which node a test's pods use: test_real_node.py puts its pods on the real node
(``tests.support.real_node.placement()``: a nodeSelector and a toleration of
its taint); every other file's pods land on the kwok nodes, which run nothing
and carry many pods cheaply.

Which cluster a session uses:

1. ``KUBECONFIG`` set in the environment -> that cluster, untouched;
2. else a running project control plane (``.cluster/kubeconfig`` answering /readyz);
3. else one started by ``hack/cluster.sh up`` (what ``make cluster-up`` runs),
   and stopped again when the session ends.

Fixtures: ``kubeconfig`` (path), ``kubectl`` and ``helm`` (callables running the
cached binaries against that cluster), ``namespace`` (a fresh namespace per test),
``binaries`` (paths of every cached binary), ``real_node_ready`` (the real node's
name, once it is Ready with the current images loaded). The same paths are module
constants here (``BINARIES``, ``KUBECTL``, ``HELM``) for code outside a test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import real_node

REPO_ROOT = Path(__file__).resolve().parents[2]
HACK_DIR = REPO_ROOT / "hack"
CLUSTER_SCRIPT = HACK_DIR / "cluster.sh"


read_versions = real_node.read_env_file


VERSIONS = read_versions(HACK_DIR / "versions.env")
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tickwork"
CLUSTER_DIR = Path(os.environ.get("TICKWORK_CLUSTER_DIR") or REPO_ROOT / ".cluster")
PROJECT_KUBECONFIG = CLUSTER_DIR / "kubeconfig"


@dataclass(frozen=True)
class Binaries:
    """Where hack/build-binaries.sh caches each binary (keyed by its pinned version)."""

    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubelet: Path
    kube_proxy: Path
    coredns: Path
    prometheus: Path
    etcd: Path
    kwok: Path
    kwokctl: Path
    kubectl: Path
    helm: Path

    @classmethod
    def from_versions(cls, versions: Mapping[str, str], cache_dir: Path) -> Binaries:
        kubernetes = cache_dir / f"kubernetes-{versions['KUBERNETES_VERSION']}"
        kwok = cache_dir / f"kwok-{versions['KWOK_VERSION']}"
        layer = cache_dir / f"kubectl-layer-{versions['KUBECTL_LAYER_VERSION']}"
        return cls(
            kube_apiserver=kubernetes / "kube-apiserver",
            kube_controller_manager=kubernetes / "kube-controller-manager",
            kube_scheduler=kubernetes / "kube-scheduler",
            kubelet=kubernetes / "kubelet",
            kube_proxy=kubernetes / "kube-proxy",
            coredns=cache_dir / f"coredns-{real_node.NODE['COREDNS_VERSION']}" / "coredns",
            prometheus=cache_dir
            / f"prometheus-{real_node.NODE['PROMETHEUS_MODULE_VERSION']}"
            / "prometheus",
            etcd=cache_dir / f"etcd-{versions['ETCD_VERSION']}" / "etcd",
            kwok=kwok / "kwok",
            kwokctl=kwok / "kwokctl",
            kubectl=layer / "kubectl",
            helm=layer / "helm",
        )

    def missing(self) -> list[Path]:
        return [p for p in vars(self).values() if not os.access(p, os.X_OK)]


BINARIES = Binaries.from_versions(VERSIONS, CACHE_DIR)
KUBECTL = BINARIES.kubectl
HELM = BINARIES.helm


class CommandError(AssertionError):
    """A kubectl/helm command failed; the message carries its stderr."""

    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        args = " ".join(result.args)
        super().__init__(
            f"command failed (exit {result.returncode}): {args}\n{result.stderr.strip()}"
        )


class Tool:
    """Runs one cached binary (kubectl or helm) against one cluster.

    ``tool("get", "pods", "-n", ns)`` returns the CompletedProcess (text mode) and
    raises CommandError (stderr in the message) on a non-zero exit unless
    ``check=False``. ``tool.json(...)`` parses stdout as JSON.
    """

    def __init__(
        self,
        binary: Path,
        *,
        kubeconfig: Path,
        extra_env: Mapping[str, str] | None = None,
        default_timeout_seconds: float = 120,
    ) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), **(extra_env or {})}
        self.default_timeout_seconds = default_timeout_seconds

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout_seconds: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout_seconds or self.default_timeout_seconds,
            check=False,
        )
        if check and result.returncode != 0:
            raise CommandError(result)
        return result

    def with_kubeconfig(self, kubeconfig: Path) -> Tool:
        """The same binary against another kubeconfig (e.g. a ServiceAccount's)."""
        return Tool(
            self.binary,
            kubeconfig=kubeconfig,
            extra_env={k: v for k, v in self.env.items() if k != "KUBECONFIG"},
            default_timeout_seconds=self.default_timeout_seconds,
        )

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self(*args, **kwargs).stdout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.binary.name}, kubeconfig={self.kubeconfig})"


@dataclass(frozen=True)
class ControlPlane:
    kubeconfig: Path
    started_here: bool


def _project_control_plane_is_ready() -> bool:
    result = subprocess.run(
        [str(CLUSTER_SCRIPT), "status"], capture_output=True, text=True, check=False
    )
    return result.returncode == 0


def _run_hack_script(script: Path, *args: str) -> None:
    result = subprocess.run([str(script), *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        command = " ".join([script.relative_to(REPO_ROOT).as_posix(), *args])
        raise RuntimeError(f"{command} failed (exit {result.returncode}):\n{result.stderr.strip()}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: needs a Kubernetes control plane (tests/e2e/conftest.py)"
    )


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """The cluster of this session; started here (and stopped at the end) if needed."""
    # On a fresh machine this builds the binaries (many minutes, longer than the
    # per-test timeout): `make cluster-build` beforehand keeps that out of the session.
    if BINARIES.missing():
        _run_hack_script(HACK_DIR / "build-binaries.sh")
    if os.environ.get("KUBECONFIG"):
        yield ControlPlane(kubeconfig=Path(os.environ["KUBECONFIG"]), started_here=False)
        return
    if _project_control_plane_is_ready():
        yield ControlPlane(kubeconfig=PROJECT_KUBECONFIG, started_here=False)
        return
    _run_hack_script(CLUSTER_SCRIPT, "up")
    try:
        yield ControlPlane(kubeconfig=PROJECT_KUBECONFIG, started_here=True)
    finally:
        _run_hack_script(CLUSTER_SCRIPT, "down")
        # `make cluster-down` leaves nothing behind: checked on every run that started it.
        left = real_node.leftovers(CLUSTER_DIR)
        assert not left, "hack/cluster.sh down left behind:\n" + "\n".join(left)


@pytest.fixture(scope="session")
def binaries(control_plane: ControlPlane) -> Binaries:
    """Paths of the cached binaries (kubectl, helm, kwok, kube-apiserver, ...), all present."""
    return BINARIES


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    """Path of an admin kubeconfig for the session's cluster."""
    return control_plane.kubeconfig


def _require_binary(binary: Path) -> None:
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary} is missing; run `make cluster-build`", pytrace=False)


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path) -> Tool:
    """The cached kubectl, bound to the session's cluster."""
    _require_binary(KUBECTL)
    return Tool(KUBECTL, kubeconfig=kubeconfig)


@pytest.fixture(scope="session")
def helm(kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Tool:
    """The cached helm, bound to the session's cluster, with private config/cache dirs."""
    _require_binary(HELM)
    home = tmp_path_factory.mktemp("helm-home")
    return Tool(
        HELM,
        kubeconfig=kubeconfig,
        extra_env={
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
        },
    )


@pytest.fixture
def namespace(kubectl: Tool, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace (with its default ServiceAccount), deleted after the test."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_"))
    name = f"e2e-{stem[:40].strip('-')}-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    try:
        # Pods are refused until the controller manager has made the default SA.
        kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=30s")
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture(scope="session")
def real_node_ready(control_plane: ControlPlane, kubectl: Tool) -> str:
    """The real node's name, Ready, with the images of this tree loaded into its containerd."""
    if control_plane.kubeconfig != PROJECT_KUBECONFIG:
        pytest.skip(f"KUBECONFIG={control_plane.kubeconfig} is not the project's cluster")
    result = kubectl("get", "node", real_node.NODE_NAME, "-o", "json", check=False)
    if result.returncode != 0:
        pytest.fail(
            f"the real node {real_node.NODE_NAME} is missing (make cluster-up starts it; "
            f"TICKWORK_REAL_NODE=0 leaves it out): {result.stderr.strip()}",
            pytrace=False,
        )
    node = json.loads(result.stdout)
    ready = [c for c in node["status"].get("conditions", []) if c["type"] == "Ready"]
    if not ready or ready[0]["status"] != "True":
        pytest.fail(f"the real node is not Ready: {ready}", pytrace=False)
    real_node.load_images()
    return real_node.NODE_NAME
