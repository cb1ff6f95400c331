"""kopf settings for large clusters, in one place."""

from __future__ import annotations

import logging
import os

import kopf

from ferryman.api.kinds import FINALIZER, GROUP


def resync_seconds() -> float:
    """How often a CutoverPolicy re-reads the indexes (changes to PyTorchJobs show up within this)."""
    return float(os.environ.get("FERRYMAN_RESYNC_SECONDS", "10"))


def configure(settings: kopf.OperatorSettings) -> None:
    # Own annotation prefix and finalizer: no collision with other kopf operators, tidy under GitOps.
    # They only ever land on ferryman's own kinds: PyTorchJobs get only stateless watchers and indexes.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    # Watches: server-side timeouts below typical load-balancer idle cuts, paginated initial lists.
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 30
    settings.watching.reconnect_backoff = 1.0
    settings.watching.chunk_size = 500
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    # Events: one per pass that created TrainJobs, one per conflict; raise the level to silence them.
    settings.posting.level = logging.getLevelName(os.environ.get("FERRYMAN_EVENT_LEVEL", "INFO"))
    settings.execution.max_workers = 4
