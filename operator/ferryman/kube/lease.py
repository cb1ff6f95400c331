"""Leader election on a coordination.k8s.io Lease: one replica works, the others wait to take over.

`acquire` returns once this replica holds the Lease (it was free, expired or already ours); `keep` renews it
and returns only when it was lost (another replica took it, or renewal kept failing past the lease's
duration), after which the caller must stop working at once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from ferryman.kube.client import DISCONNECTED, FIELD_MANAGER, describe_api_failure, transient

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    duration: int = 15  # seconds a holder keeps the Lease without renewing it
    retry: float = 2.0  # seconds between attempts to take or renew it

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def _now() -> datetime:
    return datetime.now(UTC)


def _free(spec: LeaseSpec, identity: str, now: datetime) -> bool:
    if not spec.holderIdentity or spec.holderIdentity == identity or spec.renewTime is None:
        return True
    return spec.renewTime + timedelta(seconds=spec.leaseDurationSeconds or 0) < now


async def _try_take(client: AsyncClient, config: LeaseConfig) -> bool:
    now = _now()
    try:
        lease = await client.get(Lease, config.name, namespace=config.namespace)
    except ApiError as error:
        if error.status.code != 404:
            raise
        spec = LeaseSpec(
            holderIdentity=config.identity,
            leaseDurationSeconds=config.duration,
            acquireTime=now,
            renewTime=now,
            leaseTransitions=0,
        )
        lease = Lease(metadata=ObjectMeta(name=config.name, namespace=config.namespace), spec=spec)
        try:
            await client.create(lease, field_manager=FIELD_MANAGER)
        except ApiError as conflict:
            if conflict.status.code == 409:
                return False
            raise
        return True
    spec = lease.spec or LeaseSpec()
    if not _free(spec, config.identity, now):
        return False
    if spec.holderIdentity != config.identity:
        spec.acquireTime = now
        spec.leaseTransitions = (spec.leaseTransitions or 0) + 1
    spec.holderIdentity, spec.renewTime, spec.leaseDurationSeconds = config.identity, now, config.duration
    lease.spec = spec
    try:  # replace carries the resourceVersion read: of two replicas racing, one wins
        await client.replace(lease, field_manager=FIELD_MANAGER)
    except ApiError as error:
        if error.status.code == 409:
            return False
        raise
    return True


async def acquire(client: AsyncClient, config: LeaseConfig) -> None:
    """Wait until this replica holds the Lease."""
    waiting = False
    while True:
        try:
            if await _try_take(client, config):
                break
        except Exception as error:  # the API server unreachable for a moment: a standby keeps waiting
            if not transient(error):
                raise
            logger.warning(f"cannot read Lease {config}: {describe_api_failure(error)}")
        else:
            if not waiting:
                logger.info(f"waiting for Lease {config} (another replica leads)")
                waiting = True
        await asyncio.sleep(config.retry)
    logger.info(f"leading: Lease {config} held by {config.identity}")


async def release(client: AsyncClient, config: LeaseConfig) -> None:
    """Give the Lease up if this replica holds it (best effort: otherwise it expires)."""
    try:
        lease = await client.get(Lease, config.name, namespace=config.namespace)
        if lease.spec is None or lease.spec.holderIdentity != config.identity:
            return
        lease.spec.holderIdentity = None
        await client.replace(lease, field_manager=FIELD_MANAGER)
        logger.info(f"released Lease {config}")
    except (ApiError, *DISCONNECTED) as error:
        logger.warning(f"cannot release Lease {config}: {describe_api_failure(error)}")


async def keep(client: AsyncClient, config: LeaseConfig) -> None:
    """Renew the Lease every `retry` seconds; return when it is lost."""
    renewed = _now()
    while True:
        await asyncio.sleep(config.retry)
        try:
            if await _try_take(client, config):
                renewed = _now()
                continue
            logger.error(f"Lease {config} was taken by another replica")
            return
        except (ApiError, *DISCONNECTED) as error:  # the API server is unreachable: keep trying until expiry
            logger.warning(f"cannot renew Lease {config}: {describe_api_failure(error)}")
        if _now() - renewed > timedelta(seconds=config.duration - 2 * config.retry):  # before another can
            logger.error(f"Lease {config} expired without renewal")
            return
