"""Tracker URIs: the one table of URI schemes, the reader or writer serving each, and their credentials.

`TRACKERS` lists every kind of endpoint with the URI prefixes that name it, first match wins. `endpoint()` is
the one place a `--from`/`--to` URI is classified; the reader and writer factories (`module:function` below
`ferryman.trackers`, imported only when used) are called as `factory(endpoint, credentials)` and return a
`TrackerReader` or `TrackerWriter`.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal, cast

from ferryman.trackers.model import TrackerReader, TrackerWriter

Role = Literal["source", "destination"]


class TrackerURIError(ValueError):
    """A URI no tracker serves, or a tracker that cannot serve it in the asked role."""


# The variables each tracker's own client reads, by credential field.
NATIVE_CREDENTIALS: dict[str, dict[str, str]] = {
    "mlflow": {
        "TOKEN": "MLFLOW_TRACKING_TOKEN",
        "USERNAME": "MLFLOW_TRACKING_USERNAME",
        "PASSWORD": "MLFLOW_TRACKING_PASSWORD",
    },
    "wandb": {"TOKEN": "WANDB_API_KEY"},
}


@dataclass(frozen=True, slots=True)
class Credentials:
    """Secrets for one end of a migration; each end has its own, so source and destination may differ."""

    token: str | None = None
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_env(cls, role: Role, env: Mapping[str, str] | None = None, *, kind: str) -> Credentials:
        """`FERRYMAN_SOURCE_*` / `FERRYMAN_DESTINATION_*` (TOKEN, USERNAME, PASSWORD), falling back to the
        tracker's own variables (`MLFLOW_TRACKING_*` for MLflow, `WANDB_API_KEY` for W&B), so one tracker's
        secret never reaches another."""
        env = os.environ if env is None else env
        prefix = f"FERRYMAN_{role.upper()}_"
        native = NATIVE_CREDENTIALS.get(kind, {})

        def pick(name: str) -> str | None:
            return env.get(prefix + name) or env.get(native.get(name, "")) or None

        return cls(token=pick("TOKEN"), username=pick("USERNAME"), password=pick("PASSWORD"))

    def __repr__(self) -> str:  # never print secrets
        return f"Credentials(token={'***' if self.token else None}, username={self.username!r})"


class Store(StrEnum):
    """What a tracker URI names."""

    TRACKING_SERVER = "tracking server"
    SQLITE = "SQLite database"
    DATABASE_SERVER = "database server"
    FILE_STORE = "file store"
    RUN_DIRECTORIES = "run directories"
    API = "API"
    LOG_DIRECTORY = "log directory"
    EXPORT = "export directory"


@dataclass(frozen=True, slots=True)
class Tracker:
    """One kind of endpoint: the URI prefixes that name it and the factories that read and write it."""

    kind: str  # short name recorded in source identities and reports: "mlflow", "tensorboard", …
    store: Store
    prefixes: tuple[str, ...]  # URI prefixes it serves, longer before shorter ("" matches plain paths)
    reader: str | None  # "module:function" (below ferryman.trackers) returning a TrackerReader
    writer: str | None  # "module:function" (below ferryman.trackers) returning a TrackerWriter
    whole_uri: bool = False  # the factory needs the whole URI (a URL), not the path after the prefix


_MLFLOW_READER = "mlflow.reader:open_reader"
_MLFLOW_WRITER = "mlflow.writer:open_writer"
_MLFLOW_BULK_READER = "mlflow.bulk:open_reader"  # metric points straight from MLflow's tables
_MLFLOW_BULK_WRITER = "mlflow.bulk:open_writer"  # metric points straight into MLflow's tables

TRACKERS: list[Tracker] = [
    Tracker("wandb", Store.API, ("wandb://",), "wandb.api:open_reader", None, whole_uri=True),
    Tracker("wandb", Store.RUN_DIRECTORIES, ("wandb:",),
            "wandb.offline:open_reader", "wandb.writer:open_writer"),
    Tracker("tensorboard", Store.LOG_DIRECTORY, ("tensorboard:",),
            "tensorboard.reader:open_reader", "tensorboard.writer:open_writer"),
    Tracker("neptune", Store.EXPORT, ("neptune-export://", "neptune-export:"),
            "neptune.reader:open_reader", "neptune.writer:open_writer"),
    Tracker("mlflow", Store.TRACKING_SERVER, ("http://", "https://"),
            _MLFLOW_READER, _MLFLOW_WRITER, whole_uri=True),
    Tracker("mlflow", Store.SQLITE, ("sqlite:",), _MLFLOW_BULK_READER, _MLFLOW_BULK_WRITER, whole_uri=True),
    Tracker("mlflow", Store.DATABASE_SERVER, ("postgresql:", "postgresql+", "mysql:", "mysql+"),
            _MLFLOW_BULK_READER, _MLFLOW_BULK_WRITER, whole_uri=True),
    Tracker("mlflow", Store.FILE_STORE, ("file://", "file:", ""), "mlflow.filestore:open_reader", None),
]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A classified tracker URI: the tracker serving it and its location (the path after the prefix, or the
    whole URI for URLs)."""

    uri: str
    tracker: Tracker
    location: str


