"""High availability: replicas run with FERRYMAN_LEASE set elect a leader on that coordination.k8s.io Lease
(in the operator's namespace). A standby waits in kopf's startup, before any watch or handler; the leader
renews the Lease and, should it lose it, exits at once so that two replicas never work together."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from lightkube import AsyncClient

from ferryman.kube.lease import LeaseConfig, acquire, keep, release

logger = logging.getLogger(__name__)
LOST_LEASE_EXIT = 75  # the exit status of a replica that lost the Lease (its pod restarts as a standby)


def lease_config(namespace: str) -> LeaseConfig | None:
    """The Lease to elect a leader on, from FERRYMAN_LEASE (unset: one replica, no election)."""
    name = os.environ.get("FERRYMAN_LEASE", "")
    if not name:
        return None
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    return LeaseConfig(namespace=namespace, name=name, identity=identity)


async def lead(client: AsyncClient, config: LeaseConfig) -> asyncio.Task[None]:
    """Return once leading, with the task that keeps the Lease."""
    await acquire(client, config)
    return asyncio.create_task(_hold(client, config), name="lease keeper")


async def resign(client: AsyncClient, config: LeaseConfig) -> None:
    """Give the Lease up on a graceful stop, so that the standby takes over without waiting for expiry."""
    await release(client, config)


async def _hold(client: AsyncClient, config: LeaseConfig) -> None:
    await keep(client, config)
    logger.critical("lost the Lease: exiting so that only one replica works")
    os._exit(LOST_LEASE_EXIT)
