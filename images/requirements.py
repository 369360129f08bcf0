"""Print requirements from pyproject.toml, one a line, for ``pip install -r``.

``make lock`` compiles the build requirements into ``images/locks/build.txt`` (the images
install the locks, with hashes), and ``make test-lowest`` installs them at their lowest:

    python requirements.py build                  # [build-system] requires
    python requirements.py runtime [EXTRA ...]    # [project] dependencies, plus extras

Reads ``pyproject.toml`` in the working directory.
"""

from __future__ import annotations

import sys
import tomllib
from typing import Any


def requirements(pyproject: dict[str, Any], kind: str, extras: list[str]) -> list[str]:
    if kind == "build":
        return list(pyproject["build-system"]["requires"])
    if kind == "runtime":
        project = pyproject["project"]
        optional = project.get("optional-dependencies", {})
        unknown = [extra for extra in extras if extra not in optional]
        if unknown:
            raise SystemExit(f"unknown extra {unknown[0]!r}; expected one of {sorted(optional)}")
        return [*project.get("dependencies", []), *(r for e in extras for r in optional[e])]
    raise SystemExit(f"unknown kind {kind!r}; expected 'build' or 'runtime'")


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    with open("pyproject.toml", "rb") as file:
        pyproject = tomllib.load(file)
    print("\n".join(requirements(pyproject, argv[0], argv[1:])))


if __name__ == "__main__":
    main(sys.argv[1:])