def endpoint(uri: str) -> Endpoint:
    """Classify a URI: the first registered tracker whose prefix it starts with; a plain path (no `://`) is
    an MLflow file store."""
    for tracker in TRACKERS:
        for prefix in tracker.prefixes:
            if (prefix and uri.startswith(prefix)) or (not prefix and "://" not in uri):
                return Endpoint(uri, tracker, uri if tracker.whole_uri else uri.removeprefix(prefix))
    raise TrackerURIError(f"no tracker serves URI {uri!r}")


def tracker_for(uri: str) -> Tracker:
    """The tracker serving the URI."""
    return endpoint(uri).tracker


def local_path(uri: str) -> Path | None:
    """The file or directory a local store's URI names (None for servers and in-memory databases)."""
    found = endpoint(uri)
    store = found.tracker.store
    if store is Store.SQLITE:
        location = uri.split(":///", 1)[1] if ":///" in uri else ""
        return Path(location).expanduser() if location not in ("", ":memory:") else None
    if found.tracker.whole_uri:
        return None
    return Path(found.location).expanduser()


def _load(target: str) -> object:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(f"ferryman.trackers.{module}"), name)


def _destinations() -> str:
    return ", ".join(
        f"{' '.join(tracker.prefixes)} ({tracker.kind} {tracker.store})"
        for tracker in TRACKERS
        if tracker.writer is not None
    )


def open_reader(uri: str, credentials: Credentials | None = None) -> TrackerReader:
    """A reader for the source URI (credentials from the environment unless given)."""
    found = endpoint(uri)
    tracker = found.tracker
    if tracker.reader is None:
        raise TrackerURIError(f"{uri!r} names a {tracker.kind} {tracker.store}, which ferryman cannot read")
    factory = _load(tracker.reader)
    creds = credentials if credentials is not None else Credentials.from_env("source", kind=tracker.kind)
    return cast(TrackerReader, factory(found, creds))  # type: ignore[operator]


def open_writer(uri: str, credentials: Credentials | None = None) -> TrackerWriter:
    """A writer for the destination URI (credentials from the environment unless given)."""
    found = endpoint(uri)
    tracker = found.tracker
    if tracker.writer is None:
        raise TrackerURIError(
            f"{uri!r} names a {tracker.kind} {tracker.store}, which ferryman cannot write; "
            f"destinations are {_destinations()}"
        )
    factory = _load(tracker.writer)
    creds = credentials if credentials is not None else Credentials.from_env("destination", kind=tracker.kind)
    return cast(TrackerWriter, factory(found, creds))  # type: ignore[operator]


# Variables whose values are secrets wherever they turn up: each end's own, the trackers' native ones and
# the object stores'.
SECRET_VARIABLES: tuple[str, ...] = (
    *(f"FERRYMAN_{role}_{name}" for role in ("SOURCE", "DESTINATION") for name in ("TOKEN", "PASSWORD")),
    *(variable for fields in NATIVE_CREDENTIALS.values() for name, variable in fields.items()
      if name != "USERNAME"),
    # read by MLflow's artifact stores and the Neptune client
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_CONNECTION_STRING", "NEPTUNE_API_TOKEN",
)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/\s:@'\"]*)(?::[^/\s@'\"]*)?@")
_SECRET_QUERY = re.compile(
    r"(?i)(?P<name>[?&;](?:password|passwd|pwd|token|access_token|api_key|apikey|secret|sig|signature)=)"
    r"[^&#\s'\"]+"
)


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    """The text with no credential left in it, for every message, report, log line, status and event: the
    password of each URL (`https://user:***@host/`), secret query parameters, and the value of every
    `SECRET_VARIABLES` variable set in the environment."""
    text = _USERINFO.sub(lambda match: f"{match['scheme']}{match['user']}:***@", text)
    text = _SECRET_QUERY.sub(lambda match: f"{match['name']}***", text)
    env = os.environ if env is None else env
    for variable in SECRET_VARIABLES:
        value = env.get(variable)
        if value and len(value) >= 4:  # shorter ones would mask ordinary words
            text = text.replace(value, "***")
    return text
