"""The Helm chart (`deploy/helm/ferryman`) and the kustomize base and overlays, rendered by the real tools
(helm built by `make cluster-bins`, kubectl's kustomize) and checked by the real apiserver.

The chart and the base describe one install: with the release named `ferryman` in `ferryman-system` the chart
renders the base's CRDs, ClusterRole rules and operator pod spec exactly.
"""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import pytest
import yaml

from ferryman.api.admission import operator_username
from ferryman_dev.cluster import ControlPlane, binary, repo_root
from ferryman_dev.operator import OPERATOR_NAMESPACE, install_ferryman, rendered_base

ROOT = repo_root()
CHART = ROOT / "deploy" / "helm" / "ferryman"
OVERLAYS = sorted(
    p.parent.name for p in (ROOT / "deploy" / "kustomize" / "overlays").glob("*/kustomization.yaml")
)
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}

# Value overrides a platform team makes: a mirrored image, a separate worker image, bigger resources,
# placement, slower re-sync and fewer Events.
OVERRIDES: dict[str, Any] = {
    "image": {"repository": "registry.example.com/ml/ferryman", "tag": "0.1.0-rc1", "pullPolicy": "Always"},
    "workerImage": "registry.example.com/ml/ferryman-worker:0.1.0-rc1",
    "resyncSeconds": 30,
    "eventLevel": "WARNING",
    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
    "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
    "tolerations": [
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}
    ],
}


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Helm's cache, config and data directories in a temporary directory, never the user's."""
    home = tmp_path_factory.mktemp("helm")
    return {f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}


def helm(helm_home: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": helm_home["HELM_DATA_HOME"], **helm_home}
    return subprocess.run(
        [str(binary("helm")), *args], env=env, input=stdin, capture_output=True, text=True, check=False
    )


def render_chart(
    helm_home: dict[str, str],
    values: dict[str, Any] | None = None,
    release: str = "ferryman",
    namespace: str = OPERATOR_NAMESPACE,
) -> list[dict[str, Any]]:
    """`helm template --include-crds`, with ``values`` given as a values file on stdin."""
    result = helm(
        helm_home,
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--include-crds",
        "--values",
        "-",
        stdin=json.dumps(values or {}),
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [document] = [d for d in documents if d["kind"] == kind]
    return document


def kubectl(plane: ControlPlane, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", f"--kubeconfig={plane.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def dry_run_apply(plane: ControlPlane, documents: list[dict[str, Any]]) -> str:
    """Server-side apply with dry-run=server: every admission check runs, nothing is stored. Returns stderr
    (where kubectl prints the apiserver's warnings, e.g. PodSecurity `warn`)."""
    result = kubectl(
        plane,
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "--field-manager=ferryman-test",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(documents),
    )
    assert result.returncode == 0, result.stderr
    applied = result.stdout.count("serverside-applied")
    assert applied == len(documents), result.stdout
    return result.stderr


def admit_operator_pod(kube: Any, deployment: dict[str, Any], namespace: str) -> None:
    """A Pod made from the Deployment's template is admitted (dry-run) in ``namespace``."""
    from lightkube import codecs

    template = copy.deepcopy(deployment["spec"]["template"])
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator-admission", "namespace": namespace, **template["metadata"]},
        "spec": template["spec"],
    }
    kube.create(codecs.from_dict(pod), dry_run=True)


@pytest.fixture
def restricted_namespace(namespace: str, kube: Any) -> str:
    """The per-test namespace, enforcing (and warning about) PodSecurity `restricted`."""
    from lightkube.resources.core_v1 import Namespace

    kube.patch(Namespace, namespace, {"metadata": {"labels": RESTRICTED}})
    return namespace


