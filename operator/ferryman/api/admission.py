"""What the operator's own token may write, beyond RBAC: a ValidatingAdmissionPolicy (issue #14, item 9).

RBAC cannot say "only Jobs that run ferryman's worker under its own account", so a stolen operator token
could start any pod in any namespace. The policy matches requests made by the operator's ServiceAccount and
admits Jobs, ConfigMaps, ServiceAccounts, Roles and RoleBindings only when they are the children
`kube/builders.py` renders: labelled and controller-owned by the ExperimentMigration (or, for a report
ConfigMap, the CutoverPolicy) the label names, and, for a Job, the worker command under the migration's
worker account in a restricted pod. Everything else the operator writes (TrainJobs, TrainingRuntimes, v1
job status, its own kinds' status, events, leases) is not matched, so RBAC alone governs it.

`make crds` renders it into the kustomize base and the chart (api/resources.py).
"""

from __future__ import annotations

from typing import Any

from ferryman.api.experimentmigration import WORKER_SPEC_DIR
from ferryman.api.kinds import (
    CONFIG_MAP,
    CUTOVER_POLICY,
    EXPERIMENT_MIGRATION,
    GROUP,
    JOB,
    MIGRATION_LABEL,
    POLICY_LABEL,
    ROLE,
    ROLE_BINDING,
    SERVICE_ACCOUNT,
)

ADMISSION_API = "admissionregistration.k8s.io/v1"
WORKER_ACCOUNT_SUFFIX = "-worker"  # a migration's workers run as `<migration>-worker`, bound to that Role
WORKER_COMMAND = ("ferryman",)
WORKER_SPEC_FILE = f"{WORKER_SPEC_DIR}/migration.yaml"
# The worker's arguments before the object it reports to (`experimentmigration/<namespace>/<name>`).
WORKER_ARGS = ("migrate", "-f", WORKER_SPEC_FILE, "--shard-from-env", "--report-to")
WORKER_ROLE_VERBS = ("get", "patch")

CHILD_KINDS = (JOB, CONFIG_MAP, SERVICE_ACCOUNT, ROLE, ROLE_BINDING)


def worker_account(migration: str) -> str:
    """The ServiceAccount (and Role, RoleBinding) a migration's workers run as."""
    return f"{migration}{WORKER_ACCOUNT_SUFFIX}"


def worker_report_target(namespace: str, migration: str) -> str:
    """The last worker argument: the ExperimentMigration whose status the workers patch."""
    return f"{EXPERIMENT_MIGRATION.kind.lower()}/{namespace}/{migration}"


def operator_username(namespace: str, service_account: str) -> str:
    return f"system:serviceaccount:{namespace}:{service_account}"


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{value}'" for value in values) + "]"


POD = "object.spec.template.spec"  # a Job's pod, where `variables.jobWrite` holds


def _is(kind: Any) -> str:
    return f"(request.resource.group == '{kind.group}' && request.resource.resource == '{kind.plural}')"


# (name, CEL expression): the objects before and after a write, their ferryman labels and controller owner.
VARIABLES: tuple[tuple[str, str], ...] = (
    ("subject", "request.operation == 'DELETE' ? oldObject : object"),
    ("labels", "has(variables.subject.metadata.labels) ? variables.subject.metadata.labels : {}"),
    (
        "oldLabels",
        "oldObject == null ? {} : has(oldObject.metadata.labels) ? oldObject.metadata.labels : {}",
    ),
    ("migration", f"'{MIGRATION_LABEL}' in variables.labels ? variables.labels['{MIGRATION_LABEL}'] : ''"),
    ("policy", f"'{POLICY_LABEL}' in variables.labels ? variables.labels['{POLICY_LABEL}'] : ''"),
    ("reportMap", f"{_is(CONFIG_MAP)} && variables.policy != ''"),
    (
        "owners",
        "has(variables.subject.metadata.ownerReferences) ? variables.subject.metadata.ownerReferences : []",
    ),
    ("ownerKind", f"variables.reportMap ? '{CUTOVER_POLICY.kind}' : '{EXPERIMENT_MIGRATION.kind}'"),
    ("ownerName", "variables.reportMap ? variables.policy : variables.migration"),
    ("workerAccount", f"variables.migration + '{WORKER_ACCOUNT_SUFFIX}'"),
    ("jobWrite", f"{_is(JOB)} && request.operation != 'DELETE'"),
    (
        "containers",
        f"!variables.jobWrite ? [] : {POD}.containers"
        f" + (has({POD}.initContainers) ? {POD}.initContainers : [])",
    ),
)

