"""How the harness runs the upstream controllers, without starting any: manifests, certificates, state."""

from __future__ import annotations

import datetime
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from ferryman.api.trainer import TrainerAPI
from ferryman_dev import cluster, controllers, upstream
from ferryman_dev.cluster import ClusterSpec, ControlPlane, Process
from ferryman_dev.pki import rotator_certificates


def test_the_manifest_versions_are_the_built_versions() -> None:
    """The CRDs and manifests the harness installs come from the releases build.sh compiles."""
    assert upstream.TRAINER_VERSIONS[TrainerAPI.V2_2] == cluster.pinned_version("trainer")
    assert cluster.pinned_version("jobset") == upstream.JOBSET_VERSION
    assert cluster.pinned_version("training-operator") == upstream.TRAINING_OPERATOR_VERSION
    for controller in controllers.CONTROLLERS.values():
        assert controller.module_dir().name.endswith("@" + cluster.pinned_version(controller.name))


@pytest.mark.parametrize("name", [n for n, c in controllers.CONTROLLERS.items() if c.webhooks], ids=str)
def test_upstream_webhooks_call_the_local_server_with_the_harness_ca(name: str) -> None:
    controller = controllers.CONTROLLERS[name]
    assert controller.webhooks is not None
    docs = upstream.kustomize(controller.module_dir() / controller.webhooks)
    configurations = controllers.local_webhooks(docs, 9443, "Q0E=")
    assert configurations
    for configuration in configurations:
        for webhook in configuration["webhooks"]:
            client = webhook["clientConfig"]
            assert set(client) == {"url", "caBundle"}
            assert client["url"].startswith("https://127.0.0.1:9443/")
            assert client["caBundle"] == "Q0E="


def test_trainer_webhooks_are_kustomized_as_its_manifests_install_them() -> None:
    trainer = controllers.CONTROLLERS["trainer"]
    docs = upstream.kustomize(trainer.module_dir() / "manifests/base/webhook")
    names = {doc["kind"]: doc["metadata"]["name"] for doc in docs}
    assert names == {
        "MutatingWebhookConfiguration": "defaulter.trainer.kubeflow.org",
        "ValidatingWebhookConfiguration": "validator.trainer.kubeflow.org",
    }
    (validating,) = [doc for doc in docs if doc["kind"] == "ValidatingWebhookConfiguration"]
    selectors = [w.get("objectSelector") for w in validating["webhooks"]]
    assert selectors[0]["matchExpressions"][0]["key"] == "trainer.kubeflow.org/webhook-validation"


def test_kustomize_applies_json_patches_to_their_targets_only(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": ["objects.yaml"],
                "patches": [{"path": "patch.yaml", "target": {"kind": "ConfigMap", "name": "a"}}],
            }
        )
    )
    (tmp_path / "objects.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: '1', y: '2'}\nlist: [1, 2]\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: {x: '1'}\n"
    )
    (tmp_path / "patch.yaml").write_text(
        yaml.safe_dump(
            [
                {"op": "replace", "path": "/data/x", "value": "one"},
                {"op": "remove", "path": "/data/y"},
                {"op": "add", "path": "/list/1", "value": 9},
                {"op": "add", "path": "/list/-", "value": 3},
                {"op": "add", "path": "/metadata/labels", "value": {"a~b/c": "d"}},
            ]
        )
    )
    a, b = upstream.kustomize(tmp_path)
    assert a["data"] == {"x": "one"}
    assert a["list"] == [1, 9, 2, 3]
    assert a["metadata"]["labels"] == {"a~b/c": "d"}
    assert b["data"] == {"x": "1"}

    inline = tmp_path / "inline"  # manifests are parsed once per path and process
    inline.mkdir()
    (inline / "kustomization.yaml").write_text(yaml.safe_dump({"resources": [], "patches": [{"patch": "x"}]}))
    with pytest.raises(upstream.UpstreamUnavailable, match="unsupported patch"):
        upstream.kustomize(inline)


