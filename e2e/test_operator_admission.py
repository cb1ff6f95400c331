"""The operator's admission policy on the real apiserver (issue #14, item 9): with the operator's own token,
the children `kube/builders.py` renders are admitted (created, patched, deleted), and a Job or RBAC object a
thief would make with that token is denied with the policy's message, though RBAC alone would allow it.

The operator tests (test_operator_migration.py, test_operator_cutover.py) install the same policy with the
base and fail on any refusal, so the operator's real writes pass it too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from lightkube import ApiError, Client, codecs
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import ConfigMap
from lightkube.types import PatchType

from ferryman.api.admission import VALIDATIONS
from ferryman.api.kinds import MIGRATION_LABEL
from ferryman.kube.builders import (
    MigrationWorkload,
    build_config_map,
    build_migration_job,
    build_worker_rbac,
    migration_children,
)
from ferryman.kube.resources import ExperimentMigration
from ferryman_dev.cluster import ControlPlane
from ferryman_dev.operator import OPERATOR_ACCOUNT, OPERATOR_NAMESPACE, install_ferryman
from ferryman_dev.waiting import wait_for

pytestmark = pytest.mark.cluster

MIGRATION = "admitted"


def message(fragment: str) -> str:
    """The policy's message containing `fragment` (so a test names a rule, not a copy of its text)."""
    (found,) = [text for _, text in VALIDATIONS if fragment in text]
    return found


def refusal(client: Client, body: dict[str, Any]) -> str | None:
    """The apiserver's refusal of creating `body` (dry run, nothing stored), or None when admitted."""
    try:
        client.create(codecs.from_dict(body), dry_run=True)
    except ApiError as error:
        assert error.status.code == 403, error.status
        return str(error.status.message)
    return None


@pytest.fixture
def operator_client(cluster: ControlPlane, namespace: str) -> Client:
    """A client holding the operator's ServiceAccount token, once the policy is enforced."""
    install_ferryman(cluster)
    token = cluster.mint_token(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)
    client = cluster.token_client(token, namespace)
    unlabelled = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}}
    wait_for(lambda: refusal(client, unlabelled), "the admission policy to be enforced", timeout=30)
    return client


def test_the_operators_token_writes_only_ferrymans_children(
    operator_client: Client, kube: Client, namespace: str
) -> None:
    kube.create(
        codecs.from_dict(
            {
                "apiVersion": "ferryman.dev/v1alpha1",
                "kind": "ExperimentMigration",
                "metadata": {"name": MIGRATION, "namespace": namespace},
                "spec": {
                    "source": {
                        "uri": "tensorboard:/logs",
                        "volumes": [{"mountPath": "/logs", "volume": {"emptyDir": {}}}],
                    },
                    "destination": {"uri": "http://mlflow:5000"},
                },
            }
        )
    )
    migration = kube.get(ExperimentMigration, MIGRATION, namespace=namespace).to_dict()
    names = migration_children(MIGRATION)
    job = build_migration_job(
        MigrationWorkload(
            migration=migration,
            job_name=f"{MIGRATION}-1",
            image="ferryman:test",
            shards=2,
            spec_config_map=names["spec"],
            service_account=names["account"],
        )
    )
    job["spec"]["suspend"] = True
    children = [
        *build_worker_rbac(migration),
        build_config_map(
            names["spec"], namespace, {"migration.yaml": "{}"}, migration, {MIGRATION_LABEL: MIGRATION}
        ),
        job,
    ]

    def hostile(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        body = copy.deepcopy(job)
        body["metadata"]["name"] = "hostile"
        change(body)
        return body

    pod = lambda body: body["spec"]["template"]["spec"]  # noqa: E731
    container = lambda body: pod(body)["containers"][0]  # noqa: E731
    denied = {
        "another ServiceAccount": (
            hostile(lambda b: pod(b).update(serviceAccountName="default")),
            message("runs as its"),
        ),
        "privileged": (
            hostile(lambda b: container(b).update(securityContext={"privileged": True})),
            message("restricted"),
        ),
        "privilege escalation": (
            hostile(lambda b: container(b)["securityContext"].update(allowPrivilegeEscalation=True)),
            message("restricted"),
        ),
        "another command": (
            hostile(lambda b: container(b).update(command=["sh", "-c", "cat /var/run/secrets/*"])),
            message("exactly one container"),
        ),
        "a second container": (
            hostile(lambda b: pod(b)["containers"].append({**container(b), "name": "sidecar"})),
            message("exactly one container"),
        ),
        "no owner": (hostile(lambda b: b["metadata"].pop("ownerReferences")), message("ownerReference")),
        "a hostPath": (
            hostile(lambda b: pod(b)["volumes"].append({"name": "root", "hostPath": {"path": "/"}})),
            message("hostPath"),
        ),
        "the host network": (hostile(lambda b: pod(b).update(hostNetwork=True)), message("hostPath")),
        "no migration label": (
            hostile(lambda b: b["metadata"]["labels"].pop("ferryman.dev/experimentmigration")),
            message("only objects labelled"),
        ),
        "a binding of another account": (
            {
                **children[2],
                "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
            },
            message("binds only"),
        ),
        "a Role granting more": (
            {
                **children[1],
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create"]}],
            },
            message("grants only"),
        ),
    }
    # The workers' ServiceAccount and Role first: a RoleBinding is checked against the Role it binds.
    for child in children[:2]:
        operator_client.create(codecs.from_dict(child))
    for case, (body, expected) in denied.items():
        refused = refusal(operator_client, body)
        assert refused is not None, f"{case}: admitted"
        assert expected in refused, f"{case}: {refused}"

    # The other real children: created, the Job patched and deleted, the spec map replaced.
    for child in children[2:]:
        operator_client.create(codecs.from_dict(child))
    suspend = {"spec": {"suspend": True}}  # as the operator (un)suspends; running pods would slow teardown
    operator_client.patch(Job, job["metadata"]["name"], suspend, patch_type=PatchType.MERGE)
    operator_client.replace(codecs.from_dict({**children[3], "data": {"migration.yaml": "{a: 1}"}}))
    operator_client.delete(Job, job["metadata"]["name"])

    # A foreign ConfigMap cannot be taken over by labelling it, nor a foreign Job deleted.
    foreign_map = ConfigMap.from_dict({"metadata": {"name": "foreign"}, "data": {"a": "b"}})
    kube.create(foreign_map, namespace=namespace)
    takeover = {**children[3], "metadata": {**children[3]["metadata"], "name": "foreign"}}
    with pytest.raises(ApiError, match="denied request: ferryman operator"):
        operator_client.replace(codecs.from_dict(takeover))
    foreign_job = hostile(lambda b: b["metadata"].update(name="foreign", labels={}, ownerReferences=[]))
    kube.create(codecs.from_dict(foreign_job))
    with pytest.raises(ApiError, match="denied request: ferryman operator"):
        operator_client.delete(Job, "foreign")
    assert kube.get(ConfigMap, "foreign", namespace=namespace).data == {"a": "b"}