def test_chart_lints(helm_home: dict[str, str]) -> None:
    for values in ({}, OVERRIDES):
        result = helm(helm_home, "lint", "--strict", str(CHART), "--values", "-", stdin=json.dumps(values))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_helm_is_the_pinned_version(helm_home: dict[str, str]) -> None:
    from ferryman_dev.cluster import pinned_version

    result = helm(helm_home, "version", "--template", "{{ .Version }}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == pinned_version("helm")


def test_default_chart_renders_the_kustomize_base(helm_home: dict[str, str]) -> None:
    """Release `ferryman` in `ferryman-system`: the base's CRDs, ClusterRole rules and operator pod spec."""
    chart = render_chart(helm_home)
    base = rendered_base()
    crds = [d for d in chart if d["kind"] == "CustomResourceDefinition"]
    assert crds == [d for d in base if d["kind"] == "CustomResourceDefinition"]
    assert only(chart, "ClusterRole")["rules"] == only(base, "ClusterRole")["rules"]
    for kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
        assert only(chart, kind) == only(base, kind)
    chart_pod = only(chart, "Deployment")["spec"]["template"]["spec"]
    # a chart value; the base leaves it to the apiserver, whose default for a tagged image is the same
    assert chart_pod["containers"][0].pop("imagePullPolicy") == "IfNotPresent"
    # a chart value (workerImage, else its image); the base's operator reads its own pod's image instead
    env = chart_pod["containers"][0]["env"]
    assert {"name": "FERRYMAN_IMAGE", "value": "localhost/ferryman:0.1.0"} in env
    chart_pod["containers"][0]["env"] = [e for e in env if e["name"] != "FERRYMAN_IMAGE"]
    assert chart_pod == only(base, "Deployment")["spec"]["template"]["spec"]
    # the base's Role and RoleBinding let its operator read its own pod's image; the chart names the image
    assert {d["kind"] for d in chart} == {d["kind"] for d in base} - {"Namespace", "Role", "RoleBinding"}


@pytest.mark.parametrize("source", ["chart", "base"])
def test_two_replicas_elect_a_leader_under_a_disruption_budget_with_readiness_apart_from_liveness(
    helm_home: dict[str, str], source: str
) -> None:
    """High availability as installed (issue #17): two replicas electing a leader on a Lease (each its own
    identity, RBAC to keep the Lease), a PodDisruptionBudget keeping one of them up, and a readiness probe on
    the operator's --readiness endpoint, apart from the liveness probe on --liveness."""
    documents = render_chart(helm_home) if source == "chart" else rendered_base()
    deployment = only(documents, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    template = deployment["spec"]["template"]
    [container] = template["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["FERRYMAN_LEASE"]["value"]
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    lease_rules = [r for r in only(documents, "ClusterRole")["rules"] if "leases" in r["resources"]]
    assert lease_rules and {"get", "create", "update"} <= set(lease_rules[0]["verbs"])
    budget = only(documents, "PodDisruptionBudget")["spec"]
    assert budget["minAvailable"] == 1
    assert budget["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert budget["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    served = {arg.split("=")[0]: arg.split("=")[1] for arg in container["args"] if arg.startswith("--")}
    for probe, flag in (("livenessProbe", "--liveness"), ("readinessProbe", "--readiness")):
        get = container[probe]["httpGet"]
        assert served[flag] == f"http://0.0.0.0:{ports[get['port']]}{get['path']}", probe
    assert container["readinessProbe"]["httpGet"] != container["livenessProbe"]["httpGet"]


def test_metrics_service_and_service_monitor(helm_home: dict[str, str]) -> None:
    """The /metrics port (a value) reaches the operator's args, its container port and the Service; the
    ServiceMonitor is rendered only when enabled, and selects that Service's port."""
    assert not [d for d in render_chart(helm_home) if d["kind"] == "ServiceMonitor"]
    values = {"metrics": {"port": 9100, "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}}
    chart = render_chart(helm_home, values)
    [container] = only(chart, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "--metrics=http://0.0.0.0:9100/metrics" in container["args"]
    assert {"name": "metrics", "containerPort": 9100} in container["ports"]
    service = only(chart, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9100, "targetPort": "metrics"}]
    monitor = only(chart, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]


def test_chart_rbac_binds_the_operators_account(helm_home: dict[str, str]) -> None:
    """Any release name and namespace: the operator runs as the account its ClusterRole is bound to."""
    chart = render_chart(helm_home, release="ml-ferryman", namespace="platform")
    account = only(chart, "ServiceAccount")["metadata"]
    binding = only(chart, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == only(chart, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": "platform"}
    ]
    policy = only(chart, "ValidatingAdmissionPolicy")
    (condition,) = policy["spec"]["matchConditions"]
    assert f"'system:serviceaccount:platform:{account['name']}'" in condition["expression"]
    assert only(chart, "ValidatingAdmissionPolicyBinding")["spec"]["policyName"] == policy["metadata"]["name"]
    deployment = only(chart, "Deployment")
    assert deployment["metadata"]["namespace"] == account["namespace"] == "platform"
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["name"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_value_overrides_reach_the_operator(helm_home: dict[str, str]) -> None:
    pod = only(render_chart(helm_home, OVERRIDES), "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "registry.example.com/ml/ferryman:0.1.0-rc1"
    assert container["imagePullPolicy"] == "Always"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FERRYMAN_IMAGE"] == OVERRIDES["workerImage"]
    assert env["FERRYMAN_RESYNC_SECONDS"] == "30"
    assert env["FERRYMAN_EVENT_LEVEL"] == "WARNING"
    assert container["resources"] == OVERRIDES["resources"]
    assert pod["nodeSelector"] == OVERRIDES["nodeSelector"]
    assert pod["tolerations"] == OVERRIDES["tolerations"]
    # the workers run the operator's image unless told otherwise
    only_image = {"image": {"repository": "registry.example.com/ml/ferryman", "tag": "0.2.0"}}
    [container] = only(render_chart(helm_home, only_image), "Deployment")["spec"]["template"]["spec"][
        "containers"
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"] == env["FERRYMAN_IMAGE"] == "registry.example.com/ml/ferryman:0.2.0"


@pytest.mark.parametrize("values", [{}, OVERRIDES], ids=["defaults", "overrides"])
def test_chart_applies_under_pod_security_restricted(
    helm_home: dict[str, str],
    values: dict[str, Any],
    cluster: ControlPlane,
    kube: Any,
    restricted_namespace: str,
) -> None:
    """Every rendered object passes the apiserver's validation and admission (dry-run), in a namespace that
    enforces `restricted`: no PodSecurity warning for the Deployment, and its pod is admitted."""
    from lightkube import codecs

    documents = render_chart(
        helm_home, values, release=f"f-{restricted_namespace[-6:]}", namespace=restricted_namespace
    )
    warnings = dry_run_apply(cluster, documents)
    assert "PodSecurity" not in warnings
    # the pod needs its ServiceAccount to exist (the namespace goes at the end of the test)
    kube.apply(codecs.from_dict(only(documents, "ServiceAccount")), field_manager="ferryman-test")
    admit_operator_pod(kube, only(documents, "Deployment"), restricted_namespace)


@pytest.fixture(scope="module")
def ferryman_base(cluster: ControlPlane) -> ControlPlane:
    """The base installed (CRDs, namespace, RBAC), as the other operator tests have it."""
    install_ferryman(cluster)
    return cluster


KUSTOMIZATIONS = ["base", *(f"overlays/{name}" for name in OVERLAYS)]


def render_kustomization(target: str) -> list[dict[str, Any]]:
    """`kubectl kustomize` of the base or an overlay (``target``: "base", "overlays/dev")."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "deploy" / "kustomize" / target)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("target", KUSTOMIZATIONS)
def test_each_kustomization_grants_and_restricts_the_account_it_deploys(target: str) -> None:
    """Wherever an overlay puts the operator, its RBAC bindings grant the operator's own ServiceAccount and
    the admission policy restricts that account (`namespace:` moves objects, not the names inside them)."""
    documents = render_kustomization(target)
    account = only(documents, "ServiceAccount")["metadata"]
    namespace = only(documents, "Namespace")["metadata"]["name"]
    deployment = only(documents, "Deployment")
    assert account["namespace"] == deployment["metadata"]["namespace"] == namespace
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["name"]
    (condition,) = only(documents, "ValidatingAdmissionPolicy")["spec"]["matchConditions"]
    assert condition["expression"] == (
        f"request.userInfo.username == '{operator_username(namespace, account['name'])}'"
    )
    bindings = [d for d in documents if d["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert bindings and all(
        subject == {"kind": "ServiceAccount", "name": account["name"], "namespace": namespace}
        for binding in bindings
        for subject in binding["subjects"]
    )
    if target == "overlays/own-namespace":
        assert namespace != OPERATOR_NAMESPACE


@pytest.mark.parametrize("target", KUSTOMIZATIONS)
def test_kustomization_applies(target: str, ferryman_base: ControlPlane, kube: Any) -> None:
    """`kubectl kustomize` of the base and of each overlay renders, and applies (dry-run) with no PodSecurity
    warning in its `restricted` namespace; the overlay's operator pod is admitted there. An overlay that moves
    the operator gets its namespace and ServiceAccount created first, as a real apply creates them before the
    operator's pod."""
    from lightkube import codecs

    documents = render_kustomization(target)
    namespace = only(documents, "Namespace")
    assert namespace["metadata"]["labels"].items() >= RESTRICTED.items()
    if namespace["metadata"]["name"] != OPERATOR_NAMESPACE:
        for document in (namespace, only(documents, "ServiceAccount")):
            kube.apply(codecs.from_dict(document), field_manager="ferryman-test")
    warnings = dry_run_apply(ferryman_base, documents)
    assert "PodSecurity" not in warnings
    admit_operator_pod(kube, only(documents, "Deployment"), namespace["metadata"]["name"])
