"""The readiness endpoint, distinct from kopf's liveness: 200 while the operator's indexes are complete, 503
otherwise (OperatorContext.ready): until kopf has filled its indexes (it runs no resource handler before, so
the first one to run, an event handler on namespaces, marks them filled) and every informer has listed, and
again while an informer lists anew after a watch error."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from aiohttp import web


async def serve_readiness(url: str, ready: Callable[[], bool]) -> web.AppRunner:
    """Serve `GET <path of url>` on the url's host and port; the caller cleans the runner up."""
    parts = urlsplit(url)

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="indexing: not ready\n")

    app = web.Application()
    app.router.add_get(parts.path or "/", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, parts.hostname or "0.0.0.0", parts.port or 80).start()
    return runner
