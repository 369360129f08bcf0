"""Packaging facts that hold without building anything: the image locks, the metadata, the
README as PyPI shows it, the images' labels."""

from __future__ import annotations

import importlib
import re
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from worker_operator.cli import OPERATOR_IMPORTS

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
SOURCE_URL = PROJECT["urls"]["Source"]
LOCKS = REPO / "images" / "locks"
DOCKERFILES = ["images/worker/Dockerfile", "images/operator/Dockerfile", "examples/Dockerfile"]

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
_VIA = re.compile(r"^\s+#\s+(?:via\s+)?(.+?)\s*$")


def _read_lock(path: Path) -> dict[str, tuple[str, list[str], list[str]]]:
    """``name -> (version, hashes, via)`` of a ``uv pip compile --generate-hashes`` file."""
    entries: dict[str, tuple[str, list[str], list[str]]] = {}
    current: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        pin = _PIN.match(line)
        if pin:
            current = canonicalize_name(pin.group(1))
            entries[current] = (pin.group(2), [], [])
        elif current and (digest := re.search(r"--hash=(sha256:[0-9a-f]{64})", line)):
            entries[current][1].append(digest.group(1))
        elif current and (via := _VIA.match(line)) and not via.group(1).startswith("-"):
            entries[current][2].append(via.group(1))
    return entries


def _requirements(kind: str) -> list[Requirement]:
    if kind == "build":
        return [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    extras = {"worker": [], "operator": ["operator"]}[kind]
    optional = PROJECT["optional-dependencies"]
    declared = [*PROJECT["dependencies"], *(r for e in extras for r in optional[e])]
    return [Requirement(r) for r in declared]


@pytest.mark.parametrize("kind", ["build", "worker", "operator"])
def test_each_image_lock_pins_what_pyproject_declares_with_hashes_and_nothing_else(
    kind: str,
) -> None:
    lock = _read_lock(LOCKS / f"{kind}.txt")
    declared = {canonicalize_name(r.name): r for r in _requirements(kind)}

    unpinned = sorted(set(declared) - set(lock))
    outside = {
        n: v for n, (v, _, _) in lock.items() if n in declared and v not in declared[n].specifier
    }
    without_hash = sorted(n for n, (_, hashes, _) in lock.items() if not hashes)
    # Every other pin is there because a locked package needs it (no leftover of an old range).
    stray = sorted(
        name
        for name, (_, _, via) in lock.items()
        if name not in declared and not any(canonicalize_name(v) in lock for v in via)
    )

    assert unpinned == [], f"not in {kind}.txt: run `make lock`"
    assert outside == {}, "pinned outside pyproject's range: run `make lock`"
    assert without_hash == []
    assert stray == [], "locked, but nothing needs them: run `make lock`"


def test_the_images_install_the_locks_with_hashes_required() -> None:
    for image in ("worker", "operator"):
        dockerfile, lock = f"images/{image}/Dockerfile", image
        text = (REPO / dockerfile).read_text(encoding="utf-8")
        assert f"--require-hashes --only-binary=:all: -r locks/{lock}.txt" in text, dockerfile
        assert "--require-hashes --only-binary=:all: -r locks/build.txt" in text, dockerfile


def test_the_operator_import_check_names_exactly_the_operator_extra() -> None:
    # Which distribution provides each import name (the dev venv has the extra installed).
    providers = packages_distributions()
    provided = {canonicalize_name(d) for name in OPERATOR_IMPORTS for d in providers.get(name, [])}
    operator_extra = PROJECT["optional-dependencies"]["operator"]
    extra = {canonicalize_name(Requirement(r).name) for r in operator_extra}

    assert provided == extra


def test_the_metadata_names_its_urls_python_versions_and_typing() -> None:
    classifiers = PROJECT["classifiers"]
    minimum = re.fullmatch(r">=3\.(\d+)", PROJECT["requires-python"])

    assert minimum is not None
    assert f"Programming Language :: Python :: 3.{minimum.group(1)}" in classifiers
    assert "Typing :: Typed" in classifiers
    assert "License :: OSI Approved :: Apache Software License" not in classifiers, (
        "PEP 639: the SPDX `license` expression replaces license classifiers"
    )
    assert {"Homepage", "Source", "Issues"} <= set(PROJECT["urls"])
    license_words = (REPO / "LICENSE").read_text(encoding="utf-8").split()
    assert license_words[:4] == ["Apache", "License", "Version", "2.0,"]


def test_the_developer_tools_are_a_dependency_group_not_a_published_extra() -> None:
    assert set(PROJECT["optional-dependencies"]) == {"operator"}
    groups = PYPROJECT["dependency-groups"]
    assert any(r.startswith("pytest") for r in groups["test"] if isinstance(r, str))
    assert {"include-group": "test"} in groups["dev"]


def test_every_readme_link_works_where_pypi_shows_it() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    anchors = {_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", readme, flags=re.MULTILINE)}
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    relative = [t for t in targets if not t.startswith(("https://", "http://", "#"))]
    dangling = [t for t in targets if t.startswith("#") and t[1:] not in anchors]
    blob = f"{SOURCE_URL}/blob/main/"
    into_repo = [t.removeprefix(blob) for t in targets if t.startswith(blob)]
    missing = [p for p in into_repo if not _in_repository(p.partition("#")[0])]

    assert relative == [], "PyPI cannot follow relative links: link to the repository"
    assert dangling == []
    assert missing == []


def _in_repository(path: str) -> bool:
    """The file exists here; a package's source may be the installed package's (`make
    test-lowest` runs the tests from an sdist without the source folders)."""
    if (REPO / path).exists():
        return True
    for package, folder in (
        ("worker_runtime", "worker_runtime/"),
        ("worker_operator", "operator/worker_operator/"),
    ):
        if path.startswith(folder):
            installed = Path(importlib.import_module(package).__file__ or "").parent
            return (installed / path.removeprefix(folder)).exists()
    return False


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_image_carries_the_oci_labels(dockerfile: str) -> None:
    text = (REPO / dockerfile).read_text(encoding="utf-8")
    final_stage = re.split(r"^FROM ", text, flags=re.MULTILINE)[-1]
    labels = dict(re.findall(r'org\.opencontainers\.image\.([a-z]+)="([^"]*)"', final_stage))

    assert labels["source"] == SOURCE_URL
    assert labels["licenses"] == PROJECT["license"]
    assert labels["version"] == "${VERSION}"
    assert labels["revision"] == "${REVISION}"
    assert "ARG REVISION" in final_stage and "ARG VERSION" in final_stage
