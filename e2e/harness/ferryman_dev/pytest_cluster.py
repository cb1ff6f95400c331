"""pytest fixtures for tests against the local control plane (:mod:`ferryman_dev.cluster`).

* ``cluster``: session-scoped full cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
  kwok with fake GPU and CPU nodes; upstream CRDs in the current Trainer flavour and the default runtimes).
* ``flavour_cluster``: ``flavour_cluster(TrainerAPI.V2_1)`` gives a control plane serving that Trainer
  flavour's CRDs. The current flavour is ``cluster`` itself; older flavours get their own small control
  plane (etcd + kube-apiserver only, started once per session), so tests never swap CRDs under each other.
* ``kube``: an admin lightkube client of ``cluster``; ``namespace``: a fresh namespace per test.
* ``upstream_cluster``: session-scoped full cluster that also runs the real controllers of both sides
  (:data:`UPSTREAM_CONTROLLERS`: Kubeflow Trainer, JobSet, Training Operator v1 without MPIJob, mpi-operator),
  each with its own webhooks and RBAC (:mod:`ferryman_dev.controllers`); ``upstream_kube`` and
  ``upstream_namespace`` are its client and a fresh namespace per test. Its kwok ends pods as the
  ``ferryman.dev/kwok-exit-code`` annotation says (``ferryman_dev/kwok-pod-exit.yaml``).
* ``kueue_cluster``: session-scoped full cluster with Trainer, JobSet, the Training Operator and Kueue (its
  batch Job, JobSet, TrainJob and v1 integrations on).
* ``mpijob_v1_cluster``: a small session-scoped cluster (one CPU and one GPU node) whose Training Operator
  serves MPIJob v1 as well, the one kind that cannot run beside mpi-operator; Trainer and JobSet run there
  too (:data:`MPIJOB_V1_CONTROLLERS`), for its Takeover.

Every test using one of these fixtures is marked ``cluster``.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ferryman.api.trainer import TrainerAPI
from ferryman_dev.cluster import ClusterSpec, ControlPlane, wait_default_service_account

CURRENT_FLAVOUR = TrainerAPI.V2_2
UPSTREAM_CONTROLLERS = ("trainer", "jobset", "training-operator", "mpi-operator")
# not beside mpi-operator: two mpi-operators cannot run at once (v0.8.0 always takes port 8080)
KUEUE_CONTROLLERS = ("trainer", "jobset", "training-operator", "kueue")
MPIJOB_V1_CONTROLLERS = ("trainer", "jobset", "training-operator")  # the Training Operator serving MPIJob v1

_CLUSTER_FIXTURES = {
    "cluster",
    "flavour_cluster",
    "kube",
    "namespace",
    "upstream_cluster",
    "upstream_kube",
    "upstream_namespace",
    "mpijob_v1_cluster",
    "kueue_cluster",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path_factory.mktemp("cluster"), ClusterSpec(trainer_api=CURRENT_FLAVOUR))
    try:
        yield plane.start()
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def flavour_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[TrainerAPI], ControlPlane]]:
    planes: dict[TrainerAPI, ControlPlane] = {}

    def get(trainer_api: TrainerAPI) -> ControlPlane:
        if trainer_api is CURRENT_FLAVOUR:
            plane: ControlPlane = request.getfixturevalue("cluster")
            return plane
        if trainer_api not in planes:
            spec = ClusterSpec(controllers=False, kwok=False, trainer_api=trainer_api, runtimes=True)
            state_dir = tmp_path_factory.mktemp(f"cluster-trainer-{trainer_api.value}")
            planes[trainer_api] = ControlPlane(state_dir, spec).start()
        return planes[trainer_api]

    try:
        yield get
    finally:
        for plane in planes.values():
            plane.stop()


@pytest.fixture(scope="session")
def kube(cluster: ControlPlane) -> Any:
    """An admin (system:masters) lightkube client of the session cluster."""
    return cluster.client()


@pytest.fixture
def namespace(kube: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace (with its ``default`` ServiceAccount in place), deleted after the test."""
    with fresh_namespace(kube, request.node.name) as name:
        yield name


@pytest.fixture(scope="session")
def upstream_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    spec = ClusterSpec(trainer_api=CURRENT_FLAVOUR, upstream_controllers=UPSTREAM_CONTROLLERS)
    plane = ControlPlane(tmp_path_factory.mktemp("upstream-cluster"), spec)
    try:
        yield plane.start()
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def upstream_kube(upstream_cluster: ControlPlane) -> Any:
    """An admin (system:masters) lightkube client of ``upstream_cluster``."""
    return upstream_cluster.client()


@pytest.fixture
def upstream_namespace(upstream_kube: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace of ``upstream_cluster``, deleted after the test."""
    with fresh_namespace(upstream_kube, request.node.name) as name:
        yield name


@pytest.fixture(scope="session")
def mpijob_v1_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    spec = ClusterSpec(
        gpu_nodes=1,
        cpu_nodes=1,
        trainer_api=CURRENT_FLAVOUR,
        upstream_controllers=MPIJOB_V1_CONTROLLERS,
        mpijob_v1=True,
    )
    plane = ControlPlane(tmp_path_factory.mktemp("mpijob-v1-cluster"), spec)
    try:
        yield plane.start()
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kueue_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    spec = ClusterSpec(trainer_api=CURRENT_FLAVOUR, upstream_controllers=KUEUE_CONTROLLERS)
    plane = ControlPlane(tmp_path_factory.mktemp("kueue-cluster"), spec)
    try:
        yield plane.start()
    finally:
        plane.stop()


@contextlib.contextmanager
def fresh_namespace(kube: Any, test_name: str) -> Iterator[str]:
    """A namespace named after the test (with its ``default`` ServiceAccount in place), deleted afterwards."""
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import Namespace

    stem = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:48].strip("-")
    name = f"t-{stem}-{secrets.token_hex(3)}"
    kube.create(Namespace(metadata=ObjectMeta(name=name, labels={"ferryman.dev/test": "true"})))
    wait_default_service_account(kube, name)
    try:
        yield name
    finally:
        kube.delete(Namespace, name)
