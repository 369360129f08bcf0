"""The sdist and wheel as a user gets them: built with uv, installed into fresh venvs."""

from __future__ import annotations

import os
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.support.tools import REPO, TOOLS_DIR, run, tool

pytestmark = pytest.mark.integration


def _uv_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))}
    env["UV_CACHE_DIR"] = os.environ.get("UV_CACHE_DIR") or str(TOOLS_DIR.parent / "uv-cache")
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = run(tool("uv"), "build", "--quiet", "--out-dir", out, REPO, env=_uv_env())
    assert built.returncode == 0, built.stderr
    return out


@pytest.fixture(scope="module")
def slim_venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with `pip install tickwork` (no extra) from the built wheel."""
    venv = tmp_path_factory.mktemp("slim") / "venv"
    uv, env = tool("uv"), _uv_env()
    made = run(uv, "venv", "--quiet", "--python", sys.executable, venv, env=env)
    assert made.returncode == 0, made.stderr
    wheel = next(dist.glob("*.whl"))
    installed = run(uv, "pip", "install", "--quiet", "--python", venv, wheel, env=env)
    assert installed.returncode == 0, installed.stderr
    return venv


def test_the_sdist_holds_the_tests_the_license_and_the_files_the_tests_read(dist: Path) -> None:
    with tarfile.open(next(dist.glob("*.tar.gz"))) as sdist:
        names = {name.partition("/")[2] for name in sdist.getnames()}

    assert {"LICENSE", "README.md", "pyproject.toml", "tests/conftest.py"} <= names
    assert {"tests/unit/test_packaging.py", "tests/support/processes.py"} <= names
    assert {"charts/tickwork/Chart.yaml", "monitoring/alerts.yaml", "Makefile"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_wheel_holds_both_packages_their_markers_and_the_license(dist: Path) -> None:
    with zipfile.ZipFile(next(dist.glob("*.whl"))) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read("tickwork-0.1.0.dist-info/METADATA").decode()

    assert {"worker_runtime/py.typed", "worker_operator/py.typed"} <= names
    assert {"worker_runtime/__main__.py", "worker_operator/__main__.py"} <= names
    assert "tickwork-0.1.0.dist-info/licenses/LICENSE" in names
    assert not [n for n in names if n.startswith("tests/")]
    assert "License-Expression: Apache-2.0" in metadata
    assert "Classifier: Typing :: Typed" in metadata
    assert "Project-URL: Source, https://" in metadata
    assert "Provides-Extra: dev" not in metadata, "the dev tools are a dependency group"


@pytest.mark.parametrize("command", [["tickwork-operator"], ["python", "-m", "worker_operator"]])
def test_the_operator_without_its_extra_says_in_one_line_how_to_install_it(
    slim_venv: Path, command: list[str]
) -> None:
    result = run(slim_venv / "bin" / command[0], *command[1:], "--help")

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install 'tickwork[operator]'" in lines[0]
    assert "kopf" in lines[0]


def test_the_runtime_of_a_plain_install_runs_as_a_command_and_as_a_module(slim_venv: Path) -> None:
    command = run(slim_venv / "bin" / "tickwork", "--version")
    module = run(slim_venv / "bin" / "python", "-m", "worker_runtime", "--version")
    usage = run(slim_venv / "bin" / "python", "-m", "worker_runtime", "run", "no_such_module:W")

    assert (command.returncode, command.stdout.strip()) == (0, "tickwork 0.1.0")
    assert (module.returncode, module.stdout.strip()) == (0, "tickwork 0.1.0")
    assert usage.returncode == 2
    assert "cannot import 'no_such_module'" in usage.stderr
