"""An in-memory copy of every object of one kind: a paginated list, then a watch from the list's version.

For the kinds a cluster holds thousands of (v1 jobs, TrainJobs), in place of kopf's per-object machinery
(a worker task, memory and readiness toggle per object, which made a start over 10,000 objects take
minutes): one task per kind, each object kept as the record `keep` makes of it. Any watch error (410 Gone
for a resourceVersion the apiserver no longer holds, a dropped connection) is answered by a fresh list, so no
change is ever missed; from the error until that list has replaced every record, `listed` is clear, so
nothing takes the records for complete meanwhile. A kind the cluster does not serve (its CRD not installed)
counts as listed and empty, and is looked for again every MISSING_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient

from ferryman.kube.client import describe_api_failure

CHUNK_SIZE = 500  # objects per list page
WATCH_SECONDS = 270  # server-side watch timeout: below typical load-balancer idle cuts
RETRY_SECONDS = 1.0
MISSING_SECONDS = 10.0

logger = logging.getLogger(__name__)


def namespaced_key(obj: dict[str, Any]) -> Hashable:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


@dataclass
class Informer:
    """`records` holds `keep(object)` for every object of `resource` by `key(object)` while `listed` is set;
    `changed`, when given, is called with the event type ("ADDED", "MODIFIED", "DELETED", or "LISTED" for
    each object of a list) and the record, after `records` holds it; a record a list no longer holds (deleted
    while the watch was down) is "DELETED" too."""

    client: AsyncClient
    resource: type[Any]
    keep: Callable[[dict[str, Any]], Any]
    key: Callable[[dict[str, Any]], Hashable] = namespaced_key
    changed: Callable[[str, Any], None] | None = None
    records: dict[Hashable, Any] = field(default_factory=dict)
    listed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """List and watch until cancelled; after an error, list again."""
        kind = self.resource.__name__
        while True:
            try:
                version = await self._list()
                async for event, obj in self.client.watch(
                    self.resource, namespace="*", resource_version=version, server_timeout=WATCH_SECONDS
                ):
                    self._apply(event, obj.to_dict())
            except Exception as error:  # API or network: the copy must never stop following
                self.listed.clear()  # changes are being missed from here until the next list
                response = getattr(error, "response", None)
                if getattr(response, "status_code", None) == 404:
                    self._replace({})
                    self.listed.set()  # not served: nothing to wait for
                    await asyncio.sleep(MISSING_SECONDS)
                    continue
                logger.warning(f"listing {kind} again after an error: {describe_api_failure(error)}")
                await asyncio.sleep(RETRY_SECONDS)

    async def _list(self) -> str:
        """Replace every record from a paginated list, then set `listed`; the list's resourceVersion."""
        listing = self.client.list(self.resource, namespace="*", chunk_size=CHUNK_SIZE)
        records = {}
        async for obj in listing:
            body = obj.to_dict()
            records[self.key(body)] = self.keep(body)
        self._replace(records)
        self.listed.set()
        return str(listing.resourceVersion)

    def _replace(self, records: dict[Hashable, Any]) -> None:
        gone = [record for key, record in self.records.items() if key not in records]
        self.records = records
        if self.changed is not None:
            for record in gone:
                self.changed("DELETED", record)
            for record in records.values():
                self.changed("LISTED", record)

    def _apply(self, event: str, obj: dict[str, Any]) -> None:
        key, record = self.key(obj), self.keep(obj)
        if event == "DELETED":
            self.records.pop(key, None)
        elif event in ("ADDED", "MODIFIED"):
            self.records[key] = record
        else:
            return  # BOOKMARK, or an ERROR lightkube did not raise
        if self.changed is not None:
            self.changed(event, record)


class IndexView(Mapping[Hashable, tuple[Any]]):
    """The records of one or more informers read as a kopf index holding one value per key, so handlers
    read informers and kopf's indexes alike (`key in view`, `next(iter(view[key]))`)."""

    def __init__(self, *informers: Informer) -> None:
        self._informers = informers

    def __getitem__(self, key: Hashable) -> tuple[Any]:
        for informer in self._informers:
            if key in informer.records:
                return (informer.records[key],)
        raise KeyError(key)

    def __iter__(self) -> Iterator[Hashable]:
        for informer in self._informers:
            yield from list(informer.records)

    def __len__(self) -> int:
        return sum(len(informer.records) for informer in self._informers)

    def records(self) -> dict[Hashable, Any]:
        """Every record by key, as one plain dict (a copy: the informers go on changing theirs)."""
        merged: dict[Hashable, Any] = {}
        for informer in self._informers:
            merged.update(informer.records)
        return merged
