"""The container images, as built by ``make images`` (buildah, no Docker engine).

Each test starts a throwaway buildah container from a built image and runs a command in it
(``buildah run``: chroot isolation, the host's network), as the image's own user. The images
are built by ``make images`` when one is missing; ``make test`` builds them first.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ("images/worker/Dockerfile", "images/operator/Dockerfile", "examples/Dockerfile")
VERSION: str = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
    "version"
]
WORKER = f"localhost/tickwork/worker:{VERSION}"
OPERATOR = f"localhost/tickwork/operator:{VERSION}"
EXAMPLE = f"localhost/tickwork/example-worker:{VERSION}"
ALL_IMAGES = (WORKER, OPERATOR, EXAMPLE)
# The Dockerfiles' FROM, as Docker names it (pulled, or made by images/make-python-base.sh).
PYTHON_BASE = "docker.io/library/python:3.11-slim-bookworm"
USER_ID = "10001"
COMPLETED = "Completed: Setting status of inactive users"
# A tick every 500 ms from the start, no metrics server, stopped by SIGTERM after 4 s.
EXAMPLE_FLAGS = ("--period", "500ms", "--run-on-start", "--metrics-port", "0")


def _buildah_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("STORAGE_DRIVER", "vfs")
    env.setdefault("BUILDAH_ISOLATION", "chroot")
    return env


def _buildah(*args: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(
        ["buildah", *args],
        env=_buildah_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done.stdout


def _image_exists(image: str) -> bool:
    done = subprocess.run(
        ["buildah", "inspect", "--type", "image", image],
        env=_buildah_env(),
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture(scope="module")
def built_images() -> tuple[str, ...]:
    """The three images, built with ``make images`` if buildah or any of them is missing."""
    if shutil.which("buildah") is None or not all(_image_exists(i) for i in ALL_IMAGES):
        subprocess.run(
            ["make", "--no-print-directory", "images"], cwd=ROOT, check=True, timeout=1800
        )
    missing = [i for i in ALL_IMAGES if not _image_exists(i)]
    assert not missing, f"make images did not produce {missing}"
    return ALL_IMAGES


def _config(image: str) -> dict[str, Any]:
    """The image's Docker-format config (Entrypoint, Cmd, User, Healthcheck, ...)."""
    inspected = json.loads(_buildah("inspect", "--type", "image", image))
    config: dict[str, Any] = inspected["Docker"]["config"]
    return config


class Container:
    """A buildah working container of an image; commands run as the image's user."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.id = _buildah("from", "--pull=never", "--quiet", image).strip()

    def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        env: dict[str, str] | None = None,
        tmpfs_tmp: bool = False,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        options: list[str] = []
        if user is not None:
            options += ["--user", user]
        for key, value in (env or {}).items():
            options += ["--env", f"{key}={value}"]
        if tmpfs_tmp:
            options += ["--mount", "type=tmpfs,destination=/tmp"]
        return subprocess.run(
            ["buildah", "run", *options, self.id, "--", *argv],
            env=_buildah_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def remove(self) -> None:
        _buildah("rm", self.id, check=False)


@pytest.fixture
def container_of(built_images: tuple[str, ...]) -> Iterator[Any]:
    """``container_of(image)`` starts a container; all are removed after the test."""
    started: list[Container] = []

    def start(image: str) -> Container:
        assert image in (*built_images, PYTHON_BASE)
        started.append(Container(image))
        return started[-1]

    yield start
    for container in started:
        container.remove()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _default_command(image: str) -> list[str]:
    config = _config(image)
    return [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]


def _run_example_worker(
    container: Container, *flags: str, env: dict[str, str] | None = None, seconds: int = 4
) -> subprocess.CompletedProcess[str]:
    """The image's own command plus flags, stopped with SIGTERM after a few seconds."""
    argv = ["timeout", "--preserve-status", "-s", "TERM", f"{seconds}s"]
    return container.run(
        [*argv, *_default_command(EXAMPLE), *flags], env=env, tmpfs_tmp=True, timeout=60
    )


# ---- the Dockerfiles ---------------------------------------------------------------------


