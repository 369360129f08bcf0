"""The operator's RBAC rules: what it needs, and nothing that reads Secrets by default."""

from __future__ import annotations

from worker_operator.rbac import (
    build_cluster_role,
    cluster_role_rules,
    leader_election_rules,
    secret_check_rules,
)


def verbs(rules: list[dict[str, list[str]]], group: str, resource: str) -> set[str]:
    return {
        verb
        for rule in rules
        if group in rule["apiGroups"] and resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_operator_never_needs_to_read_secrets_by_default() -> None:
    rules = cluster_role_rules()

    assert verbs(rules, "", "secrets") == set()
    assert all("*" not in rule["verbs"] and "*" not in rule["resources"] for rule in rules)


def test_the_operator_never_deletes_anything() -> None:
    rules = [*cluster_role_rules(), *leader_election_rules(), *secret_check_rules()]

    assert all("delete" not in rule["verbs"] for rule in rules)


def test_deployments_are_applied_and_watched_and_status_is_patched() -> None:
    rules = cluster_role_rules()

    assert verbs(rules, "apps", "deployments") == {"get", "list", "watch", "create", "patch"}
    assert verbs(rules, "tickwork.dev", "backgroundworkers") >= {"get", "list", "watch"}
    assert verbs(rules, "tickwork.dev", "backgroundworkers/status") == {"get", "patch"}
    assert verbs(rules, "", "events") == {"create", "patch"}
    assert verbs(rules, "", "pods") == {"list", "watch"}


def test_the_secret_check_adds_only_get_on_secrets() -> None:
    plain = build_cluster_role()
    checking = build_cluster_role(check_secret_references=True)

    assert checking["rules"][: len(plain["rules"])] == plain["rules"]
    assert checking["rules"][len(plain["rules"]) :] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    ]


def test_leader_election_needs_only_its_lease() -> None:
    assert leader_election_rules() == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update"],
        }
    ]


def test_the_operator_may_not_change_a_workers_spec_or_metadata() -> None:
    rules = cluster_role_rules()

    assert verbs(rules, "tickwork.dev", "backgroundworkers") == {"get", "list", "watch"}
