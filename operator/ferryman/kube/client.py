"""Thin async helpers over lightkube: reads tolerating absence, status writes with optimistic concurrency."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.core.resource import Resource
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

FIELD_MANAGER = "ferryman"
OPERATOR_CONTAINER = "operator"  # the operator's container in deploy/ (kustomize base and chart)
DISCONNECTED = (httpx2.TransportError, OSError)  # the API server unreachable, or a connection it dropped


def transient(error: Exception) -> bool:
    """An error that passes: no connection, a connection dropped, an answer saying "try again" (429, 5xx)."""
    if isinstance(error, ApiError):
        code = error.status.code or 0
        return code == 429 or code >= 500
    return isinstance(error, DISCONNECTED)


def describe_api_failure(error: Exception) -> str:
    """One line for a failed API call (an ApiError, a connection error, or another error), no traceback."""
    if isinstance(error, ApiError):
        return f"the API server answered {error.status.code}: {error.status.message}"
    detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return f"lost the connection to the API server ({detail})" if isinstance(error, DISCONNECTED) else detail


@contextlib.contextmanager
def tolerate_gone_or_conflict() -> Iterator[None]:
    """Treat 404 (already gone), 409 (already there, or changed meanwhile) and a creation refused in a
    namespace being deleted (gone with it) as "continue"."""
    try:
        yield
    except ApiError as error:
        if error.status.code not in (404, 409) and not namespace_terminating(error):
            raise


def namespace_terminating(error: ApiError) -> bool:
    """The apiserver refused to create in a namespace that is being deleted (NamespaceLifecycle)."""
    details = error.status.details
    return error.status.code == 403 and any(
        cause.reason == "NamespaceTerminating" for cause in (details.causes or [] if details else [])
    )


async def get_or_none(
    client: AsyncClient, res: type[Resource], name: str, namespace: str | None = None
) -> Any | None:
    try:
        return await client.get(res, name, namespace=namespace)  # type: ignore[type-var]
    except ApiError as error:
        if error.status.code == 404:
            return None
        raise


async def patch_status(
    client: AsyncClient,
    res: type[Resource],
    name: str,
    status: dict[str, Any],
    *,
    namespace: str | None = None,
    resource_version: str | None = None,
) -> Any:
    """Merge-patch `status`; with `resource_version`, the write fails with 409 if the object changed since."""
    patch: dict[str, Any] = {"status": status}
    if resource_version is not None:
        patch["metadata"] = {"resourceVersion": resource_version}
    return await client.patch(
        res.Status,  # type: ignore[attr-defined]
        name,
        patch,
        namespace=namespace,
        patch_type=PatchType.MERGE,
        field_manager=FIELD_MANAGER,
    )


async def pod_image(client: AsyncClient, name: str, namespace: str) -> str:
    """The image of the operator's container in pod `namespace/name` (the operator's own pod)."""
    pod = await client.get(Pod, name, namespace=namespace)
    containers = {container.name: container.image for container in (pod.spec.containers if pod.spec else [])}
    image = containers.get(OPERATOR_CONTAINER)
    if not image:
        raise ValueError(f"pod {namespace}/{name} has no {OPERATOR_CONTAINER!r} container with an image")
    return str(image)