def test_every_dockerfile_is_hadolint_clean() -> None:
    hadolint = subprocess.run(
        ["make", "--no-print-directory", "-s", "hadolint-path"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout.strip()
    for dockerfile in DOCKERFILES:
        done = subprocess.run(
            [hadolint, "--config", ".hadolint.yaml", "--format", "json", dockerfile],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert json.loads(done.stdout or "[]") == [], f"{dockerfile}: {done.stdout}"
        assert done.returncode == 0, f"{dockerfile}: {done.stderr}"


def test_the_dockerfiles_default_to_the_version_in_pyproject() -> None:
    for dockerfile in DOCKERFILES:
        text = (ROOT / dockerfile).read_text(encoding="utf-8")
        assert f"ARG VERSION={VERSION}\n" in text, dockerfile
    example = (ROOT / "examples/Dockerfile").read_text(encoding="utf-8")
    assert "ARG BASE_IMAGE=tickwork/worker\n" in example
    assert f"ARG BASE_TAG={VERSION}\n" in example


def test_the_final_stages_start_from_a_pinned_python_image_and_run_as_a_numeric_user() -> None:
    for dockerfile in DOCKERFILES[:2]:
        lines = (ROOT / dockerfile).read_text(encoding="utf-8").splitlines()
        froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
        users = [line.split()[1] for line in lines if line.startswith("USER ")]
        assert froms == ["python:3.11-slim-bookworm", "python:3.11-slim-bookworm"], dockerfile
        assert users == [f"{USER_ID}:{USER_ID}"], dockerfile


# ---- the Python base image ---------------------------------------------------------------


def test_the_python_base_image_offers_what_the_dockerfiles_expect_of_the_official_one(
    container_of: Any,
) -> None:
    script = (
        "set -e; "
        "for c in python python3 pip; do command -v $c; done; "
        "python --version; "
        "python -c 'import ssl, sqlite3, venv, zoneinfo; zoneinfo.ZoneInfo(\"Europe/Berlin\")'; "
        "python -m venv /tmp/venv; /tmp/venv/bin/pip --version >/dev/null; "
        "pip install --dry-run --no-index --find-links /nowhere pip >/dev/null; "
        "ls /var/lib/apt/lists | grep -v -x -e partial -e lock | wc -l"
    )
    done = container_of(PYTHON_BASE).run(["sh", "-c", script], user="0:0")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == ["/usr/local/bin/python", "/usr/local/bin/python3", "/usr/local/bin/pip"]
    assert lines[3].startswith("Python 3.11.")
    assert lines[4] == "0"  # no apt lists


# ---- what the images contain --------------------------------------------------------------


@pytest.mark.parametrize("image", [WORKER, EXAMPLE])
def test_tickwork_version_inside_the_worker_images_is_the_project_version(
    container_of: Any, image: str
) -> None:
    done = container_of(image).run(["tickwork", "--version"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"tickwork {VERSION}"


def test_tickwork_operator_help_runs_inside_the_operator_image(container_of: Any) -> None:
    done = container_of(OPERATOR).run(["tickwork-operator", "--help"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: tickwork-operator")
    assert "--http-port" in done.stdout


def test_the_worker_image_has_the_runtime_but_not_the_operator_dependencies(
    container_of: Any,
) -> None:
    probe = (
        "import importlib.util as u; "
        "print(*[m for m in ('worker_runtime', 'redis', 'kopf', 'kubernetes_asyncio', 'yaml')"
        " if u.find_spec(m)])"
    )
    done = container_of(WORKER).run(["python", "-c", probe])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["worker_runtime", "redis"]


@pytest.mark.parametrize(
    ("image", "entrypoint"),
    [(WORKER, ["tickwork"]), (OPERATOR, ["tickwork-operator"]), (EXAMPLE, ["tickwork"])],
)
def test_each_image_runs_its_command_as_a_numeric_non_root_user(
    container_of: Any, image: str, entrypoint: list[str]
) -> None:
    config = _config(image)
    assert config["User"] == f"{USER_ID}:{USER_ID}"
    assert config["Entrypoint"] == entrypoint
    assert config["WorkingDir"] == "/app"
    done = container_of(image).run(["id", "-u"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == USER_ID


@pytest.mark.parametrize("image", ALL_IMAGES)
def test_no_compiler_pip_cache_or_build_leftovers_are_in_the_final_images(
    container_of: Any, image: str
) -> None:
    script = (
        "import os, shutil\n"
        "tools = ['gcc', 'cc', 'c++', 'g++', 'clang', 'make', 'ld']\n"
        "print('compilers', *[t for t in tools if shutil.which(t)], sep=' ')\n"
        "caches = []\n"
        "for top, dirs, _ in os.walk('/'):\n"
        "    if top == '/':\n"
        "        dirs[:] = [d for d in dirs if d not in ('proc', 'sys', 'dev')]\n"
        "    if top.endswith('/.cache') and 'pip' in dirs:\n"
        "        caches.append(top + '/pip')\n"
        "print('pip-caches', *caches, sep=' ')\n"
        "leftovers = [p for p in ('/wheels', '/src', '/root/.cache') if os.path.exists(p)]\n"
        "print('leftovers', *leftovers, sep=' ')\n"
        "lists = [p for p in os.listdir('/var/lib/apt/lists') if p not in ('partial', 'lock')]\n"
        "print('apt-lists', len(lists))\n"
    )
    done = container_of(image).run(["python", "-c", script], user="0:0", timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["compilers", "pip-caches", "leftovers", "apt-lists 0"]


@pytest.mark.parametrize(("image", "port"), [(WORKER, 9100), (OPERATOR, 8080), (EXAMPLE, 9100)])
def test_each_image_declares_its_http_port_and_a_health_check(image: str, port: int) -> None:
    config = _config(image)
    assert f"{port}/tcp" in config["ExposedPorts"]
    check = config["Healthcheck"]["Test"]
    assert check[0] == "CMD"
    assert "/healthz" in " ".join(check)


def test_the_example_image_runs_the_passive_user_checker_by_default() -> None:
    config = _config(EXAMPLE)
    assert config["Cmd"] == ["run", "examples.passive_users:PassiveUserCheckerWorker"]
    assert "TICKWORK_EXAMPLE_DB=/tmp/tickwork-example.sqlite3" in config["Env"]


# ---- running the example worker -----------------------------------------------------------


def test_the_example_worker_completes_ticks_inside_its_image(container_of: Any) -> None:
    done = _run_example_worker(container_of(EXAMPLE), *EXAMPLE_FLAGS)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert output.count(COMPLETED) >= 2, output


def test_the_example_worker_writes_nothing_outside_tmp(container_of: Any) -> None:
    container = container_of(EXAMPLE)
    marker = container.run(["touch", "/.tickwork-marker"], user="0:0")
    assert marker.returncode == 0, marker.stderr
    done = _run_example_worker(container, *EXAMPLE_FLAGS)
    assert done.returncode == 0 and COMPLETED in done.stderr + done.stdout
    # buildah bind-mounts these for every run; /tmp was a tmpfs.
    mounted = {"/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/run/.containerenv"}
    changed = container.run(
        ["find", "/", "-xdev", "-newer", "/.tickwork-marker", "-not", "-type", "d"], user="0:0"
    )
    assert changed.returncode == 0, changed.stderr
    assert sorted(set(changed.stdout.split()) - mounted) == []


def test_the_images_health_check_fails_without_and_passes_with_the_example_worker(
    container_of: Any,
) -> None:
    port = _free_port()
    check = _config(EXAMPLE)["Healthcheck"]["Test"][1:]
    worker = " ".join(_default_command(EXAMPLE))
    script = (
        '"$@" 2>/dev/null; echo "health check before the worker: $?"; '
        f"{worker} --period 500ms --run-on-start & "
        "sleep 3; "
        '"$@"; echo "health check while it runs: $?"; '
        "kill -TERM $!; wait $!"
    )
    done = container_of(EXAMPLE).run(
        ["sh", "-c", script, "sh", *check],
        env={"TICKWORK_METRICS_PORT": str(port)},
        tmpfs_tmp=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "health check before the worker: 1" in done.stdout, output
    assert "health check while it runs: 0" in done.stdout, output
    assert COMPLETED in output


@pytest.mark.parametrize("image", ALL_IMAGES)
def test_the_build_machines_ca_bundle_is_mounted_for_the_build_but_not_left_in_the_image(
    container_of: Any, image: str
) -> None:
    bundle = ["sha256sum", "/etc/ssl/certs/ca-certificates.crt"]
    in_base = container_of(PYTHON_BASE).run(bundle)
    in_image = container_of(image).run(bundle)
    assert in_base.returncode == 0 and in_image.returncode == 0, in_base.stderr + in_image.stderr
    assert in_image.stdout == in_base.stdout


@pytest.mark.parametrize("image", ALL_IMAGES)
def test_each_image_carries_the_oci_labels_of_its_source_license_version_and_revision(
    built_images: tuple[str, ...], image: str
) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    labels = _config(image)["Labels"]

    assert labels["org.opencontainers.image.source"] == project["urls"]["Source"]
    assert labels["org.opencontainers.image.licenses"] == project["license"]
    assert labels["org.opencontainers.image.version"] == VERSION
    # The commit the image was built from (-dirty: with changes not yet committed).
    assert labels["org.opencontainers.image.revision"].removesuffix("-dirty") == head
