"""Recognising an owner's children: by ownerReference (the owner's uid) and a `ferryman.dev/` label, never by
name alone, so an object someone else put under a child's name is never adopted, overwritten or deleted."""

from __future__ import annotations

from typing import Any

from lightkube import ApiError, AsyncClient, codecs

from ferryman.kube.client import FIELD_MANAGER


class ChildClash(Exception):
    """An object holding a child's name that is not the owner's child."""

    def __init__(self, live: dict[str, Any], label: str) -> None:
        metadata = live.get("metadata") or {}
        self.kind = live.get("kind", "object")
        self.name = f"{metadata.get('namespace', '')}/{metadata.get('name', '')}".lstrip("/")
        super().__init__(
            f"{self.kind} {self.name} already exists and is not ferryman's (it lacks this object's "
            f"ownerReference or the {label} label): it is left untouched; delete or rename it to proceed"
        )


def as_dict(obj: Any) -> dict[str, Any]:
    """A lightkube object (typed model or generic resource) as a plain dict."""
    return obj if isinstance(obj, dict) else dict(obj.to_dict())


def is_child(obj: Any, owner: dict[str, Any], label: str, value: str | None = None) -> bool:
    """Whether `obj` is `owner`'s child: a controller ownerReference to its uid and `label` set to `value`
    (by default the owner's name)."""
    metadata = as_dict(obj).get("metadata") or {}
    owned = any(
        ref.get("uid") == owner["metadata"]["uid"] and ref.get("controller")
        for ref in metadata.get("ownerReferences") or []
    )
    wanted = owner["metadata"]["name"] if value is None else value
    return owned and (metadata.get("labels") or {}).get(label) == wanted


async def ensure_child(client: AsyncClient, body: dict[str, Any], owner: dict[str, Any], label: str) -> bool:
    """Create `body` unless `owner`'s child of that name exists; True when this call created it.

    Raises `ChildClash` when the name is taken by an object that is not the owner's child (`is_child`).
    """
    obj = codecs.from_dict(body)
    try:
        await client.create(obj, field_manager=FIELD_MANAGER)
    except ApiError as error:
        if error.status.code != 409:
            raise
    else:
        return True
    metadata = body["metadata"]
    live = as_dict(await client.get(type(obj), metadata["name"], namespace=metadata.get("namespace")))
    if not is_child(live, owner, label):
        raise ChildClash({**live, "kind": body["kind"]}, label)
    return False
