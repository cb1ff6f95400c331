"""MLflow file stores (`mlruns/`, MLflow 1.x to 3.x layouts) read directly from disk, so runs left
RUNNING, old `meta.yaml` fields, and missing or corrupt files become explicit outcomes instead of silently
skipped runs."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from ferryman.convert.manifests import load_document
from ferryman.trackers import paths
from ferryman.trackers.mlflow.fields import HISTORY_PAGE, NOTE_TAG, MlflowError, int_or_none, run_from_fields
from ferryman.trackers.model import (
    Artifact,
    DatasetInput,
    Experiment,
    LoggedModel,
    MetricBatch,
    ModelVersion,
    Outcome,
    OutcomeKind,
    RegisteredModel,
    Run,
)
from ferryman.trackers.registry import Endpoint


def _file_opener(path: Path) -> Callable[[], BinaryIO]:
    return functools.partial(path.open, "rb")  # type: ignore[return-value]

class FileStoreReader:
    """Reads an MLflow file store (`mlruns/`) directly: layouts of MLflow 1.x to 3.x."""

    kind = "mlflow"

    def __init__(self, root: Path) -> None:
        root = root.expanduser().resolve()
        if not root.exists():
            raise MlflowError(f"MLflow file store {root} does not exist")
        if (
            not any((child / "meta.yaml").is_file() for child in root.iterdir() if child.is_dir())
            and (root / "mlruns").is_dir()
        ):
            root = root / "mlruns"
        self.root = root
        self._outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._run_dirs: dict[str, Path] = {}

    def _files(self, directory: Path) -> Iterator[Path]:
        """The files below a directory of the store, never following a symlink out of the store."""
        return paths.files(directory, self._escaped, self.root)

    def _escaped(self, path: Path) -> None:
        self._report(OutcomeKind.UNREADABLE, f"file {path}", paths.escape_reason(path))

    def _report(self, kind: OutcomeKind, item: str, reason: str) -> None:
        with self._lock:
            self._outcomes.append(Outcome(kind, item, reason))

    def _meta(self, path: Path) -> dict[str, Any] | None:
        if paths.leaves(self.root, path):
            self._escaped(path)
            return None
        try:  # with the manifest limits: a meta.yaml may be an alias bomb
            data = load_document(path.read_text())
        except FileNotFoundError:
            self._report(OutcomeKind.UNREADABLE, f"file {path}", "missing meta.yaml")
            return None
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as error:
            self._report(OutcomeKind.UNREADABLE, f"file {path}", f"unreadable: {error}")
            return None
        if not isinstance(data, dict):
            self._report(OutcomeKind.UNREADABLE, f"file {path}", "empty or not a mapping")
            return None
        return data

    def _key_values(self, directory: Path) -> dict[str, str]:
        """params/ and tags/: one file per key, keys with '/' as sub-directories."""
        values: dict[str, str] = {}
        if not directory.is_dir():
            return values
        for file in self._files(directory):
            if file.is_file():
                try:
                    values[file.relative_to(directory).as_posix()] = file.read_text()
                except (OSError, UnicodeDecodeError) as error:
                    self._report(OutcomeKind.UNREADABLE, f"file {file}", str(error))
        return values

    def experiments(self, names: list[str] | None = None) -> Iterator[Experiment]:
        for directory in sorted(self.root.iterdir()):
            if not directory.is_dir() or directory.name in (".trash", "models", ".mlflow"):
                continue
            if not (directory / "meta.yaml").exists():
                if any((child / "meta.yaml").exists() for child in directory.iterdir() if child.is_dir()):
                    self._report(
                        OutcomeKind.UNREADABLE,
                        f"experiment {directory.name}",
                        f"{directory / 'meta.yaml'} is missing; its runs are not migrated",
                    )
                continue
            meta = self._meta(directory / "meta.yaml")
            if meta is None or meta.get("lifecycle_stage") == "deleted":
                continue
            name = str(meta.get("name") or directory.name)
            if names and name not in names:
                continue
            tags = self._key_values(directory / "tags")
            description = tags.pop(NOTE_TAG, None)
            yield Experiment(str(meta.get("experiment_id", directory.name)), name, tags, description)

    def runs(self, experiment: Experiment, since: int | None = None) -> Iterator[Run]:
        directory = self.root / experiment.key
        found = []
        for run_dir in sorted(directory.iterdir()):
            if not run_dir.is_dir() or run_dir.name in ("tags", "models", "datasets", "traces"):
                continue
            meta = self._meta(run_dir / "meta.yaml")
            if meta is None:
                continue
            run_id = str(meta.get("run_id") or meta.get("run_uuid") or run_dir.name)
            run = run_from_fields(
                run_id,
                experiment.key,
                name=meta.get("run_name") or meta.get("name"),
                status=meta.get("status"),
                start=meta.get("start_time"),
                end=meta.get("end_time"),
                user=meta.get("user_id"),
                tags=self._key_values(run_dir / "tags"),
                params=self._key_values(run_dir / "params"),
                lifecycle_stage=meta.get("lifecycle_stage"),
                inputs=self._inputs(run_dir, directory / "datasets"),
            )
            if since and (run.start_time or 0) < since:
                continue
            with self._lock:
                self._run_dirs[run_id] = run_dir
            found.append(run)
        found.sort(key=lambda run: (run.start_time or 0, run.key))
        yield from found

    def _inputs(self, run_dir: Path, datasets: Path) -> list[DatasetInput]:
        """The run's dataset inputs: `inputs/<id>/meta.yaml` naming a dataset in the experiment's
        `datasets/<id>/meta.yaml`; an input whose dataset is missing is reported."""
        found = []
        inputs = run_dir / "inputs"
        for input_dir in sorted(inputs.iterdir()) if inputs.is_dir() else []:
            meta = self._meta(input_dir / "meta.yaml") or {}
            if meta.get("source_type") != "DATASET":
                continue
            dataset = self._meta(datasets / str(meta.get("source_id")) / "meta.yaml")
            if dataset is None:
                self._report(OutcomeKind.UNREADABLE, f"run {run_dir.name}/input {input_dir.name}",
                             f"its dataset {meta.get('source_id')} is missing from {datasets}")
                continue
            found.append(DatasetInput(
                str(dataset.get("name")), str(dataset.get("digest")), str(dataset.get("source_type")),
                str(dataset.get("source")), dataset.get("schema") or None, dataset.get("profile") or None,
                tuple(sorted((str(k), str(v)) for k, v in (meta.get("tags") or {}).items())),
            ))
        return found

    def _run_dir(self, run: Run) -> Path:
        with self._lock:
            return self._run_dirs.get(run.key) or self.root / run.experiment_key / run.key

    def metrics(self, run: Run) -> Iterator[MetricBatch]:
        directory = self._run_dir(run) / "metrics"
        if not directory.is_dir():
            return
        for file in self._files(directory):
            key = file.relative_to(directory).as_posix()
            steps: list[int] = []
            timestamps: list[int] = []
            values: list[float] = []
            bad = 0
            try:
                with file.open() as lines:
                    for line in lines:
                        fields = line.split()
                        if not fields:
                            continue
                        try:
                            timestamps.append(int(fields[0]))
                            values.append(float(fields[1]))
                            steps.append(int(fields[2]) if len(fields) > 2 else 0)
                        except (ValueError, IndexError):
                            del timestamps[len(steps) :], values[len(steps) :]
                            bad += 1
            except (OSError, UnicodeDecodeError) as error:
                self._report(OutcomeKind.UNREADABLE, f"run {run.key}/metric {key}", str(error))
            if bad:
                self._report(
                    OutcomeKind.UNREADABLE,
                    f"run {run.key}/metric {key}",
                    f"{bad} malformed line(s) in {file} skipped",
                )
            for start in range(0, len(values), HISTORY_PAGE):
                end = start + HISTORY_PAGE
                yield MetricBatch(
                    key,
                    steps[start:end],
                    timestamps[start:end],
                    values[start:end],
                    system=key.startswith("system/"),
                )

    def artifacts(self, run: Run) -> Iterator[Artifact]:
        directory = self._run_dir(run) / "artifacts"
        if not directory.is_dir():
            return
        for file in self._files(directory):
            if file.is_symlink() and not file.exists():
                self._report(
                    OutcomeKind.UNREADABLE,
                    f"run {run.key}/artifact {file.relative_to(directory)}",
                    "dangling symlink",
                )
                continue
            if file.is_file():
                yield Artifact(
                    file.relative_to(directory).as_posix(),
                    _file_opener(file),
                    file.stat().st_size,
                )

    def registered_models(self) -> Iterator[RegisteredModel]:
        models = self.root / "models"
        if not models.is_dir():
            return
        for directory in sorted(models.iterdir()):
            meta = self._meta(directory / "meta.yaml") if directory.is_dir() else None
            if meta is None:
                continue
            aliases: dict[str, list[str]] = {}
            for alias_file in (
                sorted((directory / "aliases").glob("*")) if (directory / "aliases").is_dir() else []
            ):
                aliases.setdefault(alias_file.read_text().strip(), []).append(alias_file.name)
            versions = []
            for version_dir in sorted(directory.glob("version-*")):
                vmeta = self._meta(version_dir / "meta.yaml")
                if vmeta is None:
                    continue
                number = str(vmeta.get("version", version_dir.name.removeprefix("version-")))
                stage = vmeta.get("current_stage")
                versions.append(
                    ModelVersion(
                        version=number,
                        run_key=vmeta.get("run_id") or None,
                        source=str(vmeta.get("source") or ""),
                        stage=stage if stage not in (None, "None") else None,
                        aliases=sorted(aliases.get(number, [])),
                        tags=self._key_values(version_dir / "tags"),
                        description=vmeta.get("description") or None,
                        status=vmeta.get("status"),
                        creation_time=int_or_none(vmeta.get("creation_timestamp")),
                    )
                )
            yield RegisteredModel(
                str(meta.get("name", directory.name)),
                meta.get("description") or None,
                self._key_values(directory / "tags"),
                sorted(versions, key=lambda v: int(v.version)),
            )

    def logged_models(self, experiment: Experiment) -> Iterator[LoggedModel]:
        models = self.root / experiment.key / "models"
        if not models.is_dir():
            return
        for directory in sorted(models.iterdir()):
            meta = self._meta(directory / "meta.yaml") if directory.is_dir() else None
            if meta is None:
                continue
            artifacts_dir = directory / "artifacts"
            files = (
                [
                    Artifact(f.relative_to(artifacts_dir).as_posix(), _file_opener(f), f.stat().st_size)
                    for f in self._files(artifacts_dir)
                    if f.is_file()
                ]
                if artifacts_dir.is_dir()
                else []
            )
            yield LoggedModel(
                str(meta.get("model_id", directory.name)),
                str(meta.get("name", directory.name)),
                meta.get("source_run_id") or None,
                experiment.key,
                self._key_values(directory / "tags"),
                self._key_values(directory / "params"),
                files,
                int_or_none(meta.get("creation_timestamp")),
            )

    def outcomes(self) -> list[Outcome]:
        with self._lock:
            return list(self._outcomes)

    def close(self) -> None:
        return None


def open_reader(endpoint: Endpoint, credentials: object = None) -> FileStoreReader:
    """The reader for `file:` URIs and plain paths (the URI registry's factory)."""
    return FileStoreReader(Path(endpoint.location))
