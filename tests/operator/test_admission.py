"""The admission policy's table (api/admission.py) against what kube/builders.py renders: every string the
policy requires of a child is the one the builders write. e2e/test_operator_admission.py runs the policy on
the real apiserver."""

from typing import Any

from ferryman.api.admission import (
    WORKER_ARGS,
    WORKER_COMMAND,
    WORKER_ROLE_VERBS,
    admission_policy,
    worker_account,
    worker_report_target,
)
from ferryman.api.kinds import EXPERIMENT_MIGRATION, MIGRATION_LABEL
from ferryman.kube.builders import (
    MigrationWorkload,
    build_migration_job,
    build_worker_rbac,
    migration_children,
)

MIGRATION: dict[str, Any] = {
    **EXPERIMENT_MIGRATION.type_meta,
    "metadata": {"name": "nightly", "namespace": "ml", "uid": "u-1"},
}


def test_the_worker_job_is_what_the_policy_admits() -> None:
    names = migration_children("nightly")
    job = build_migration_job(
        MigrationWorkload(MIGRATION, "nightly-1", "ferryman:1", 2, names["spec"], names["account"])
    )
    assert job["metadata"]["labels"][MIGRATION_LABEL] == "nightly"
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == (EXPERIMENT_MIGRATION.kind, "nightly", True)
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == worker_account("nightly")
    (container,) = pod["containers"]
    assert container["command"] == list(WORKER_COMMAND)
    assert container["args"] == [*WORKER_ARGS, worker_report_target("ml", "nightly")]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert "ALL" in container["securityContext"]["capabilities"]["drop"]
    assert not any("hostPath" in volume for volume in pod["volumes"])


def test_the_worker_rbac_is_what_the_policy_admits() -> None:
    account, role, binding = build_worker_rbac(MIGRATION)
    for child in (account, role, binding):
        assert child["metadata"]["name"] == worker_account("nightly")
        assert child["metadata"]["labels"][MIGRATION_LABEL] == "nightly"
    for rule in role["rules"]:
        assert rule["resourceNames"] and set(rule["verbs"]) <= set(WORKER_ROLE_VERBS)
    assert binding["roleRef"]["name"] == worker_account("nightly")
    account_subject = {"kind": "ServiceAccount", "name": worker_account("nightly"), "namespace": "ml"}
    assert binding["subjects"] == [account_subject]


def test_the_policy_matches_only_the_operators_account_and_denies() -> None:
    policy, binding = admission_policy("p", "system:serviceaccount:ops:ferryman")
    (condition,) = policy["spec"]["matchConditions"]
    assert condition["expression"] == "request.userInfo.username == 'system:serviceaccount:ops:ferryman'"
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert binding["spec"] == {"policyName": "p", "validationActions": ["Deny"]}
