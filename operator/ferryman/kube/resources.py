"""lightkube resource classes for the custom resources ferryman reads and writes (kinds from `api.kinds`)."""

from __future__ import annotations

from lightkube.generic_resource import create_global_resource, create_namespaced_resource

from ferryman.api import kinds


def _names(kind: kinds.Kind) -> tuple[str, str, str, str]:
    return kind.group, kind.version, kind.kind, kind.plural


PyTorchJob = create_namespaced_resource(*_names(kinds.PYTORCHJOB))
TrainJob = create_namespaced_resource(*_names(kinds.TRAINJOB))
TrainingRuntime = create_namespaced_resource(*_names(kinds.TRAINING_RUNTIME))
JobSet = create_namespaced_resource(*_names(kinds.JOBSET))
CutoverPolicy = create_global_resource(*_names(kinds.CUTOVER_POLICY))
ExperimentMigration = create_namespaced_resource(*_names(kinds.EXPERIMENT_MIGRATION))
