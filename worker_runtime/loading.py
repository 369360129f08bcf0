"""Import ``module:attribute`` entrypoints named on the command line."""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any

from worker_runtime.worker import PeriodicWorker

__all__ = ["check_spec", "describe_exception", "load_attribute", "load_worker_class"]

_SPEC = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def describe_exception(exc: BaseException) -> str:
    """``RuntimeError: boom`` on one line; ``SystemExit`` says it called sys.exit()."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_spec(spec: str, *, what: str) -> str:
    """``package.module:Name`` (ASCII identifiers), or ``ValueError``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not _SPEC.fullmatch(module_name) or not _SPEC.fullmatch(attr):
        raise ValueError(f"{what} {spec!r} must look like package.module:Name")
    return spec


def load_attribute(spec: str, *, what: str) -> Any:
    """``package.module:Name`` → the object; ``ValueError`` with a one-line reason otherwise.

    Whatever importing raises, ``SystemExit`` included, becomes that one line: user code
    must not end the process silently (``sys.exit(0)`` at import would exit 0).
    """
    check_spec(spec, what=what)
    module_name, _, attr = spec.partition(":")
    # Like other runners (celery, uvicorn), the working directory is importable.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and not (module_name + ".").startswith(exc.name + "."):
            # The module exists but imports something missing: that is its own failure.
            raise ImportFailure(
                f"{what} {spec!r}: importing {module_name!r} failed: {describe_exception(exc)}"
            ) from exc
        raise ValueError(f"{what} {spec!r}: cannot import {module_name!r} ({exc})") from None
    except (Exception, SystemExit) as exc:
        raise ImportFailure(
            f"{what} {spec!r}: importing {module_name!r} failed: {describe_exception(exc)}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(
                f"{what} {spec!r}: {module_name!r} has no attribute {attr!r}"
            ) from None
    return obj


class ImportFailure(ValueError):
    """Importing user code raised: one line, with the exception kept for ``--log-level debug``."""


def load_worker_class(spec: str) -> type[PeriodicWorker]:
    try:
        obj = load_attribute(spec, what="worker")
    except TypeError as exc:  # an invalid schedule raises at class definition
        raise ValueError(f"worker {spec!r}: {exc}") from None
    if not (isinstance(obj, type) and issubclass(obj, PeriodicWorker)):
        raise ValueError(f"worker {spec!r} is not a subclass of worker_runtime.PeriodicWorker")
    return obj
