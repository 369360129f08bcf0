"""The CRD is generated from one module, self-documenting, strict, and the files are current."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker_operator.constants import MAX_SHUTDOWN_GRACE
from worker_operator.crd import build_crd
from worker_operator.manifests import CRD_FILES, render_crd, stale_files, write_files
from worker_runtime import rules
from worker_runtime.durations import MAX_DURATION_SECONDS, format_duration
from worker_runtime.redis_urls import SECRET_OPTION_PATTERN

REPO_ROOT = Path(__file__).resolve().parents[3]


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in (schema.get("properties") or {}).items():
        yield from _walk(child, f"{path}.{name}")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict) and additional.get("properties"):
        yield from _walk(additional, f"{path}{{}}")


def test_the_generated_crd_files_are_current() -> None:
    assert stale_files(REPO_ROOT) == [], "run `make manifests`"


def test_the_chart_and_the_manifests_carry_the_same_crd() -> None:
    texts = {(REPO_ROOT / path).read_text(encoding="utf-8") for path in CRD_FILES}

    assert texts == {render_crd()}
    assert yaml.safe_load(render_crd()) == build_crd()
    manifest = (REPO_ROOT / "manifests" / "01-crd.yaml").read_text(encoding="utf-8")
    assert [d for d in yaml.safe_load_all(manifest) if d] == [build_crd()]


def test_the_generated_yaml_has_no_anchors_or_aliases_so_it_reads_like_a_hand_written_crd() -> None:
    for name in [*(str(path) for path in CRD_FILES), "manifests/01-crd.yaml"]:
        text = (REPO_ROOT / name).read_text(encoding="utf-8")
        events = list(yaml.parse(text))

        assert not [e for e in events if isinstance(e, yaml.AliasEvent)], name
        assert not [e for e in events if getattr(e, "anchor", None)], name


def test_a_stale_file_is_reported_and_rewritten(tmp_path: Path) -> None:
    target = tmp_path / CRD_FILES[0]
    target.parent.mkdir(parents=True)
    target.write_text("# edited by hand\n", encoding="utf-8")

    assert stale_files(tmp_path) == list(CRD_FILES)
    assert write_files(tmp_path) == list(CRD_FILES)
    assert stale_files(tmp_path) == []


def test_every_field_of_the_spec_and_status_has_a_description() -> None:
    schema = _schema()
    undocumented = [
        path
        for path, node in _walk(schema)
        if path.startswith((".spec", ".status"))
        and not node.get("description")
        and not (path.endswith("[]") and node.get("type") != "object")  # a list's scalar items
    ]

    assert undocumented == []


def test_the_names_match_the_design() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]

    assert crd["metadata"]["name"] == "backgroundworkers.tickwork.dev"
    assert crd["spec"]["group"] == "tickwork.dev"
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "BackgroundWorker",
        "backgroundworkers",
        ["bgw"],
    )
    assert [v["name"] for v in crd["spec"]["versions"]] == ["v1alpha1"]


def test_status_and_scale_subresources_point_at_replicas_and_the_selector() -> None:
    subresources = build_crd()["spec"]["versions"][0]["subresources"]

    assert subresources == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }


def test_printer_columns_show_schedule_readiness_holder_last_success_next_and_age() -> None:
    columns = build_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    default_columns = [c["name"] for c in columns if not c.get("priority")]
    by_name = {c["name"]: c for c in columns}

    assert default_columns == [
        "Schedule",
        "Ready",
        "Status",
        "Reason",
        "Holder",
        "Last Success",
        "Next",
        "Age",
    ]
    assert by_name["Status"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert by_name["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert by_name["Last Success"]["type"] == "date"  # kubectl prints it as an age
    # kubectl prints a future date as "<invalid>": the next slot is shown as a time instead.
    assert by_name["Next"]["type"] == "string"
    status = _schema()["properties"]["status"]["properties"]
    for column in columns:
        if column["jsonPath"].startswith(".status.") and "conditions" not in column["jsonPath"]:
            assert column["jsonPath"].removeprefix(".status.") in status, column


@pytest.mark.parametrize(
    "condition_type", ["Ready", "Progressing", "Degraded", "example.com/Synced", "A"]
)
def test_condition_types_follow_metav1_s_pattern(condition_type: str) -> None:
    pattern = _schema()["properties"]["status"]["properties"]["conditions"]["items"]["properties"][
        "type"
    ]["pattern"]
    assert re.fullmatch(pattern, condition_type)


@pytest.mark.parametrize("condition_type", ["", "-Ready", "Ready-", "Bad/Prefix/X", "UPPER./X"])
def test_condition_types_outside_metav1_s_pattern_are_refused(condition_type: str) -> None:
    pattern = _schema()["properties"]["status"]["properties"]["conditions"]["items"]["properties"][
        "type"
    ]["pattern"]
    assert not re.fullmatch(pattern, condition_type)


def test_defaults_live_in_the_schema() -> None:
    spec = _schema()["properties"]["spec"]["properties"]

    assert spec["replicas"]["default"] == 1
    assert spec["suspend"]["default"] is False
    assert spec["shutdownGrace"]["default"] == "30s"
    assert spec["lease"]["properties"]["ttl"]["default"] == "15s"
    assert spec["metrics"]["properties"]["port"]["default"] == 9100
    assert spec["schedule"]["properties"]["misfire"]["default"] == "skip"
    assert spec["schedule"]["properties"]["runOnStart"]["default"] is False


def test_cel_rules_cover_what_the_schema_alone_cannot() -> None:
    spec = _schema()["properties"]["spec"]
    schedule_rules = " ".join(
        r["rule"] for r in spec["properties"]["schedule"]["x-kubernetes-validations"]
    )
    lease_rules = " ".join(
        r["rule"] for r in spec["properties"]["lease"]["x-kubernetes-validations"]
    )
    worker_rules = " ".join(
        r["rule"] for r in spec["properties"]["worker"]["x-kubernetes-validations"]
    )

    assert "has(self.period) != has(self.cron)" in schedule_rules
    assert "!has(self.timeZone) || has(self.cron)" in schedule_rules
    assert "!has(self.mode) || has(self.period)" in schedule_rules
    assert "duration(self.renewInterval)" in lease_rules
    assert "self.matches(" in worker_rules


def _field_rules(*path: str) -> str:
    node = _schema()["properties"]["spec"]
    for name in path:
        node = node["properties"][name]
    return " ".join(r["rule"] for r in node["x-kubernetes-validations"])


def test_the_cel_bounds_are_the_runtime_rules_not_restated_numbers() -> None:
    assert f"duration('{format_duration(rules.MIN_PERIOD_SECONDS)}')" in _field_rules(
        "schedule", "period"
    )
    ttl = _field_rules("lease", "ttl")
    assert f">= duration('{format_duration(rules.MIN_LEASE_TTL_SECONDS)}')" in ttl
    assert f"<= duration('{format_duration(rules.MAX_LEASE_TTL_SECONDS)}')" in ttl
    renew = _field_rules("lease", "renewInterval")
    assert f">= duration('{format_duration(rules.MIN_RENEW_INTERVAL_SECONDS)}')" in renew
    # Every other duration is bounded by the runtime's longest duration; shutdownGrace by
    # the operator's own, shorter bound.
    assert f"<= duration('{format_duration(MAX_DURATION_SECONDS)}')" in _field_rules(
        "schedule", "period"
    )
    assert f"<= duration('{MAX_SHUTDOWN_GRACE}')" in _field_rules("shutdownGrace")


def test_a_redis_url_with_a_password_in_its_query_is_refused_by_a_cel_rule() -> None:
    url_rules = _field_rules("redis", "url")
    assert f"(?i)[?&][^=&#]*({SECRET_OPTION_PATTERN})" in url_rules


def test_the_schema_is_structural_without_preserved_unknown_fields() -> None:
    preserved = [
        path for path, node in _walk(_schema()) if node.get("x-kubernetes-preserve-unknown-fields")
    ]

    assert preserved == []


def test_the_field_reference_lists_every_field_of_our_own_types() -> None:
    from worker_operator.manifests import render_field_reference

    table = render_field_reference()
    spec = _schema()["properties"]["spec"]["properties"]

    for name in spec:
        assert f"| `spec.{name}` |" in table
    for name in spec["schedule"]["properties"]:
        assert f"| `spec.schedule.{name}` |" in table
    assert "| `spec.lease.ttl` | string | `15s` |" in table
    assert "spec.affinity.nodeAffinity" not in table  # standard types are not expanded


def _walk(node: object, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, child in node.items():
            found.extend(_walk(child, f"{path}/{key}"))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found.extend(_walk(child, f"{path}/{index}"))
    return found


STANDARD_POD_TYPES = ("affinity", "tolerations", "env", "envFrom", "imagePullSecrets")


def test_the_workers_own_choices_and_required_fields_are_cel_rules_so_all_rules_are_checked() -> (
    None
):
    # An enum or required violation makes the API server skip every CEL rule and add
    # "some validation rules were not checked" to the refusal. (The standard pod types keep
    # the schema's checks: CEL rules in their unbounded lists would exceed the cost budget.)
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    own = {k: v for k, v in spec["properties"].items() if k not in STANDARD_POD_TYPES}
    nodes = _walk({"root": {k: v for k, v in schema.items() if k != "properties"}, **own})

    assert [path for path, node in nodes if "enum" in node and "type" in node] == []
    assert [path for path, node in nodes if node.get("required") and "type" in node] == []
    assert "required" not in spec
    assert {r["fieldPath"] for r in spec["x-kubernetes-validations"] if "fieldPath" in r} >= {
        ".image",
        ".worker",
        ".schedule",
    }
