"""ExperimentMigrations whose workers run on the real node: data on this host handed to the workers' user,
and the manifest of a migration reading it from a PersistentVolumeClaim (``RealNode.host_path_claim``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ferryman.kube.builders import WORKER_UID

SMALL_WORKER = {
    "nodeSelector": {},
    "tolerations": [],
    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
}


def hand_to_workers(root: Path) -> None:
    """Make `root` and everything under it the workers' user's (who reads it through a claim)."""
    for directory, _, files in os.walk(root):
        for name in [directory, *(os.path.join(directory, f) for f in files)]:
            os.chown(name, WORKER_UID, WORKER_UID)
    root.chmod(0o755)


def volume_migration(namespace: str, name: str, uri: str, claim: str, destination: str) -> dict[str, Any]:
    """An ExperimentMigration of source `uri` (under ``/data``, the claim's mount) into `destination`, one
    small worker placed on any node."""
    return {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "ExperimentMigration",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "source": {
                "uri": uri,
                "volumes": [
                    {"mountPath": "/data", "volume": {"persistentVolumeClaim": {"claimName": claim}}}
                ],
            },
            "destination": {"uri": destination},
            "placement": SMALL_WORKER,
            "options": {"workers": 1},
        },
    }
