"""pytest fixtures for the real-node tier (``-m realnode``): pods that really run, on this host.

* ``real_node``: session-scoped control plane (etcd, apiserver, controller-manager, scheduler; no kwok; the
  Trainer, JobSet and Training Operator controllers) with one real node joined
  (:class:`ferryman_dev.realnode.RealNode`: containerd, kubelet, kube-proxy, CoreDNS).
  ``real_node.plane`` is its :class:`~ferryman_dev.cluster.ControlPlane`.
* ``realnode_kube``: an admin lightkube client of it; ``realnode_namespace``: a fresh namespace per test
  that enforces PodSecurity ``restricted``.
* ``ferryman_image_archive``: the OCI archive `make image` writes (``.cache/image/ferryman.oci.tar``, rebuilt
  when older than its sources); ``ferryman_image``: the reference (``localhost/ferryman:<version>``) of that
  image, imported into the node's containerd (pods use it with ``imagePullPolicy: Never``).

The tier is collected only when the ``-m`` expression names ``realnode`` (`make test-realnode`, `.ci/run`):
it needs root, Debian's containerd, runc and CNI plugins, and takes minutes. A host that cannot run the node
fails the tier with what it lacks (:func:`ferryman_dev.realnode.missing_prerequisites`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ferryman.api.trainer import TrainerAPI
from ferryman_dev.cluster import ClusterSpec, ControlPlane
from ferryman_dev.image import image_archive, image_name
from ferryman_dev.pytest_cluster import fresh_namespace
from ferryman_dev.realnode import RealNode

_REALNODE_FIXTURES = {
    "real_node",
    "realnode_kube",
    "realnode_namespace",
    "ferryman_image",
    "ferryman_image_archive",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _REALNODE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.realnode)
    if "realnode" in (config.getoption("markexpr", "") or ""):
        return
    deselected = [item for item in items if item.get_closest_marker("realnode") is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item.get_closest_marker("realnode") is None]


@pytest.fixture(scope="session")
def real_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNode]:
    # the real controllers of both sides, so converted jobs and their v1 originals run on the node too
    spec = ClusterSpec(
        kwok=False,
        trainer_api=TrainerAPI.V2_2,
        upstream_controllers=("trainer", "jobset", "training-operator"),
    )
    plane = ControlPlane(tmp_path_factory.mktemp("realnode"), spec)
    node = RealNode(plane)
    try:
        plane.start()
        yield node.start()
    finally:
        node.stop()
        plane.stop()


@pytest.fixture(scope="session")
def realnode_kube(real_node: RealNode) -> Any:
    """An admin (system:masters) lightkube client of the real-node cluster."""
    return real_node.plane.client()


@pytest.fixture
def realnode_namespace(realnode_kube: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace of the real-node cluster enforcing PodSecurity ``restricted``, deleted afterwards."""
    from lightkube.resources.core_v1 import Namespace

    with fresh_namespace(realnode_kube, request.node.name) as name:
        realnode_kube.patch(
            Namespace, name, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
        )
        yield name


@pytest.fixture(scope="session")
def ferryman_image_archive() -> Path:
    """The OCI archive `make image` writes (built, or rebuilt when stale, once per session)."""
    return image_archive()


@pytest.fixture(scope="session")
def ferryman_image(real_node: RealNode, ferryman_image_archive: Path) -> str:
    """The `make image` image, imported into the real node's containerd; its reference."""
    real_node.import_archive(ferryman_image_archive)
    return image_name(ferryman_image_archive)
