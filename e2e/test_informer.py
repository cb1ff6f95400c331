"""kube.informer against the real apiserver: the list, the watch that follows it, a kind not served, and the
fresh list after a watch the apiserver refuses as too old (410) or a connection that drops, during which the
readiness the operator serves (OperatorContext.ready through controller.readiness) says not ready."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from typing import Any

import httpx
import pytest
from lightkube import ApiError, AsyncClient, Client, KubeConfig, codecs
from lightkube.config.models import Cluster, User
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap
from lightkube.types import PatchType

from ferryman.controller.context import OperatorContext
from ferryman.controller.readiness import serve_readiness
from ferryman.kube.informer import IndexView, Informer
from ferryman.kube.resources import PyTorchJob
from ferryman_dev.cluster import ControlPlane
from ferryman_dev.lifetime import free_port
from ferryman_dev.relay import Relay

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


# A watch or a connection lost: PyTorchJobs (a custom resource: the apiserver's watch cache of a core kind
# such as ConfigMap reaches back to the apiserver's start, so only a custom kind answers an old version 410).


def _pytorchjob(name: str, namespace: str) -> Any:
    container = {"name": "pytorch", "image": "registry.example/train:1"}
    replica = {"replicas": 1, "template": {"spec": {"containers": [container]}}}
    return codecs.from_dict(
        {
            "apiVersion": "kubeflow.org/v1",
            "kind": "PyTorchJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"pytorchReplicaSpecs": {"Master": replica}},
        }
    )


def _version(obj: dict[str, Any]) -> tuple[str, str, str]:
    metadata = obj["metadata"]
    return metadata["namespace"], metadata["name"], metadata["resourceVersion"]


def _cluster_jobs(kube: Client, namespace: str) -> dict[Hashable, tuple[str, str, str]]:
    jobs = kube.list(PyTorchJob, namespace=namespace)
    return {(namespace, job.metadata.name): _version(job.to_dict()) for job in jobs}


def _held_jobs(informer: Informer, namespace: str) -> dict[Hashable, Any]:
    return {key: record for key, record in informer.records.items() if record[0] == namespace}


def _change_every_way(kube: Client, namespace: str) -> None:
    """While the informer is not watching: a job added, one modified, one deleted."""
    kube.create(_pytorchjob("added", namespace))
    edit = {"metadata": {"labels": {"edited": "yes"}}}
    kube.patch(PyTorchJob, "modified", edit, namespace=namespace, patch_type=PatchType.MERGE)
    kube.delete(PyTorchJob, "deleted", namespace=namespace)


def _operator_context(client: AsyncClient, informer: Informer) -> OperatorContext:
    """The operator's context over this one informer, kopf's indexes taken as filled: `ready()` is then
    what the operator's readiness probe answers about the informer."""
    ctx = OperatorContext(client, namespace="ferryman-system", image=None, informers={"v1jobs": [informer]})
    ctx.indexed.set()
    return ctx


class StaleWatch(AsyncClient):
    """Holds the informer's first watch until `resume` is set, then asks for resourceVersion 1, long gone
    from the apiserver's watch cache (as after a long pause); `answers` records the apiserver's refusals."""

    def __init__(self, config: KubeConfig) -> None:
        super().__init__(config)
        self.held, self.resume = asyncio.Event(), asyncio.Event()
        self.answers: list[int] = []

    async def watch(self, res: Any, **kwargs: Any) -> AsyncIterator[tuple[str, Any]]:  # type: ignore[override]
        if not self.held.is_set():
            self.held.set()
            await self.resume.wait()
            kwargs["resource_version"] = "1"
        try:
            async for event in super().watch(res, **kwargs):
                yield event
        except ApiError as error:
            self.answers.append(error.status.code)
            raise


def test_a_watch_too_old_for_the_apiserver_is_followed_by_a_full_list(
    cluster: ControlPlane, kube: Client, namespace: str
) -> None:
    for name in ("modified", "deleted"):
        kube.create(_pytorchjob(name, namespace))

    async def run() -> None:
        client = StaleWatch(KubeConfig.from_file(cluster.kubeconfig))
        events: list[tuple[str, Any, bool]] = []  # (event, record, ready when told)

        def told(event: str, record: Any) -> None:
            events.append((event, record, ctx.ready()))

        informer = Informer(client, PyTorchJob, _version, changed=told)
        ctx = _operator_context(client, informer)
        task = asyncio.create_task(informer.run())
        try:
            await asyncio.wait_for(client.held.wait(), 30)
            assert ctx.ready() and _held_jobs(informer, namespace) == _cluster_jobs(kube, namespace)
            deleted = informer.records[(namespace, "deleted")]
            _change_every_way(kube, namespace)
            events.clear()
            client.resume.set()
            await _until(lambda: ctx.ready() and (namespace, "added") in informer.records, "the fresh list")
            assert client.answers == [410]
            assert _held_jobs(informer, namespace) == _cluster_jobs(kube, namespace)
            ours = [(event, record, ready) for event, record, ready in events if record[0] == namespace]
            assert ("DELETED", deleted, False) in ours  # gone from the fresh list: told as deleted
            assert {event for event, _, _ in ours} == {"DELETED", "LISTED"}
            assert not any(ready for _, _, ready in ours), "ready while the fresh list was being taken"
        finally:
            task.cancel()
            await client.close()

    asyncio.run(run())


def test_a_dropped_watch_connection_is_followed_by_a_full_list_and_readiness_says_so(
    cluster: ControlPlane, kube: Client, namespace: str
) -> None:
    for name in ("modified", "deleted"):
        kube.create(_pytorchjob(name, namespace))

    async def run() -> None:
        relay = Relay(cluster.apiserver_port)
        pki = cluster.pki
        config = KubeConfig.from_one(
            cluster=Cluster(server=await relay.start(), certificate_auth=str(pki.ca_cert)),
            user=User(client_cert=str(pki.admin_cert), client_key=str(pki.admin_key)),
        )
        client = AsyncClient(config)
        informer = Informer(client, PyTorchJob, _version)
        url = f"http://127.0.0.1:{free_port()}/readyz"
        readiness = await serve_readiness(url, _operator_context(client, informer).ready)
        task = asyncio.create_task(informer.run())
        async with httpx.AsyncClient() as probe:

            async def answers(status: int) -> bool:
                return (await probe.get(url)).status_code == status

            try:
                await asyncio.wait_for(informer.listed.wait(), 30)
                assert await answers(200)
                relay.drop()
                await _until_async(lambda: answers(503), "readiness to fail once the watch is cut")
                _change_every_way(kube, namespace)
                assert await answers(503)  # lists through the cut relay fail: still not ready
                relay.cut = False
                await _until_async(lambda: answers(200), "readiness once listed again")
                assert _held_jobs(informer, namespace) == _cluster_jobs(kube, namespace)
            finally:
                task.cancel()
                relay.close()
                await client.close()
                await readiness.cleanup()

    asyncio.run(run())


async def _until_async(check: Any, what: str) -> None:
    for _ in range(300):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"waiting for {what}")
