"""Where `make tools` (mk/tools.mk) puts the ecosystem's tools: the same paths, from the same
pinned versions (hack/tools.env)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import CACHE_DIR, read_versions
from tests.e2e.conftest import VERSIONS as CLUSTER_VERSIONS

REPO = Path(__file__).resolve().parents[2]
VERSIONS = read_versions(REPO / "hack" / "tools.env")
TOOLS_DIR = Path(os.environ.get("TICKWORK_CACHE") or CACHE_DIR) / "tools"

_GO_TOOLS = {
    "kubeconform": "KUBECONFORM_VERSION",
    "kube-score": "KUBE_SCORE_VERSION",
    "pluto": "PLUTO_VERSION",
    "ct": "CHART_TESTING_VERSION",
    "kstatus": "KSTATUS_VERSION",
}


def tool(name: str) -> Path:
    """The cached binary ``name``; the test fails (saying how to get it) when it is missing."""
    if name in _GO_TOOLS:
        path = TOOLS_DIR / f"{name}-{VERSIONS[_GO_TOOLS[name]]}" / name
    elif name == "uv":
        path = TOOLS_DIR / f"uv-{VERSIONS['UV_VERSION']}" / "bin" / "uv"
    elif name == "kube-schemas":
        path = TOOLS_DIR / f"kube-json-schemas-{CLUSTER_VERSIONS['KUBERNETES_VERSION']}"
    elif name == "ct-python":
        yamllint, yamale = VERSIONS["YAMLLINT_VERSION"], VERSIONS["YAMALE_VERSION"]
        path = TOOLS_DIR / f"ct-python-yamllint-{yamllint}-yamale-{yamale}" / "bin"
    else:
        raise KeyError(name)
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make tools` (or `make test`)", pytrace=False)
    return path


def run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a tool (never raising on its exit code: the test asserts on it)."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [str(a) for a in args], capture_output=True, text=True, timeout=300, check=False, **kwargs
    )
