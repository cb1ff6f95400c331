"""Start the operator: kopf, cluster-wide, standalone (one replica, no peering), with liveness, readiness and
metrics endpoints."""

from __future__ import annotations

import logging

import kopf


class RetriedAsWarnings(logging.Filter):
    """kopf logs a handler's kopf.TemporaryError (a rate-limit wait, a failure that passes) at ERROR. It is
    retried, so it is a warning: alerts on ERROR must not fire on every paced Mirror pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and " failed temporarily: " in record.getMessage():
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        return True


def run_operator(*, liveness: str | None, readiness: str | None, metrics: str | None, verbose: bool) -> None:
    import ferryman.controller.main  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.FULL)
    logging.getLogger("kopf.objects").addFilter(RetriedAsWarnings())
    if not verbose:
        # One line per indexed object would be thousands at startup, one per API request (the HTTP client's)
        # as many while mirroring; failures still log as warnings.
        for name in ("kopf.objects", "httpx2"):
            logging.getLogger(name).setLevel(logging.WARNING)
    memo = kopf.Memo(readiness_url=readiness, metrics_url=metrics)
    kopf.run(standalone=True, clusterwide=True, liveness_endpoint=liveness, memo=memo)
