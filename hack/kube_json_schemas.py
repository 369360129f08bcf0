"""JSON schemas for ``kubeconform -strict``, made offline (kubeconform would download them).

    python hack/kube_json_schemas.py kubernetes SWAGGER_JSON OUT_DIR   # the built-in kinds
    python hack/kube_json_schemas.py crd CRD_YAML OUT_DIR              # a CRD's kinds

Each kind becomes ``OUT_DIR/<kind><suffix>.json``, the file name kubeconform asks for with
``-schema-location 'OUT_DIR/{{ .ResourceKind }}{{ .KindSuffix }}.json'`` (``pod-v1.json``,
``deployment-apps-v1.json``, ``backgroundworker-tickwork-v1alpha1.json``). Like the schemas
kubeconform downloads (openapi2jsonschema ``--strict --standalone``): every ``$ref`` inlined,
objects with known properties refuse unknown ones, int-or-string and quantities accept a
string or a number, and a field may be null. ``make kube-schemas`` writes the built-in
kinds' from the swagger.json of the Kubernetes release the tests run (Go module
``k8s.io/kubernetes``); tests/integration/test_ecosystem_tools.py writes the CRD's.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

Schema = dict[str, Any]

_INT_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
_QUANTITY = {"oneOf": [{"type": "string"}, {"type": "number"}]}


def file_name(kind: str, api_version: str) -> str:
    """kubeconform's ``{{ .ResourceKind }}{{ .KindSuffix }}.json`` for this kind."""
    group, _, version = api_version.rpartition("/")
    suffix = f"-{group.split('.')[0].lower()}-{version.lower()}" if group else f"-{version.lower()}"
    return f"{kind.lower()}{suffix}.json"


def _strict(schema: Schema) -> Schema:
    """Refuse unknown properties, accept null, recursively (a copy)."""
    out = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        if node.get("format") == "int-or-string" or node.get("x-kubernetes-int-or-string"):
            for key in ("type", "format", "x-kubernetes-int-or-string", "anyOf"):
                node.pop(key, None)
            node.update(copy.deepcopy(_INT_OR_STRING))
        known = "properties" in node and "additionalProperties" not in node
        if known and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        kind = node.get("type")
        if isinstance(kind, str):
            node["type"] = [kind, "null"]
        for key, value in node.items():
            if key in ("properties", "patternProperties", "definitions"):
                for child in value.values():
                    walk(child)
            elif key not in ("enum", "required", "default", "example"):
                walk(value)

    walk(out)
    return out


def _inline(schema: Any, definitions: dict[str, Schema], stack: tuple[str, ...] = ()) -> Any:
    if isinstance(schema, list):
        return [_inline(item, definitions, stack) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        name = ref.removeprefix("#/definitions/")
        if name in stack:  # a recursive type (JSONSchemaProps): anything deeper is accepted
            return {}
        if name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
            return copy.deepcopy(_INT_OR_STRING)
        if name == "io.k8s.apimachinery.pkg.api.resource.Quantity":
            return copy.deepcopy(_QUANTITY)
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return {**_inline(definitions[name], definitions, (*stack, name)), **rest}
    return {key: _inline(value, definitions, stack) for key, value in schema.items()}


def from_swagger(swagger: Schema) -> dict[str, Schema]:
    definitions = swagger["definitions"]
    schemas: dict[str, Schema] = {}
    for name, definition in definitions.items():
        kinds = definition.get("x-kubernetes-group-version-kind") or []
        if len(kinds) != 1:  # meta types such as DeleteOptions are listed under every group
            continue
        gvk = kinds[0]
        api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
        schema = _strict(_inline(definition, definitions, (name,)))
        schemas[file_name(gvk["kind"], api_version)] = schema
    return schemas


def from_crd(crd: Schema) -> dict[str, Schema]:
    spec = crd["spec"]
    schemas: dict[str, Schema] = {}
    for version in spec["versions"]:
        schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
        properties = schema.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties.setdefault("metadata", {"type": "object"})
        api_version = f"{spec['group']}/{version['name']}"
        schemas[file_name(spec["names"]["kind"], api_version)] = _strict(schema)
    return schemas


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[0] not in ("kubernetes", "crd"):
        raise SystemExit(__doc__)
    what, source, out = argv[0], Path(argv[1]), Path(argv[2])
    if what == "kubernetes":
        schemas = from_swagger(json.loads(source.read_text(encoding="utf-8")))
    else:
        import yaml

        schemas = {}
        for document in yaml.safe_load_all(source.read_text(encoding="utf-8")):
            if document and document.get("kind") == "CustomResourceDefinition":
                schemas.update(from_crd(document))
    if not schemas:
        raise SystemExit(f"no kinds found in {source}")
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        (out / name).write_text(json.dumps(schema, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(schemas)} schemas to {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
