"""OpenAPI v3 schema pieces for CustomResourceDefinitions, with CEL rules.

Plain dict builders with no Kubernetes or BackgroundWorker knowledge: ``crd.py`` and
``pod_types.py`` compose them. The two readers (``required_of``, ``choices_of``) let the
field reference in the README be generated from the same schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MAX_CHOICE_LENGTH",
    "Schema",
    "array",
    "boolean",
    "choices_of",
    "extend",
    "integer",
    "obj",
    "one_of",
    "required_of",
    "required_rule",
    "rule",
    "string",
    "string_map",
]

Schema = dict[str, Any]


def rule(
    rule: str,
    *,
    message: str | None = None,
    message_expression: str | None = None,
    field_path: str | None = None,
    reason: str | None = None,
) -> Schema:
    out: Schema = {"rule": rule}
    if message is not None:
        out["message"] = message
    if message_expression is not None:
        out["messageExpression"] = message_expression
    if field_path is not None:
        out["fieldPath"] = field_path
    if reason is not None:
        out["reason"] = reason
    return out


#: Choices are checked by CEL, not by ``enum``: an ``enum`` violation makes the API server
#: skip every CEL rule and print "some validation rules were not checked" besides.
MAX_CHOICE_LENGTH = 64


def one_of(choices: list[str]) -> Schema:
    listed = ", ".join(f"'{c}'" for c in choices)
    return rule(
        f"self in [{listed}]",
        message_expression=f"self + ' is not one of: {', '.join(choices)}'",
    )


def required_rule(name: str) -> Schema:
    return rule(
        f"has(self.{name})",
        message=f"{name} is required",
        field_path=f".{name}",
        reason="FieldValueRequired",
    )


def required_of(schema: Mapping[str, Any]) -> set[str]:
    """The properties an object requires (by the schema or by CEL), for the field reference."""
    return set(schema.get("required") or ()) | {
        str(rule["fieldPath"]).lstrip(".")
        for rule in schema.get("x-kubernetes-validations") or ()
        if rule.get("reason") == "FieldValueRequired" and rule.get("fieldPath")
    }


def choices_of(schema: Mapping[str, Any]) -> list[str] | None:
    """The values a string field allows (``enum`` or ``choices``), for the field reference."""
    if "enum" in schema:
        return [str(v) for v in schema["enum"]]
    for rule in schema.get("x-kubernetes-validations") or ():
        text = str(rule.get("rule", ""))
        if text.startswith("self in [") and text.endswith("]"):
            return [c.strip().strip("'") for c in text[len("self in [") : -1].split(",")]
    return None


def extend(schema: Schema, *, default: Any = None, rules: Iterable[Schema] = ()) -> Schema:
    if default is not None:
        schema["default"] = default
    rule_list = list(rules)
    if rule_list:
        schema["x-kubernetes-validations"] = rule_list
    return schema


def string(
    description: str,
    *,
    enum: Iterable[str] | None = None,
    choices: Iterable[str] | None = None,
    default: str | None = None,
    pattern: str | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    rules: Iterable[Schema] = (),
) -> Schema:
    """A string; ``choices`` are checked by CEL, ``enum`` (standard pod types) by the schema."""
    schema: Schema = {"type": "string", "description": description}
    if enum is not None:
        schema["enum"] = list(enum)
    if choices is not None:
        rules = [one_of(list(choices)), *rules]
        max_length = max_length or MAX_CHOICE_LENGTH
    if pattern is not None:
        schema["pattern"] = pattern
    if min_length is not None:
        schema["minLength"] = min_length
    if max_length is not None:
        schema["maxLength"] = max_length
    return extend(schema, default=default, rules=rules)


def integer(
    description: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    default: int | None = None,
    bits: int = 32,
) -> Schema:
    schema: Schema = {"type": "integer", "format": f"int{bits}", "description": description}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return extend(schema, default=default)


def boolean(description: str, *, default: bool | None = None) -> Schema:
    return extend({"type": "boolean", "description": description}, default=default)


def obj(
    description: str,
    properties: Mapping[str, Schema],
    *,
    required: Iterable[str] = (),
    must_have: Iterable[str] = (),
    default: Mapping[str, Any] | None = None,
    rules: Iterable[Schema] = (),
    atomic: bool = False,
) -> Schema:
    """An object; ``must_have`` fields are checked by CEL, ``required`` ones by the schema.

    The BackgroundWorker's own fields use CEL (see ``MAX_CHOICE_LENGTH``); the standard pod
    types keep the schema's checks, as CEL rules inside their unbounded lists would exceed
    the API server's cost budget for the whole schema.
    """
    schema: Schema = {"type": "object", "description": description, "properties": dict(properties)}
    required_list = list(required)
    if required_list:
        schema["required"] = required_list
    rules = [*(required_rule(name) for name in must_have), *rules]
    if atomic:
        schema["x-kubernetes-map-type"] = "atomic"
    return extend(schema, default=dict(default) if default is not None else None, rules=rules)


def string_map(description: str, *, max_properties: int | None = None) -> Schema:
    schema: Schema = {
        "type": "object",
        "description": description,
        "additionalProperties": {"type": "string"},
    }
    if max_properties is not None:
        schema["maxProperties"] = max_properties
    return schema


def array(
    description: str,
    items: Schema,
    *,
    map_keys: Iterable[str] | None = None,
    max_items: int | None = None,
    rules: Iterable[Schema] = (),
) -> Schema:
    schema: Schema = {"type": "array", "description": description, "items": items}
    if map_keys is not None:
        schema["x-kubernetes-list-type"] = "map"
        schema["x-kubernetes-list-map-keys"] = list(map_keys)
    else:
        schema["x-kubernetes-list-type"] = "atomic"
    if max_items is not None:
        schema["maxItems"] = max_items
    return extend(schema, rules=rules)
