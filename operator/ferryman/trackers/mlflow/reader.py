"""Reading a tracking server or database store."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ferryman.trackers import paths
from ferryman.trackers.mlflow.backend import Backend
from ferryman.trackers.mlflow.fields import NOTE_TAG, dataset_inputs, run_from_fields
from ferryman.trackers.model import (
    Artifact,
    Experiment,
    LoggedModel,
    MetricBatch,
    ModelMetric,
    ModelVersion,
    Outcome,
    OutcomeKind,
    RegisteredModel,
    Run,
)
from ferryman.trackers.registry import Credentials, Endpoint


class MlflowReader:
    """Reads a tracking server or database store through MLflow's stores."""

    kind = "mlflow"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[list[str], str]] = {}  # run id -> (metric keys, artifact uri)

    def _report(self, outcome: Outcome) -> None:
        with self._lock:
            self._outcomes.append(outcome)

    def experiments(self, names: list[str] | None = None) -> Iterator[Experiment]:
        from mlflow.entities import ViewType

        if names:
            for name in names:
                found = self.backend.tracking.get_experiment_by_name(name)
                if found is not None and found.lifecycle_stage == "active":
                    yield _experiment(found)
            return
        token = None
        while True:
            page = self.backend.tracking.search_experiments(
                view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token
            )
            for found in page:
                yield _experiment(found)
            token = page.token
            if not token:
                return

    def runs(self, experiment: Experiment, since: int | None = None) -> Iterator[Run]:
        from mlflow.entities import ViewType

        query = f"attributes.start_time >= {since}" if since else ""
        token = None
        while True:
            page = self.backend.tracking.search_runs(
                [experiment.key], query, ViewType.ALL, 1000, ["attributes.start_time ASC"], token
            )
            for found in page:
                info, data = found.info, found.data
                with self._lock:
                    self._runs[info.run_id] = (sorted(data.metrics), info.artifact_uri)
                yield run_from_fields(
                    info.run_id,
                    experiment.key,
                    name=info.run_name,
                    status=info.status,
                    start=info.start_time,
                    end=info.end_time,
                    user=info.user_id,
                    tags=dict(data.tags),
                    params=dict(data.params),
                    lifecycle_stage=info.lifecycle_stage,
                    inputs=dataset_inputs(found.inputs),
                )
            token = page.token
            if not token:
                return

    def _run_details(self, run_key: str) -> tuple[list[str], str]:
        with self._lock:
            cached = self._runs.get(run_key)
        if cached is not None:
            return cached
        found = self.backend.tracking.get_run(run_key)
        details = (sorted(found.data.metrics), found.info.artifact_uri)
        with self._lock:
            self._runs[run_key] = details
        return details

    def metrics(self, run: Run) -> Iterator[MetricBatch]:
        keys, _ = self._run_details(run.key)
        for key in keys:
            yield from self.backend.metric_history(run.key, key)

    def artifacts(self, run: Run) -> Iterator[Artifact]:
        _, artifact_uri = self._run_details(run.key)
        if not artifact_uri:
            return
        missing = self.backend.missing_location(artifact_uri)
        moved = self.backend.beside_database(artifact_uri) if missing else None
        if moved is not None:
            artifact_uri = moved
            with self._lock:
                self._runs[run.key] = (self._runs[run.key][0], moved)
        elif missing:
            self._report(
                Outcome(
                    OutcomeKind.UNREADABLE,
                    f"run {run.key}/artifacts",
                    f"artifact location {artifact_uri} does not exist on this machine; any "
                    "artifacts of the run are not copied",
                )
            )
            return
        try:
            files = list(self.backend.list_artifacts(artifact_uri, self._escaped(run)))
        except Exception as error:
            self._report(Outcome(OutcomeKind.UNREADABLE, f"run {run.key}/artifacts", str(error)))
            return
        backend = self.backend
        for path, size in files:
            yield Artifact(path, functools.partial(backend.open_artifact, artifact_uri, path), size)

    def _escaped(self, run: Run) -> Callable[[Path], None]:
        def report(path: Path) -> None:
            self._report(Outcome(OutcomeKind.UNREADABLE, f"run {run.key}/artifact {path.name}",
                                 paths.escape_reason(path)))

        return report

    def registered_models(self) -> Iterator[RegisteredModel]:
        token = None
        while True:
            page = self.backend.registry.search_registered_models(max_results=1000, page_token=token)
            for model in page:
                aliases: dict[str, list[str]] = {}
                for alias in getattr(model, "aliases", {}) or {}:
                    version = model.aliases[alias] if isinstance(model.aliases, dict) else None
                    if version is not None:
                        aliases.setdefault(str(version), []).append(alias)
                versions = []
                for version in self._versions(model.name):
                    versions.append(
                        ModelVersion(
                            version=str(version.version),
                            run_key=version.run_id or None,
                            source=version.source or "",
                            stage=version.current_stage
                            if version.current_stage not in (None, "None")
                            else None,
                            aliases=sorted(aliases.get(str(version.version), [])),
                            tags=dict(version.tags or {}),
                            description=version.description or None,
                            status=version.status,
                            creation_time=version.creation_timestamp,
                        )
                    )
                yield RegisteredModel(
                    model.name,
                    model.description or None,
                    dict(model.tags or {}),
                    sorted(versions, key=lambda v: int(v.version)),
                )
            token = page.token
            if not token:
                return

    def _versions(self, name: str) -> Iterator[Any]:
        token = None
        escaped = name.replace("'", "\\'")
        while True:
            page = self.backend.registry.search_model_versions(
                f"name = '{escaped}'", max_results=1000, page_token=token
            )
            yield from page
            token = page.token
            if not token:
                return

    def logged_models(self, experiment: Experiment) -> Iterator[LoggedModel]:
        try:
            token = None
            while True:
                page = self.backend.tracking.search_logged_models(
                    [experiment.key], max_results=100, page_token=token
                )
                for model in page:
                    uri = model.artifact_location
                    backend = self.backend
                    files = (
                        [
                            Artifact(path, functools.partial(backend.open_artifact, uri, path), size)
                            for path, size in backend.list_artifacts(uri)
                        ]
                        if uri
                        else []
                    )
                    yield LoggedModel(
                        model.model_id,
                        model.name,
                        model.source_run_id or None,
                        experiment.key,
                        dict(model.tags or {}),
                        dict(model.params or {}),
                        files,
                        model.creation_timestamp,
                        [
                            ModelMetric(m.key, m.value, m.timestamp, m.step, m.run_id, m.dataset_name,
                                        m.dataset_digest)
                            for m in model.metrics or []
                        ],
                    )
                token = page.token
                if not token:
                    return
        except NotImplementedError:
            return

    def outcomes(self) -> list[Outcome]:
        with self._lock:
            return list(self._outcomes)

    def close(self) -> None:
        self.backend.close()


def _experiment(found: Any) -> Experiment:
    tags = dict(found.tags or {})
    description = tags.pop(NOTE_TAG, None)
    return Experiment(str(found.experiment_id), found.name, tags, description)


def open_reader(endpoint: Endpoint, credentials: Credentials) -> MlflowReader:
    """The reader for MLflow tracking servers and database stores (the URI registry's factory)."""
    return MlflowReader(Backend.connect(endpoint, credentials, "source"))
