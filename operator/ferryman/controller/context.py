"""What the operator keeps in memory between handler calls (kopf's memo carries one `OperatorContext`)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

import kopf
from lightkube import AsyncClient

from ferryman.api.trainer import TrainerAPI
from ferryman.controller.cutover import PolicyState
from ferryman.kube.client import pod_image
from ferryman.kube.informer import IndexView, Informer


@dataclass
class OperatorContext:
    client: AsyncClient
    namespace: str  # where the operator keeps its own objects (policy report ConfigMaps)
    image: str | None  # the image migration workers run unless a migration names one (see `worker_image`)
    trainer_api: TrainerAPI | None = None  # served TrainJob flavour; None until the TrainJob CRD is seen
    policies: dict[str, PolicyState] = field(default_factory=dict)
    indexed: asyncio.Event = field(default_factory=asyncio.Event)  # kopf has filled every index
    kopf_indexes: dict[str, Any] = field(default_factory=dict)  # kopf's indexes, once filled
    informers: dict[str, list[Informer]] = field(default_factory=dict)  # kinds too many for kopf, by index
    informing: list[asyncio.Task[None]] = field(default_factory=list)  # their list-and-watch tasks
    serving: set[asyncio.Task[None]] = field(default_factory=set)  # Takeover status writes under way
    handling: set[asyncio.Task[Any]] = field(default_factory=set)  # kopf handlers under way that call the API
    readiness: Any = None  # the readiness endpoint's aiohttp runner, when one is served
    leadership: Any = None  # the task keeping the leader's Lease, under leader election
    standby: bool = False  # waiting for the Lease
    lease: Any = None  # the Lease this replica leads on (kube.lease.LeaseConfig)

    @classmethod
    def from_environment(cls) -> OperatorContext:
        return cls(
            client=AsyncClient(field_manager="ferryman"),
            namespace=os.environ.get("FERRYMAN_NAMESPACE", "ferryman-system"),
            image=os.environ.get("FERRYMAN_IMAGE") or None,
        )

    async def find_worker_image(self) -> None:
        """Without FERRYMAN_IMAGE, workers run the operator's own image, read from its pod (POD_NAME from the
        downward API, in the operator's namespace); outside a pod there is none: migrations must name one."""
        pod = os.environ.get("POD_NAME")
        if self.image is None and pod:
            self.image = await pod_image(self.client, pod, self.namespace)

    def every_informer(self) -> list[Informer]:
        return [informer for informers in self.informers.values() for informer in informers]

    def listed(self) -> bool:
        """Every informer's records are complete: listed, and not listing again after a watch error."""
        return bool(self.informers) and all(informer.listed.is_set() for informer in self.every_informer())

    def ready(self) -> bool:
        """What the readiness probe answers: a standby at once (a rollout must not wait for it to lead), the
        leader while every index is complete (kopf's filled, the informers' listed)."""
        return self.standby or (self.indexed.is_set() and self.listed())

    async def wait_listed(self) -> None:
        await asyncio.gather(*(informer.listed.wait() for informer in self.every_informer()))


def context(memo: kopf.Memo | Any) -> OperatorContext:
    ctx = memo.ferryman
    assert isinstance(ctx, OperatorContext)
    return ctx


def values(index: kopf.Index[Any, Any] | IndexView) -> dict[Any, Any]:
    """A kopf index whose keys hold one value each (or informers' records), as a plain dict."""
    if isinstance(index, IndexView):
        return index.records()
    return {key: next(iter(store)) for key, store in index.items()}
