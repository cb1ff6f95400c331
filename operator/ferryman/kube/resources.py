"""lightkube resource classes for the custom resources ferryman reads and writes (kinds from `api.kinds`)."""

from __future__ import annotations

from typing import Any

from lightkube.generic_resource import create_global_resource, create_namespaced_resource

from ferryman.api import kinds
from ferryman.convert.registry import JOB_KINDS


def _names(kind: kinds.Kind) -> tuple[str, str, str, str]:
    return kind.group, kind.version, kind.kind, kind.plural


_V1_JOBS = {
    (kind.api_version, kind.kind): create_namespaced_resource(*_names(kind))
    for row in JOB_KINDS.values()
    for kind in (row.kind, *row.also)
}
PyTorchJob = _V1_JOBS[(kinds.PYTORCHJOB.api_version, kinds.PYTORCHJOB.kind)]
TrainJob = create_namespaced_resource(*_names(kinds.TRAINJOB))
TrainingRuntime = create_namespaced_resource(*_names(kinds.TRAINING_RUNTIME))
ClusterTrainingRuntime = create_global_resource(*_names(kinds.CLUSTER_TRAINING_RUNTIME))
JobSet = create_namespaced_resource(*_names(kinds.JOBSET))
CutoverPolicy = create_global_resource(*_names(kinds.CUTOVER_POLICY))
ExperimentMigration = create_namespaced_resource(*_names(kinds.EXPERIMENT_MIGRATION))


def v1_job_resource(api_version: str, kind: str) -> type[Any]:
    """The resource class of a v1 job kind in the version the cluster serves it."""
    return _V1_JOBS[(api_version, kind)]
