"""Start the operator: kopf, cluster-wide, standalone (one replica, no peering), with a liveness endpoint."""

from __future__ import annotations

import kopf


def run_operator(*, liveness: str | None, verbose: bool) -> None:
    import ferryman.controller.main  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.PLAIN)
    kopf.run(standalone=True, clusterwide=True, liveness_endpoint=liveness)
