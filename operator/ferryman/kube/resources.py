"""lightkube resource classes for the custom resources ferryman reads and writes."""

from __future__ import annotations

from lightkube.generic_resource import create_global_resource, create_namespaced_resource

from ferryman.api.crd import GROUP, VERSION

PyTorchJob = create_namespaced_resource("kubeflow.org", "v1", "PyTorchJob", "pytorchjobs")
TrainJob = create_namespaced_resource("trainer.kubeflow.org", "v1alpha1", "TrainJob", "trainjobs")
JobSet = create_namespaced_resource("jobset.x-k8s.io", "v1alpha2", "JobSet", "jobsets")
ClusterTrainingRuntime = create_global_resource(
    "trainer.kubeflow.org", "v1alpha1", "ClusterTrainingRuntime", "clustertrainingruntimes"
)
TrainingRuntime = create_namespaced_resource(
    "trainer.kubeflow.org", "v1alpha1", "TrainingRuntime", "trainingruntimes"
)
CutoverPolicy = create_global_resource(GROUP, VERSION, "CutoverPolicy", "cutoverpolicies")
ExperimentMigration = create_namespaced_resource(
    GROUP, VERSION, "ExperimentMigration", "experimentmigrations"
)
