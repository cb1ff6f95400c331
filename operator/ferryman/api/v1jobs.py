"""Typed views of the Training Operator v1 kinds besides PyTorchJob (``kubeflow.org/v1``, operator v1.9).

They share the PyTorchJob's run policy, replica spec and pod views (``api/pytorchjob.py``); each names its
map of replica specs and the container and port the v1 operator reads.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ferryman.api.pytorchjob import ReplicaSpec, RunPolicy, _View, replica

JAX_CONTAINER = "jax"  # the v1 operator reads the coordinator port from this container
JAX_PORT_NAME = "jaxjob-port"
JAX_DEFAULT_PORT = 6666
XGBOOST_CONTAINER = "xgboost"
XGBOOST_PORT_NAME = "xgboostjob-port"
XGBOOST_DEFAULT_PORT = 9999
TF_CONTAINER = "tensorflow"
TF_PORT_NAME = "tfjob-port"
TF_DEFAULT_PORT = 2222
PADDLE_CONTAINER = "paddle"
PADDLE_PORT_NAME = "master"
PADDLE_DEFAULT_PORT = 36543


class _V1Job(_View):
    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    status: dict[str, Any] | None = None

    @property
    def replica_specs(self) -> dict[str, ReplicaSpec | None]:
        raise NotImplementedError

    def replica(self, replica_type: str) -> tuple[str, ReplicaSpec] | None:
        return replica(self.replica_specs, replica_type)


class JAXJobSpec(_View):
    run_policy: RunPolicy | None = Field(default=None, alias="runPolicy")
    jax_replica_specs: dict[str, ReplicaSpec | None] = Field(default_factory=dict, alias="jaxReplicaSpecs")


class JAXJob(_V1Job):
    spec: JAXJobSpec = Field(default_factory=JAXJobSpec)

    @property
    def replica_specs(self) -> dict[str, ReplicaSpec | None]:
        return self.spec.jax_replica_specs


class XGBoostJobSpec(_View):
    run_policy: RunPolicy | None = Field(default=None, alias="runPolicy")
    xgb_replica_specs: dict[str, ReplicaSpec | None] = Field(default_factory=dict, alias="xgbReplicaSpecs")


class XGBoostJob(_V1Job):
    spec: XGBoostJobSpec = Field(default_factory=XGBoostJobSpec)

    @property
    def replica_specs(self) -> dict[str, ReplicaSpec | None]:
        return self.spec.xgb_replica_specs


class TFJobSpec(_View):
    run_policy: RunPolicy | None = Field(default=None, alias="runPolicy")
    success_policy: str | None = Field(default=None, alias="successPolicy")
    tf_replica_specs: dict[str, ReplicaSpec | None] = Field(default_factory=dict, alias="tfReplicaSpecs")
    enable_dynamic_worker: bool | None = Field(default=None, alias="enableDynamicWorker")


class TFJob(_V1Job):
    spec: TFJobSpec = Field(default_factory=TFJobSpec)

    @property
    def replica_specs(self) -> dict[str, ReplicaSpec | None]:
        return self.spec.tf_replica_specs


class PaddleJobSpec(_View):
    run_policy: RunPolicy | None = Field(default=None, alias="runPolicy")
    elastic_policy: dict[str, Any] | None = Field(default=None, alias="elasticPolicy")
    paddle_replica_specs: dict[str, ReplicaSpec | None] = Field(
        default_factory=dict, alias="paddleReplicaSpecs"
    )


class PaddleJob(_V1Job):
    spec: PaddleJobSpec = Field(default_factory=PaddleJobSpec)

    @property
    def replica_specs(self) -> dict[str, ReplicaSpec | None]:
        return self.spec.paddle_replica_specs
