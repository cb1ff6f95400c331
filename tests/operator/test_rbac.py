"""The operator's ClusterRole (deploy/kustomize/base/rbac.yaml; the chart's is generated from it) grants no
wildcard and none of the verbs or resources that make a token a path to more power (issue #14, item 9), and
exactly what the operator uses (issue #18): what kopf watches, read from its handler registry; the status of
every v1 kind, from convert.registry.JOB_KINDS; and each call the operator makes itself, in CALLS below,
each with the module making it. The cluster tests (e2e/test_operator_*.py) run the operator under it and
fail on any refusal, so a grant missing from the role is found there and one no code uses is found here."""

from pathlib import Path
from typing import Any

import kopf
import yaml

import ferryman.controller.main  # noqa: F401  (registers the operator's kopf handlers)
from ferryman.convert.registry import JOB_KINDS

ROOT = Path(__file__).resolve().parents[2]
RBAC = ROOT / "deploy" / "kustomize" / "base" / "rbac.yaml"
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


WORKER_RBAC = "build_worker_rbac"  # the migration workers' ServiceAccount, Role and RoleBinding
# The API calls the operator makes itself (kopf's watches come from its registry): (group, resource, verbs,
# the module making them, a name that module uses for them).
CALLS: tuple[tuple[str, str, tuple[str, ...], str, str], ...] = (
    ("", "events", ("create",), "controller/policy.py", "kopf.warn"),
    ("coordination.k8s.io", "leases", ("get", "create", "update"), "kube/lease.py", "client.replace(lease"),
    ("trainer.kubeflow.org", "trainjobs", ("create", "patch", "delete"), "controller/policy.py", "TrainJob"),
    ("trainer.kubeflow.org", "trainjobs", ("list", "watch"), "controller/main.py", "TrainJob, _trimmed_"),
    ("trainer.kubeflow.org", "trainingruntimes", ("create",), "controller/policy.py", "TrainingRuntime"),
    ("ferryman.dev", "cutoverpolicies", ("list", "watch"), "controller/batches.py", "CutoverPolicy, fields="),
    ("ferryman.dev", "cutoverpolicies/status", ("patch",), "controller/policy.py", "patch_status"),
    ("ferryman.dev", "experimentmigrations/status", ("get", "patch"), "controller/migration.py", "status"),
    ("batch", "jobs", ("get", "create", "patch", "delete"), "controller/migration.py", "Job"),
    ("", "configmaps", ("get", "create", "update", "patch"), "controller/migration.py", "spec_map"),
    ("", "serviceaccounts", ("get", "create"), "controller/migration.py", WORKER_RBAC),
    ("rbac.authorization.k8s.io", "roles", ("get", "create"), "controller/migration.py", WORKER_RBAC),
    ("rbac.authorization.k8s.io", "rolebindings", ("get", "create"), "controller/migration.py", WORKER_RBAC),
)


def used() -> set[tuple[str, str, str]]:
    """(group, resource, verb) the operator needs: kopf lists and watches every resource it has a handler
    for and patches those whose handlers keep state (finalizers, progress); Takeover patches v1 status."""
    registry = kopf.get_default_registry()
    needed: set[tuple[str, str, str]] = set()
    for handlers, verbs in (
        (registry._indexing, ("list", "watch")),
        (registry._watching, ("list", "watch")),
        (registry._spawning, ("list", "watch", "patch")),
        (registry._changing, ("list", "watch", "patch")),
    ):
        for handler in handlers.get_all_handlers():
            selector = handler.selector
            assert selector is not None and selector.group is not None, handler
            needed |= {(selector.group, str(selector.plural or selector.any_name), verb) for verb in verbs}
    for row in JOB_KINDS.values():  # listed and watched by informers (controller/main.py); Takeover status
        needed |= {(row.kind.group, row.kind.plural, verb) for verb in ("list", "watch")}
        needed.add((row.kind.group, f"{row.kind.plural}/status", "patch"))
    for group, resource, called, module, evidence in CALLS:
        source = (ROOT / "operator" / "ferryman" / module).read_text()
        assert evidence in source, f"{module} no longer makes the calls on {resource} it is listed for"
        needed |= {(group, resource, verb) for verb in called}
    return needed


def test_every_grant_is_used_and_every_use_granted() -> None:
    granted = {
        (group, resource, verb)
        for rule in operator_rules()
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    needed = used()
    unused = sorted(granted - needed)
    assert not unused, f"granted, but no handler or call in CALLS uses it (list it or drop it): {unused}"
    assert not needed - granted, f"used but not granted: {sorted(needed - granted)}"
