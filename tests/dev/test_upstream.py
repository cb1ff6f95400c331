"""The pinned upstream manifests resolve through the Go module proxy and carry each flavour's API."""

import pytest

from ferryman.api.trainer import TrainerAPI
from ferryman_dev import upstream


def spec_fields(trainer_api: TrainerAPI) -> set[str]:
    (version,) = upstream.trainjob_crd(trainer_api)["spec"]["versions"]
    return set(version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])


@pytest.mark.parametrize(
    ("trainer_api", "override_field"),
    [
        (TrainerAPI.V2_0, "podSpecOverrides"),
        (TrainerAPI.V2_1, "podTemplateOverrides"),
        (TrainerAPI.V2_2, "runtimePatches"),
    ],
)
def test_each_flavour_has_its_override_field(trainer_api: TrainerAPI, override_field: str) -> None:
    fields = spec_fields(trainer_api)
    assert override_field in fields
    assert {"runtimeRef", "trainer"} <= fields


def test_upstream_crds_are_crds() -> None:
    names = []
    for path in upstream.upstream_crds():
        (doc,) = upstream.load_documents(path)
        assert doc["kind"] == "CustomResourceDefinition"
        names.append(doc["metadata"]["name"])
    assert names == [
        "trainjobs.trainer.kubeflow.org",
        "trainingruntimes.trainer.kubeflow.org",
        "clustertrainingruntimes.trainer.kubeflow.org",
        "pytorchjobs.kubeflow.org",
        "jobsets.jobset.x-k8s.io",
    ]


def test_default_runtimes_include_torch_distributed() -> None:
    runtimes = upstream.default_runtimes()
    assert {r["kind"] for r in runtimes} == {"ClusterTrainingRuntime"}
    assert "torch-distributed" in {r["metadata"]["name"] for r in runtimes}


def test_pytorchjob_examples_come_from_the_training_operator_module() -> None:
    examples = upstream.pytorchjob_examples()
    assert len(examples) >= 5
    for path, job in examples:
        assert f"training-operator@{upstream.TRAINING_OPERATOR_VERSION}" in str(path)
        assert job["apiVersion"] == "kubeflow.org/v1"
        assert (
            "Master" in job["spec"]["pytorchReplicaSpecs"] or "Worker" in job["spec"]["pytorchReplicaSpecs"]
        )


def test_a_missing_version_is_a_clear_error() -> None:
    with pytest.raises(upstream.UpstreamUnavailable, match=r"trainer/v2@v2\.99\.0"):
        upstream.module_dir(upstream.TRAINER_MODULE, "v2.99.0")
