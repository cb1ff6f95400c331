"""Tracker URIs: which reader or writer serves a `--from`/`--to` URI, and the credentials it gets.

The registry is a list of `Tracker` entries, first match wins. A tracker module adds one line to `TRACKERS`
naming a prefix and the `module:function` factories, which are imported only when used and are called as
`factory(uri, credentials)` with the full URI (scheme included) and return a `TrackerReader`/`TrackerWriter`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Tracker:
    kind: str  # short name recorded in source identities and reports: "mlflow", "tensorboard", …
    prefixes: tuple[str, ...]  # URI prefixes it serves ("" matches anything: plain paths)
    reader: str | None  # "module:function" returning a TrackerReader
    writer: str | None  # "module:function" returning a TrackerWriter


TRACKERS: list[Tracker] = [
    Tracker("wandb", ("wandb://",), "ferryman.trackers.wandb.api:open_reader", None),
    Tracker("wandb", ("wandb:",), "ferryman.trackers.wandb.offline:open_reader",
            "ferryman.trackers.wandb.writer:open_writer"),
    Tracker("tensorboard", ("tensorboard:",), "ferryman.trackers.tensorboard:open_reader",
            "ferryman.trackers.tensorboard_writer:open_writer"),
    Tracker("neptune", ("neptune-export:",), "ferryman.trackers.neptune:open_reader",
            "ferryman.trackers.neptune:open_writer"),
    Tracker("mlflow", ("http://", "https://"), "ferryman.trackers.mlflow:open_reader",
            "ferryman.trackers.mlflow:open_writer"),
    Tracker("mlflow", ("sqlite:", "postgresql:", "postgresql+", "mysql:", "mysql+"),
            "ferryman.trackers.mlflow:open_reader", "ferryman.trackers.mlflow:open_writer"),
    Tracker("mlflow", ("file:", ""), "ferryman.trackers.mlflow:open_reader", None),
]


def tracker_for(uri: str) -> Tracker:
    """The first registered tracker whose prefix the URI starts with (plain paths are MLflow file stores)."""
    for tracker in TRACKERS:
        if any(uri.startswith(prefix) for prefix in tracker.prefixes if prefix):
            return tracker
    for tracker in TRACKERS:
        if "" in tracker.prefixes and "://" not in uri:
            return tracker
    raise TrackerURIError(f"no tracker serves URI {uri!r}")


def _load(target: str) -> object:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def open_reader(uri: str, credentials: Credentials | None = None) -> TrackerReader:
    """A reader for the source URI (credentials from the environment unless given)."""
    tracker = tracker_for(uri)
    if tracker.reader is None:
        raise TrackerURIError(f"{uri!r}: {tracker.kind} cannot be read from this URI")
    factory = _load(tracker.reader)
    creds = credentials if credentials is not None else Credentials.from_env("source", kind=tracker.kind)
    return cast(TrackerReader, factory(uri, creds))  # type: ignore[operator]


def open_writer(uri: str, credentials: Credentials | None = None) -> TrackerWriter:
    """A writer for the destination URI (credentials from the environment unless given)."""
    tracker = tracker_for(uri)
    if tracker.writer is None:
        raise TrackerURIError(
            f"{uri!r}: {tracker.kind} cannot be written through this URI "
            "(MLflow destinations are tracking servers or sqlite:/postgresql: stores)"
        )
    factory = _load(tracker.writer)
    creds = credentials if credentials is not None else Credentials.from_env("destination", kind=tracker.kind)
    return cast(TrackerWriter, factory(uri, creds))  # type: ignore[operator]


def redact(uri: str) -> str:
    """The URI without any password embedded in it, for reports and logs."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return uri
    userinfo, _, host = rest.partition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
