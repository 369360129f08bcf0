"""The README stays true to the code it documents."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from worker_operator.manifests import render_field_reference
from worker_runtime.cli import _RUN_FLAGS
from worker_runtime.metrics import Metrics
from worker_runtime.triggering import trigger_counter

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_the_resource_table_in_the_readme_is_the_generated_one() -> None:
    table = render_field_reference().strip()
    assert table in README, "regenerate with: python -m worker_operator.manifests reference"


def test_every_run_flag_is_documented_in_the_readme() -> None:
    missing = [flag for flag, _ in _RUN_FLAGS if f"`{flag}`" not in README]
    assert not missing


def test_every_metric_family_is_in_the_readme_and_the_readme_names_no_other() -> None:
    registry = CollectorRegistry()
    Metrics(registry).for_worker("w")
    trigger_counter(registry)
    exported = {f"{m.name}_total" if m.type == "counter" else m.name for m in registry.collect()}
    documented = set(re.findall(r"^\| `(tickwork_[a-z_]+)` \|", README, flags=re.MULTILINE))
    assert documented == exported