# (CEL expression that must hold, message when it does not): one table, rendered into the policy.
VALIDATIONS: tuple[tuple[str, str], ...] = (
    (
        "variables.reportMap || variables.migration != ''",
        f"the operator writes only objects labelled {MIGRATION_LABEL} (a CutoverPolicy's report ConfigMap: "
        f"{POLICY_LABEL})",
    ),
    (
        f"oldObject == null || '{MIGRATION_LABEL}' in variables.oldLabels"
        f" || '{POLICY_LABEL}' in variables.oldLabels",
        "the operator changes or deletes only objects that already carry a ferryman.dev/ label",
    ),
    (
        "variables.owners.exists(r, r.apiVersion.startsWith('" + GROUP + "/') && has(r.controller)"
        " && r.controller && r.kind == variables.ownerKind && r.name == variables.ownerName)",
        f"the object must have a controller ownerReference to the {EXPERIMENT_MIGRATION.kind} its "
        f"{MIGRATION_LABEL} label names (a report ConfigMap: the {CUTOVER_POLICY.kind} of {POLICY_LABEL})",
    ),
    (
        f"!({_is(SERVICE_ACCOUNT)} || {_is(ROLE)} || {_is(ROLE_BINDING)})"
        " || variables.subject.metadata.name == variables.workerAccount",
        "a ServiceAccount, Role or RoleBinding of the operator is named "
        f"'<migration>{WORKER_ACCOUNT_SUFFIX}'",
    ),
    (
        f"!{_is(ROLE)} || object == null || object.rules.all(r, has(r.resourceNames)"
        f" && size(r.resourceNames) > 0 && r.verbs.all(v, v in {_cel_list(WORKER_ROLE_VERBS)}))",
        f"a worker Role grants only {' and '.join(WORKER_ROLE_VERBS)} on named objects",
    ),
    (
        f"!{_is(ROLE_BINDING)} || object == null || (object.roleRef.kind == '{ROLE.kind}'"
        " && object.roleRef.name == variables.workerAccount && size(object.subjects) == 1"
        f" && object.subjects[0].kind == '{SERVICE_ACCOUNT.kind}'"
        " && object.subjects[0].name == variables.workerAccount"
        " && object.subjects[0].namespace == request.namespace)",
        f"a worker RoleBinding binds only the '<migration>{WORKER_ACCOUNT_SUFFIX}' ServiceAccount to the "
        "Role of that name",
    ),
    (
        "!variables.jobWrite || (" + POD + ".serviceAccountName == variables.workerAccount"
        " && (!has(" + POD + ".serviceAccount) || " + POD + ".serviceAccount == variables.workerAccount))",
        f"a worker Job runs as its migration's '<migration>{WORKER_ACCOUNT_SUFFIX}' ServiceAccount",
    ),
    (
        "!variables.jobWrite || (size(variables.containers) == 1 && variables.containers.all(c,"
        f" has(c.command) && c.command == {_cel_list(WORKER_COMMAND)} && has(c.args) && c.args =="
        f" {_cel_list(WORKER_ARGS)} + ['{EXPERIMENT_MIGRATION.kind.lower()}/' + request.namespace + '/'"
        " + variables.migration]))",
        "a worker Job runs exactly one container, `ferryman migrate` of its migration's spec",
    ),
    (
        "!variables.jobWrite || (has(" + POD + ".securityContext)"
        " && has(" + POD + ".securityContext.runAsNonRoot) && " + POD + ".securityContext.runAsNonRoot"
        " && variables.containers.all(c, has(c.securityContext)"
        " && has(c.securityContext.allowPrivilegeEscalation) && !c.securityContext.allowPrivilegeEscalation"
        " && (!has(c.securityContext.privileged) || !c.securityContext.privileged)"
        " && (!has(c.securityContext.runAsNonRoot) || c.securityContext.runAsNonRoot)"
        " && has(c.securityContext.capabilities) && has(c.securityContext.capabilities.drop)"
        " && 'ALL' in c.securityContext.capabilities.drop && !has(c.securityContext.capabilities.add)))",
        "a worker pod is restricted: runAsNonRoot, no privilege escalation, capabilities drop ALL",
    ),
    (
        "!variables.jobWrite || (!(has(" + POD + ".hostNetwork) && " + POD + ".hostNetwork)"
        " && !(has(" + POD + ".hostPID) && " + POD + ".hostPID)"
        " && !(has(" + POD + ".hostIPC) && " + POD + ".hostIPC)"
        " && !has(" + POD + ".ephemeralContainers)"
        " && (!has(" + POD + ".volumes) || " + POD + ".volumes.all(v, !has(v.hostPath))))",
        "a worker pod uses no host network, PID or IPC namespace and mounts no hostPath",
    ),
)


def admission_policy(name: str, username: str) -> list[dict[str, Any]]:
    """The ValidatingAdmissionPolicy `name` for requests of `username`, and its binding (deny on failure)."""
    rules = [
        {
            "apiGroups": [group],
            "apiVersions": ["*"],
            "resources": sorted(kind.plural for kind in CHILD_KINDS if kind.group == group),
            "operations": ["CREATE", "UPDATE", "DELETE"],
        }
        for group in dict.fromkeys(kind.group for kind in CHILD_KINDS)
    ]
    policy = {
        "apiVersion": ADMISSION_API,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": rules},
            "matchConditions": [
                {"name": "operator-account", "expression": f"request.userInfo.username == '{username}'"}
            ],
            "variables": [{"name": key, "expression": expression} for key, expression in VARIABLES],
            "validations": [
                {"expression": expression, "message": f"ferryman operator: {message}", "reason": "Forbidden"}
                for expression, message in VALIDATIONS
            ],
        },
    }
    binding = {
        "apiVersion": ADMISSION_API,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }
    return [policy, binding]
