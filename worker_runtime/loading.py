"""Import ``module:attribute`` entrypoints named on the command line."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from worker_runtime.worker import PeriodicWorker

__all__ = ["load_attribute", "load_worker_class"]


def load_attribute(spec: str, *, what: str) -> Any:
    """``package.module:Name`` → the object; ``ValueError`` with a one-line reason otherwise."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr or not attr.replace(".", "").isidentifier():
        raise ValueError(f"{what} {spec!r} must look like package.module:Name")
    # Like other runners (celery, uvicorn), the working directory is importable.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(f"{what} {spec!r}: cannot import {module_name!r} ({exc})") from None
    except Exception as exc:
        raise ValueError(
            f"{what} {spec!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(
                f"{what} {spec!r}: {module_name!r} has no attribute {attr!r}"
            ) from None
    return obj


def load_worker_class(spec: str) -> type[PeriodicWorker]:
    try:
        obj = load_attribute(spec, what="worker")
    except TypeError as exc:  # an invalid schedule raises at class definition
        raise ValueError(f"worker {spec!r}: {exc}") from None
    if not (isinstance(obj, type) and issubclass(obj, PeriodicWorker)):
        raise ValueError(f"worker {spec!r} is not a subclass of worker_runtime.PeriodicWorker")
    return obj
