"""kube.client against the real apiserver: what a namespace being deleted answers."""

from __future__ import annotations

import pytest
from lightkube import ApiError, Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Namespace, ServiceAccount

from ferryman.kube.client import namespace_terminating

pytestmark = pytest.mark.cluster


def test_creating_in_a_namespace_being_deleted_is_told_from_other_refusals(
    kube: Client, namespace: str
) -> None:
    held = ConfigMap(metadata=ObjectMeta(name="held", namespace=namespace, finalizers=["ferryman.dev/test"]))
    kube.create(held)
    kube.delete(Namespace, namespace)  # stays Terminating while the ConfigMap's finalizer holds it
    try:
        with pytest.raises(ApiError) as refused:
            kube.create(ServiceAccount(metadata=ObjectMeta(name="late", namespace=namespace)))
        assert namespace_terminating(refused.value)
        with pytest.raises(ApiError) as missing:
            kube.create(ServiceAccount(metadata=ObjectMeta(name="x", namespace=f"{namespace}-absent")))
        assert not namespace_terminating(missing.value)
    finally:
        kube.patch(ConfigMap, "held", {"metadata": {"finalizers": None}}, namespace=namespace)
