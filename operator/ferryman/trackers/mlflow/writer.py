"""Writing into a tracking server or database store."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import sys
import threading
from typing import Any

from ferryman.trackers.mlflow.backend import Backend
from ferryman.trackers.mlflow.fields import (
    MAX_BATCH_BYTES,
    MAX_KEY_LENGTH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_LENGTH,
    NOTE_TAG,
    PARENT_TAG,
    RUN_NAME_TAG,
    USER_TAG,
    MlflowError,
    mlflow_key,
    valid_key,
)
from ferryman.trackers.mlflow.reader import MlflowReader
from ferryman.trackers.model import (
    COMPLETE_TAG,
    LONG_VALUES_ARTIFACT,
    SOURCE_TAG,
    SOURCE_VERSION_TAG,
    Artifact,
    DestinationRun,
    Experiment,
    LoggedModel,
    MetricBatch,
    ModelVersion,
    Outcome,
    OutcomeKind,
    RegisteredModel,
    Run,
    source_state,
)
from ferryman.trackers.registry import Credentials, Endpoint

# how a unique-key violation reads in MLflow's error, raised by its store or relayed by a server: the class
# names of SQLAlchemy's and of the PostgreSQL driver's exceptions, which lead the message
DUPLICATE_KEY_ERRORS = ("IntegrityError", "UniqueViolation")


def _json_float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")

class MlflowWriter:
    """Writes into a tracking server or database store (see `TrackerWriter` for the contract)."""

    kind = "mlflow"
    marks_deleted = True
    largest_value = sys.float_info.max  # MLflow's SQL stores hold an infinity as the largest double
    keeps_inputs = True

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._deleted: set[str] = set()  # migrated runs found deleted: restored before they are written
        self._artifact_uris: dict[str, str] = {}
        self._fresh: set[str] = set()  # runs this writer created (nothing of theirs to look up)
        self._renames: dict[str, dict[str, str]] = {}  # run -> source metric key -> stored key
        self._params_written: set[str] = set()
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return self.backend.uri

    def ensure_experiment(self, experiment: Experiment) -> str:
        from mlflow.entities import ExperimentTag

        store = self.backend.tracking
        found = store.get_experiment_by_name(experiment.name)
        if found is not None:
            if found.lifecycle_stage != "active":
                raise MlflowError(
                    f"experiment {experiment.name!r} on {self.uri} is deleted; restore or purge it"
                )
            return str(found.experiment_id)
        tags = [ExperimentTag(k, v) for k, v in experiment.tags.items()]
        if experiment.description:
            tags.append(ExperimentTag(NOTE_TAG, experiment.description))
        try:
            return str(store.create_experiment(experiment.name, tags=tags))
        except Exception:
            found = store.get_experiment_by_name(experiment.name)  # created concurrently by another shard
            if found is None:
                raise
            return str(found.experiment_id)

    def migrated_runs(self, experiment_key: str) -> dict[str, DestinationRun]:
        from mlflow.entities import ViewType

        found: dict[str, DestinationRun] = {}
        token = None
        while True:
            page = self.backend.tracking.search_runs(
                [experiment_key], "", ViewType.ALL, 1000, None, token
            )
            for run in page:
                tags = run.data.tags
                source = tags.get(SOURCE_TAG)
                if source is None:
                    continue
                with self._lock:
                    self._artifact_uris[run.info.run_id] = run.info.artifact_uri
                    if run.info.lifecycle_stage == "deleted":
                        self._deleted.add(run.info.run_id)
                state = tags.get(COMPLETE_TAG)
                found[source] = DestinationRun(run.info.run_id, source, state is not None, state)
            token = page.token
            if not token:
                return found

    def create_run(self, experiment_key: str, run: Run, source: str) -> str:
        from mlflow.entities import RunTag

        tags = [RunTag(SOURCE_TAG, source)]
        if run.name:
            tags.append(RunTag(RUN_NAME_TAG, run.name[:MAX_TAG_LENGTH]))
        if run.user:
            tags.append(RunTag(USER_TAG, run.user[:MAX_TAG_LENGTH]))
        created = self.backend.tracking.create_run(
            experiment_id=experiment_key,
            user_id=run.user or "",
            start_time=run.start_time,
            tags=tags,
            run_name=(run.name or "")[:MAX_TAG_LENGTH] or None,
        )
        with self._lock:
            self._artifact_uris[created.info.run_id] = created.info.artifact_uri
            self._fresh.add(created.info.run_id)
        return str(created.info.run_id)

    def _artifact_uri(self, run_key: str) -> str:
        with self._lock:
            uri = self._artifact_uris.get(run_key)
        if uri is None:
            uri = self.backend.tracking.get_run(run_key).info.artifact_uri
            with self._lock:
                self._artifact_uris[run_key] = uri
        return uri

    def set_parent(self, run_key: str, parent_key: str) -> None:
        self._log_entries(run_key, tags={PARENT_TAG: parent_key})

    def _log_entries(
        self, run_key: str, params: dict[str, str] | None = None, tags: dict[str, str] | None = None
    ) -> None:
        """Log params (new ones) and tags (set or replaced) on a run, as MLflow's `log_batch` does."""
        params_list = [{"key": k, "value": v} for k, v in (params or {}).items()]
        tags_list = [{"key": k, "value": v} for k, v in (tags or {}).items()]
        for start in range(0, max(len(params_list), len(tags_list)), MAX_PARAMS_TAGS_PER_BATCH):
            end = start + MAX_PARAMS_TAGS_PER_BATCH
            self.backend.log_batch_json(run_key, [], params_list[start:end], tags_list[start:end])

    def _store_whole(self, run_key: str, section: str, values: dict[str, str]) -> None:
        """Merge values into the run's long-values artifact (read, update, rewrite: idempotent)."""
        uri = self._artifact_uri(run_key)
        document: dict[str, dict[str, str]] = {}
        with contextlib.suppress(Exception), self.backend.open_artifact(uri, LONG_VALUES_ARTIFACT) as stream:
            document = json.loads(stream.read())
        document.setdefault(section, {}).update(values)
        self.backend.upload_artifact(uri, LONG_VALUES_ARTIFACT, io.BytesIO(json.dumps(document).encode()))

    def _stored_params(self, run_key: str) -> dict[str, str]:
        return dict(self.backend.tracking.get_run(run_key).data.params)

    def write_params(self, run_key: str, params: dict[str, str]) -> list[Outcome]:
        with self._lock:  # the engine's first write to a resumed run: MLflow writes active runs only
            restore = run_key in self._deleted
            self._deleted.discard(run_key)
        if restore:
            self.backend.tracking.restore_run(run_key)
        with self._lock:  # created by this writer and no params written yet: nothing to look up
            fresh = run_key in self._fresh and run_key not in self._params_written
            self._params_written.add(run_key)
        present = {} if fresh or not params else self._stored_params(run_key)
        outcomes: list[Outcome] = []
        whole: dict[str, str] = {}
        entries: dict[str, str] = {}
        for key, value in params.items():
            if key in present:
                continue
            if not valid_key(key):
                whole[key] = value
                outcomes.append(
                    Outcome(
                        OutcomeKind.STORED_AS_ARTIFACT,
                        f"run {run_key}/param {key[:80]}",
                        f"MLflow does not accept this key (characters, length or path); kept in "
                        f"{LONG_VALUES_ARTIFACT}",
                    )
                )
                continue
            if len(value) > MAX_PARAM_LENGTH:
                whole[key] = value
                outcomes.append(
                    Outcome(
                        OutcomeKind.STORED_AS_ARTIFACT,
                        f"run {run_key}/param {key}",
                        f"value of {len(value)} characters exceeds MLflow's {MAX_PARAM_LENGTH}; "
                        f"param holds the first {MAX_PARAM_LENGTH}, {LONG_VALUES_ARTIFACT} "
                        "the whole value",
                    )
                )
                value = value[:MAX_PARAM_LENGTH]
            entries[key] = value
        if whole:
            self._store_whole(run_key, "params", whole)
        self._log_entries(run_key, params=entries)
        return outcomes

    def write_tags(self, run_key: str, tags: dict[str, str], notes: str | None = None) -> list[Outcome]:
        all_tags = dict(tags)
        if notes is not None:
            all_tags[NOTE_TAG] = notes
        outcomes: list[Outcome] = []
        whole: dict[str, str] = {}
        entries: dict[str, str] = {}
        for key, value in all_tags.items():
            if key in (SOURCE_TAG, COMPLETE_TAG):
                continue
            if not valid_key(key) or len(value) > MAX_TAG_LENGTH:
                whole[key] = value
                outcomes.append(
                    Outcome(
                        OutcomeKind.STORED_AS_ARTIFACT,
                        f"run {run_key}/tag {key[:80]}",
                        f"beyond MLflow's limits (key characters or length {MAX_KEY_LENGTH}, value "
                        f"{MAX_TAG_LENGTH}); kept whole in {LONG_VALUES_ARTIFACT}",
                    )
                )
                if not valid_key(key):
                    continue
                value = value[:MAX_TAG_LENGTH]
            entries[key] = value
        if whole:
            self._store_whole(run_key, "tags", whole)
        self._log_entries(run_key, tags=entries)
        return outcomes

    def _renamed(self, run_key: str) -> dict[str, str]:
        """Source metric key -> the key it is stored under, for keys MLflow does not accept."""
        with self._lock:
            known = self._renames.get(run_key)
            if known is None and run_key in self._fresh:
                known = self._renames[run_key] = {}
        if known is None:
            known = {}
            uri = self._artifact_uri(run_key)
            with contextlib.suppress(Exception), self.backend.open_artifact(uri, LONG_VALUES_ARTIFACT) as doc:
                known = dict(json.loads(doc.read()).get("metrics", {}))
            with self._lock:
                self._renames[run_key] = known
        return known

    def high_water_marks(self, run_key: str) -> dict[str, int]:
        keys = self.backend.tracking.get_run(run_key).data.metrics
        source_keys = {stored: source for source, stored in self._renamed(run_key).items()}
        return {
            source_keys.get(key, key): sum(len(batch) for batch in self.backend.metric_history(run_key, key))
            for key in keys
        }

    def write_metrics(self, run_key: str, batches: list[MetricBatch]) -> None:
        renamed = self._stored_keys(run_key, batches)
        chunk: list[dict[str, Any]] = []
        size = 0
        for batch in batches:
            key = renamed.get(batch.key, batch.key)
            overhead = len(key) + 70
            for step, timestamp, value in zip(batch.steps, batch.timestamps, batch.values, strict=True):
                chunk.append({"key": key, "value": _json_float(value), "timestamp": timestamp, "step": step})
                size += overhead
                if len(chunk) == MAX_METRICS_PER_BATCH or size >= MAX_BATCH_BYTES:
                    self.backend.log_batch_json(run_key, chunk)
                    chunk, size = [], 0
        if chunk:
            self.backend.log_batch_json(run_key, chunk)

    def _stored_keys(self, run_key: str, batches: list[MetricBatch]) -> dict[str, str]:
        """Source metric key -> stored key for the keys MLflow does not accept; new ones are recorded in the
        long-values artifact before any point is written under them, so a resume maps them back."""
        renamed = self._renamed(run_key)
        new: dict[str, str] = {}
        taken = set(renamed.values())
        for key in {b.key for b in batches if b.key not in renamed and not valid_key(b.key)}:
            target = mlflow_key(key)
            if target in taken:  # two keys cleaned to the same name: keep them apart
                target = f"{target[: MAX_KEY_LENGTH - 13]}_{hashlib.sha256(key.encode()).hexdigest()[:12]}"
            taken.add(target)
            new[key] = target
        if new:
            self._store_whole(run_key, "metrics", new)
            renamed.update(new)
        return renamed

    def stored_artifacts(self, run_key: str) -> dict[str, int]:
        return {path: size or 0 for path, size in self.backend.list_artifacts(self._artifact_uri(run_key))}

    def write_artifact(self, run_key: str, artifact: Artifact) -> Outcome | None:
        with artifact.open() as stream:
            self.backend.upload_artifact(self._artifact_uri(run_key), artifact.path, stream)
        return None

    def finish_run(self, run_key: str, run: Run) -> None:
        from mlflow.entities import RunStatus as MlflowRunStatus

        self.backend.tracking.update_run_info(
            run_key, MlflowRunStatus.from_string(run.status.value), run.end_time, None
        )
        if run.inputs:
            self._write_inputs(run_key, run)
        self._log_entries(run_key, tags={COMPLETE_TAG: source_state(run)})
        if run.deleted:
            self.backend.tracking.delete_run(run_key)

    def _write_inputs(self, run_key: str, run: Run) -> None:
        """The run's dataset inputs (MLflow keeps one of each dataset and input, so this is idempotent), again
        when another run of the experiment logged the same dataset at the same moment: MLflow's store looks
        for the dataset, then inserts it, so the later insert fails on the unique key and rolls back (seen
        with two workers, on PostgreSQL and behind a server on SQLite); the second time the store finds it."""
        from mlflow.exceptions import MlflowException

        try:
            self._log_inputs(run_key, run)
        except MlflowException as error:
            if not any(marker in error.message for marker in DUPLICATE_KEY_ERRORS):
                raise
            self._log_inputs(run_key, run)

    def _log_inputs(self, run_key: str, run: Run) -> None:
        from mlflow.entities import Dataset, InputTag
        from mlflow.entities import DatasetInput as MlflowDatasetInput

        self.backend.tracking.log_inputs(run_key, datasets=[
            MlflowDatasetInput(
                Dataset(
                    found.name, found.digest, found.source_type, found.source, found.schema, found.profile
                ),
                [InputTag(key, value) for key, value in found.tags],
            )
            for found in run.inputs
        ])

    def write_registered_model(self, model: RegisteredModel, run_keys: dict[str, str]) -> list[Outcome]:
        from mlflow.entities.model_registry import ModelVersionTag, RegisteredModelTag

        registry = self.backend.registry
        outcomes: list[Outcome] = []
        try:
            registry.get_registered_model(model.name)
        except Exception:
            registry.create_registered_model(
                model.name, [RegisteredModelTag(k, v) for k, v in model.tags.items()], model.description
            )
        escaped = model.name.replace("'", "\\'")
        existing = {
            v.tags.get(SOURCE_VERSION_TAG): v
            for v in registry.search_model_versions(f"name = '{escaped}'", max_results=1000)
        }
        for version in model.versions:
            target = existing.get(version.version)
            if target is None:
                run_id = run_keys.get(version.run_key or "")
                source = version.source
                if version.run_key and run_id is None:
                    outcomes.append(
                        Outcome(
                            OutcomeKind.TRUNCATED,
                            f"model {model.name} version {version.version}",
                            f"its run {version.run_key} was not migrated; the version keeps "
                            "its original source and no run link",
                        )
                    )
                elif run_id is not None:
                    source = self._relink_source(version, run_id)
                tags = [ModelVersionTag(k, v) for k, v in version.tags.items()]
                tags.append(ModelVersionTag(SOURCE_VERSION_TAG, version.version))
                target = registry.create_model_version(
                    model.name, source, run_id, tags, None, version.description
                )
            if version.stage and target.current_stage != version.stage:
                registry.transition_model_version_stage(model.name, target.version, version.stage, False)
            for alias in version.aliases:
                registry.set_registered_model_alias(model.name, alias, target.version)
        return outcomes

    def _relink_source(self, version: ModelVersion, run_id: str) -> str:
        """Point a version's source at the same path inside the migrated run's artifacts."""
        source = version.source
        if source.startswith("runs:/"):
            _, _, rest = source.removeprefix("runs:/").partition("/")
            return f"runs:/{run_id}/{rest}"
        marker = f"{version.run_key}/artifacts"
        if version.run_key and marker in source:
            relative = source.split(marker, 1)[1].lstrip("/")
            return f"{self._artifact_uri(run_id).rstrip('/')}/{relative}".rstrip("/")
        return source

    def write_logged_model(
        self, model: LoggedModel, experiment_key: str, run_keys: dict[str, str]
    ) -> list[Outcome]:
        from mlflow.entities import LoggedModelParameter, LoggedModelStatus, LoggedModelTag, Metric

        store = self.backend.tracking
        for found in store.search_logged_models([experiment_key], max_results=1000):
            if (found.tags or {}).get(SOURCE_TAG) == model.key:
                return []
        tags = [LoggedModelTag(k, v) for k, v in model.tags.items()] + [LoggedModelTag(SOURCE_TAG, model.key)]
        created = store.create_logged_model(
            experiment_key,
            model.name,
            run_keys.get(model.run_key or ""),
            tags,
            [LoggedModelParameter(k, v) for k, v in model.params.items()],
            None,
        )
        for artifact in model.artifacts:
            with artifact.open() as stream:
                self.backend.upload_artifact(created.artifact_location, artifact.path, stream)
        outcomes: list[Outcome] = []
        by_run: dict[str, list[Metric]] = {}
        for metric in model.metrics:  # MLflow keeps a model's metrics through the run that logged them
            run_id = run_keys.get(metric.run_key or "")
            if run_id is None:
                outcomes.append(Outcome(
                    OutcomeKind.SKIPPED, f"logged model {model.name}/metric {metric.key}",
                    f"logged by run {metric.run_key}, which is not migrated; MLflow stores a model's metric "
                    "through its run",
                ))
                continue
            by_run.setdefault(run_id, []).append(Metric(
                metric.key, metric.value, metric.timestamp, metric.step, created.model_id,
                metric.dataset_name, metric.dataset_digest, run_id,
            ))
        for run_id, metrics in by_run.items():
            for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
                store.log_batch(run_id, metrics[start : start + MAX_METRICS_PER_BATCH], [], [])
        store.finalize_logged_model(created.model_id, LoggedModelStatus.READY)
        return outcomes

    def reader(self) -> MlflowReader:
        return MlflowReader(self.backend)

    def close(self) -> None:
        self.backend.close()


def open_writer(endpoint: Endpoint, credentials: Credentials) -> MlflowWriter:
    """The writer for MLflow tracking servers and database stores (the URI registry's factory)."""
    return MlflowWriter(Backend.connect(endpoint, credentials, "destination"))
