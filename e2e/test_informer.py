"""kube.informer against the real apiserver: the list, the watch that follows it, and a kind not served."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lightkube import AsyncClient, Client, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from ferryman.kube.informer import IndexView, Informer
from ferryman_dev.cluster import ControlPlane

pytestmark = pytest.mark.cluster

Unserved = create_namespaced_resource("nothing.example.com", "v1", "Nothing", "nothings")


def _data(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj.get("data") or {})


async def _until(check: Any, what: str) -> None:
    for _ in range(300):
        if check():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"waiting for {what}")


def test_an_informer_lists_then_follows_every_change(
    cluster: ControlPlane, kube: Client, namespace: str
) -> None:
    kube.create(ConfigMap(metadata=ObjectMeta(name="listed", namespace=namespace), data={"v": "1"}))

    async def run() -> None:
        client = AsyncClient(KubeConfig.from_file(cluster.kubeconfig))
        events: list[tuple[str, str]] = []
        informer = Informer(
            client, ConfigMap, _data, changed=lambda event, data: events.append((event, data.get("v", "")))
        )
        unserved = Informer(client, Unserved, dict)
        tasks = [asyncio.create_task(informer.run()), asyncio.create_task(unserved.run())]
        try:
            await asyncio.wait_for(asyncio.gather(informer.listed.wait(), unserved.listed.wait()), 30)
            view = IndexView(informer)
            assert next(iter(view[(namespace, "listed")])) == {"v": "1"}
            assert ("LISTED", "1") in events
            assert unserved.records == {}  # not served: listed, empty
            kube.create(ConfigMap(metadata=ObjectMeta(name="added", namespace=namespace), data={"v": "2"}))
            kube.patch(ConfigMap, "listed", {"data": {"v": "3"}}, namespace=namespace)
            kube.delete(ConfigMap, "added", namespace=namespace)
            await _until(lambda: ("DELETED", "2") in events, "the deletion")
            assert ("ADDED", "2") in events and ("MODIFIED", "3") in events
            assert (namespace, "added") not in view
            assert view.records()[(namespace, "listed")] == {"v": "3"}
        finally:
            for task in tasks:
                task.cancel()
            await client.close()

    asyncio.run(run())