def test_rotator_certificates_pass_cert_controllers_checks() -> None:
    """cert-controller keeps a Secret whose CA verifies for its own name and whose key is PKCS#1 RSA."""
    data = rotator_certificates("training-operator-ca", "training-operator.kubeflow.svc")
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    leaf = x509.load_pem_x509_certificate(data["tls.crt"])
    assert data["ca.key"].startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    ca.verify_directly_issued_by(ca)
    leaf.verify_directly_issued_by(ca)
    ca_names = ca.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ca_names.get_values_for_type(x509.DNSName) == ["training-operator-ca"]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["training-operator.kubeflow.svc"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    lookahead = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=91)
    assert ca.not_valid_after_utc > lookahead and leaf.not_valid_after_utc > lookahead


def test_each_controller_serves_the_crds_of_its_release() -> None:
    def names(name: str, **options: bool) -> set[str]:
        return {crd["metadata"]["name"] for crd in controllers.crds(name, **options)}

    assert "mpijobs.kubeflow.org" not in names("training-operator")  # mpi-operator serves them beside it
    assert "pytorchjobs.kubeflow.org" in names("training-operator")
    assert "mpijobs.kubeflow.org" in names("training-operator", mpijob_v1=True)
    (mpijobs,) = controllers.crds("mpi-operator")
    assert [v["name"] for v in mpijobs["spec"]["versions"]] == ["v2beta1"]
    converted = {crd["metadata"]["name"] for crd in controllers.crds("kueue") if "conversion" in crd["spec"]}
    assert "workloads.kueue.x-k8s.io" in converted  # as Kueue's manifests install them


def test_kueue_webhooks_keep_the_namespace_selectors_its_manifests_patch_in() -> None:
    kueue = controllers.CONTROLLERS["kueue"]
    docs = upstream.kustomize(kueue.module_dir() / "config/components/webhook")
    (mutating,) = [doc for doc in docs if doc["kind"] == "MutatingWebhookConfiguration"]
    (pods,) = [w for w in mutating["webhooks"] if w["name"] == "mpod.kb.io"]
    assert pods["namespaceSelector"]["matchExpressions"][0]["values"] == ["kube-system", "kueue-system"]
    assert pods["clientConfig"]["service"]["path"] == "/mutate--v1-pod"  # the rest of the webhook is kept


def test_crds_are_waited_for_through_a_null_conditions_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CRD just created can have ``status.conditions: null`` (or no status) before it is Established."""
    plane = ControlPlane(tmp_path)
    answers: list[dict[str, Any]] = [
        {},
        {"status": None},
        {"status": {"conditions": None}},
        {"status": {"conditions": [{"type": "Established", "status": "True"}]}},
    ]

    def request(method: str, path: str, body: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
        if path == "/apis/apiextensions.k8s.io/v1":  # discovery
            kind = {"kind": "CustomResourceDefinition", "name": "customresourcedefinitions"}
            return {"resources": [{**kind, "namespaced": False}]}
        if method == "PATCH":
            return {"metadata": {"name": path.rsplit("/", 1)[1].split("?")[0]}}
        return answers.pop(0)

    monkeypatch.setattr(plane, "_request", request)
    assert plane.install_crds([upstream.jobset_crd()]) == ["jobsets.jobset.x-k8s.io"]
    assert answers == []


def test_the_state_file_remembers_how_to_start_each_component_again(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path, ClusterSpec())
    plane.processes = [
        Process(
            "trainer",
            1,
            2,
            tmp_path / "trainer.log",
            ["/bin/trainer", "--config=x"],
            {"TMPDIR": "/t"},
            "http://r",
        )
    ]
    plane.save()
    assert json.loads(plane.state_file.read_text())["complete"] is False
    loaded = ControlPlane.load(tmp_path)
    assert loaded.processes == plane.processes
    assert not loaded.running()  # never completely started
    with pytest.raises(cluster.ClusterError, match="no component 'etcd'"):
        loaded.process("etcd")
