"""Who owns a Deployment and which of its fields: pure reading of ``metadata``.

* ``controller_of``: the controlling owner reference, if any.
* ``labelled_for``: whether the operator's labels say the Deployment runs a given worker (the
  operator re-adopts such a Deployment when its owner reference was removed by hand).
* ``foreign_fields``: the fields of ``spec`` that only other field managers own (added by
  hand, e.g. with ``kubectl patch``), read from ``metadata.managedFields``. A forced
  server-side apply takes back every field the operator sets, but leaves such additions in
  place: the reconciler replaces the spec when this list is not empty.

No I/O here (an import-linter contract checks it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from worker_operator.constants import LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY

__all__ = ["controller_of", "foreign_fields", "is_own_manager", "labelled_for"]

Path = tuple[str, ...]


def controller_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The owner reference with ``controller: true`` (Kubernetes allows at most one)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return dict(ref)
    return None


def labelled_for(obj: Mapping[str, Any], worker_name: str) -> bool:
    """The operator's managed-by label and this worker's instance label are both set."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(LABEL_MANAGED_BY) == MANAGED_BY and labels.get(LABEL_INSTANCE) == worker_name


def is_own_manager(manager: str, own: str) -> bool:
    """``own`` and the managers the operator derives from it (``own``-something)."""
    return manager == own or manager.startswith(f"{own}-")


def _leaves(tree: Mapping[str, Any], prefix: Path = ()) -> Iterator[tuple[Path, bool]]:
    """Every owned path of a ``fieldsV1`` tree, and whether it is a value owned whole.

    ``"."`` marks the membership of a list item or map entry (not its fields).
    """
    for key, sub in tree.items():
        if key == ".":
            yield prefix, False
        elif sub:
            yield from _leaves(sub, (*prefix, key))
        else:
            yield (*prefix, key), True


def _step(node: Any, key: str) -> Any:
    """Follow one ``fieldsV1`` key (``f:name``, ``k:{...}``, ``v:...``, ``i:N``) in an object."""
    kind, _, rest = key.partition(":")
    if kind == "f" and isinstance(node, Mapping):
        return node.get(rest)
    if isinstance(node, list):
        if kind == "k":
            wanted = json.loads(rest)
            for item in node:
                if isinstance(item, Mapping) and all(item.get(k) == v for k, v in wanted.items()):
                    return item
        elif kind == "v":
            value = json.loads(rest)
            return value if value in node else None
        elif kind == "i" and rest.isdigit() and int(rest) < len(node):
            return node[int(rest)]
    return None


def _present(obj: Mapping[str, Any], path: Path) -> bool:
    node: Any = obj
    for key in path:
        node = _step(node, key)
        if node is None:
            return False
    return True


def _readable(path: Path) -> str:
    parts = []
    for key in path:
        kind, _, rest = key.partition(":")
        if kind == "f":
            parts.append(rest)
        elif kind == "k":
            wanted = json.loads(rest)
            parts[-1] += "[" + ",".join(f"{k}={v}" for k, v in sorted(wanted.items())) + "]"
        else:
            parts[-1] += f"[{rest}]"
    return ".".join(parts)


def _entries(obj: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    return (obj.get("metadata") or {}).get("managedFields") or ()


def foreign_fields(obj: Mapping[str, Any], *, own_manager: str) -> list[str]:
    """``spec`` fields present in ``obj`` that no manager of the operator owns, shortest first.

    Paths read like ``spec.template.spec.hostNetwork`` or
    ``spec.template.spec.containers[name=sidecar]``; a field inside a foreign addition is not
    listed again.
    """
    trees: list[tuple[bool, Mapping[str, Any]]] = []
    for entry in _entries(obj):
        if entry.get("subresource") == "status":
            continue
        tree = (entry.get("fieldsV1") or {}).get("f:spec")
        if isinstance(tree, Mapping):
            trees.append((is_own_manager(str(entry.get("manager", "")), own_manager), tree))
    if all(mine for mine, _ in trees):
        return []  # the common case (every Deployment event): no other manager owns spec fields
    ours: set[Path] = set()
    whole: set[Path] = set()  # values the operator owns whole (scalars, atomic lists)
    theirs: set[Path] = set()
    for mine, tree in trees:
        for path, is_value in _leaves(tree, ("f:spec",)):
            if not mine:
                theirs.add(path)
                continue
            ours.add(path)
            if is_value:
                whole.add(path)
    covered = {path[:i] for path in ours for i in range(1, len(path) + 1)}
    extra: list[Path] = []
    for path in sorted(theirs, key=len):
        if path in covered or any(path[:i] in whole for i in range(1, len(path))):
            continue  # the operator owns it, something inside it, or an atomic field above it
        if any(path[: len(done)] == done for done in extra):
            continue
        if _present(obj, path):
            extra.append(path)
    return [_readable(path) for path in extra]
