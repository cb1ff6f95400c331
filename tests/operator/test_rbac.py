"""The operator's ClusterRole (deploy/kustomize/base/rbac.yaml; the chart's is generated from it) grants no
wildcard and none of the verbs or resources that make a token a path to more power (issue #14, item 9). The
cluster tests (e2e/test_operator_*.py) run the operator under it and fail on any refusal."""

from pathlib import Path
from typing import Any

import yaml

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "kustomize" / "base" / "rbac.yaml"
# escalate/bind grant roles beyond one's own, impersonate becomes another user; Secrets and pods/exec are
# the credentials and shells of other workloads (migration workers get their Secret keys from the kubelet).
POWER_VERBS = {"escalate", "bind", "impersonate", "*"}
POWER_RESOURCES = {"secrets", "pods/exec", "pods/attach", "serviceaccounts/token", "nodes/proxy", "*"}


def operator_rules() -> list[dict[str, Any]]:
    (role,) = [doc for doc in yaml.safe_load_all(RBAC.read_text()) if doc and doc["kind"] == "ClusterRole"]
    return list(role["rules"])


def test_no_wildcard_and_no_path_to_more_power() -> None:
    for rule in operator_rules():
        assert "*" not in rule["apiGroups"], rule
        assert not POWER_VERBS & set(rule["verbs"]), rule
        assert not POWER_RESOURCES & set(rule["resources"]), rule
        assert "nonResourceURLs" not in rule, rule


def test_each_resource_and_verb_is_granted_once() -> None:
    granted = [
        (group, resource, verb)
        for rule in operator_rules()
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    ]
    assert len(granted) == len(set(granted))
