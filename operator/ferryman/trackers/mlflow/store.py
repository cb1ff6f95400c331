"""MLflow as a source and a destination.

* Tracking servers (`http(s)://`) and database stores (`sqlite:`, `postgresql:`, `mysql:`) go through MLflow's
  own store classes, each end with its own credentials (never the process-wide `MLFLOW_TRACKING_*` state).
  Metric points, the bulk of the data, take a lean path: JSON `log-batch` requests on a keep-alive session
  (servers) or `log_batch` straight into the SQL store.
* File stores (`mlruns/`, MLflow 1.x to 3.x layouts) are read directly from disk, so runs left RUNNING, old
  `meta.yaml` fields, and missing or corrupt files become explicit outcomes instead of silently skipped runs.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import json
import math
import posixpath
import re
import shutil
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

import yaml

from ferryman.migrate.ledger import source_state
from ferryman.trackers.registry import Credentials
from ferryman.migrate.validate import LONG_VALUES_ARTIFACT
from ferryman.trackers.model import (
    COMPLETE_TAG,
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
    RunStatus,
    TrackerReader,
)

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_BATCH_BYTES = 900_000  # MLflow rejects log-batch bodies above 1 MB
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
MAX_KEY_LENGTH = 250
HISTORY_PAGE = 25_000

# MLflow stores these as tags; the neutral model has fields for them.
RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"
NOTE_TAG = "mlflow.note.content"
PARENT_TAG = "mlflow.parentRunId"
_FIELD_TAGS = {RUN_NAME_TAG, USER_TAG, NOTE_TAG, PARENT_TAG}
_STATUS_BY_NUMBER = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}


_BAD_KEY_CHARACTERS = re.compile(r"[^\w.\- /:]")


def valid_key(key: str) -> bool:
    """A metric, param or tag key MLflow accepts (characters, length, a path that normalises to itself)."""
    return (
        0 < len(key) <= MAX_KEY_LENGTH
        and not _BAD_KEY_CHARACTERS.search(key)
        and posixpath.normpath(key) == key
        and not key.startswith(("/", ".."))
    )


def mlflow_key(key: str) -> str:
    """The key itself if MLflow accepts it, else a readable stand-in: other characters become `_`."""
    if valid_key(key):
        return key
    cleaned = "/".join(p for p in _BAD_KEY_CHARACTERS.sub("_", key).split("/") if p not in ("", ".", ".."))
    if not valid_key(cleaned):
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        cleaned = f"{cleaned[: MAX_KEY_LENGTH - 13]}_{digest}".strip("/") or digest
    return cleaned


class MlflowError(RuntimeError):
    """An MLflow endpoint failed in a way that names the endpoint and what was asked of it."""


def open_reader(uri: str, credentials: Credentials) -> TrackerReader:
    if uri.startswith(("http://", "https://")) or _is_database(uri):
        return MlflowReader(_Backend.connect(uri, credentials, "source"))
    return FileStoreReader(Path(uri.removeprefix("file://").removeprefix("file:")))


def open_writer(uri: str, credentials: Credentials) -> MlflowWriter:
    if not (uri.startswith(("http://", "https://")) or _is_database(uri)):
        raise MlflowError(f"{uri}: MLflow destinations are tracking servers or database stores")
    return MlflowWriter(_Backend.connect(uri, credentials, "destination"))


def _is_database(uri: str) -> bool:
    return uri.split(":", 1)[0].split("+", 1)[0] in {"sqlite", "postgresql", "mysql", "mssql"}


def _status(value: object) -> RunStatus:
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return RunStatus(_STATUS_BY_NUMBER.get(int(value), "RUNNING"))
    try:
        return RunStatus(str(value))
    except ValueError:
        return RunStatus.FINISHED


def _int_or_none(value: object) -> int | None:
    if value is None or value == "":
        return None
    return int(value)  # type: ignore[call-overload]


def _json_float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def run_from_fields(
    key: str,
    experiment_key: str,
    *,
    name: str | None,
    status: object,
    start: object,
    end: object,
    user: str | None,
    tags: dict[str, str],
    params: dict[str, str],
) -> Run:
    """A neutral run from MLflow's fields, with the field-like `mlflow.*` tags lifted out."""
    return Run(
        key=key,
        experiment_key=experiment_key,
        name=tags.get(RUN_NAME_TAG) or name or None,
        status=_status(status),
        start_time=_int_or_none(start),
        end_time=_int_or_none(end),
        user=tags.get(USER_TAG) or user or None,
        tags={k: v for k, v in tags.items() if k not in _FIELD_TAGS},
        notes=tags.get(NOTE_TAG),
        parent_key=tags.get(PARENT_TAG),
        params=params,
    )


# --------------------------------------------------------------------------------------------------- backend


class _Backend:
    """One MLflow end: its tracking and registry stores, artifacts, and the fast metric path."""

    def __init__(
        self,
        uri: str,
        tracking: Any,
        registry: Any,
        session: Any = None,
        headers: Any = None,
        default_artifact_root: str | None = None,
        base_dir: Path | None = None,
        snapshot: Path | None = None,
    ) -> None:
        self.uri = uri
        self.base_dir = base_dir  # relative local artifact locations are relative to this directory
        self.snapshot = snapshot  # private copy of a source database, removed on close
        self.tracking = tracking
        self.registry = registry
        self.session = session  # requests.Session for servers, None for database stores
        self.headers = headers or {}
        self.default_artifact_root = default_artifact_root

    @classmethod
    def connect(cls, uri: str, credentials: Credentials, role: str) -> _Backend:
        if uri.startswith(("http://", "https://")):
            return cls._connect_server(uri.rstrip("/"), credentials, role)
        return cls._connect_database(uri, role)

    @classmethod
    def _connect_server(cls, uri: str, credentials: Credentials, role: str) -> _Backend:
        import requests
        from mlflow.store.model_registry.rest_store import RestStore as RegistryRestStore
        from mlflow.store.tracking.rest_store import RestStore
        from mlflow.utils.rest_utils import MlflowHostCreds

        creds = MlflowHostCreds(
            uri, username=credentials.username, password=credentials.password, token=credentials.token
        )
        headers = {"Content-Type": "application/json"}
        if credentials.token:
            headers["Authorization"] = f"Bearer {credentials.token}"
        elif credentials.username:
            pair = f"{credentials.username}:{credentials.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=4,
            pool_maxsize=32,
            max_retries=requests.adapters.Retry(
                total=5, backoff_factor=0.5, allowed_methods=None, status_forcelist=(429, 502, 503, 504)
            ),
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        backend = cls(uri, RestStore(lambda: creds), RegistryRestStore(lambda: creds), session, headers)
        backend._probe(role)
        return backend

    def _probe(self, role: str) -> None:
        """Fail fast, naming the server and the problem, instead of after MLflow's long retry loop."""
        import requests

        url = f"{self.uri}/api/2.0/mlflow/experiments/search"
        try:  # no retries here: a refused connection is reported at once, a slow server gets two minutes
            response = requests.get(url, params={"max_results": 1}, headers=self.headers, timeout=(5, 120))
        except requests.ConnectionError as error:
            raise MlflowError(f"{role} MLflow server {self.uri} is unreachable: {error}") from None
        except requests.RequestException as error:
            raise MlflowError(f"{role} MLflow server {self.uri} did not answer: {error}") from None
        if response.status_code in (401, 403):
            raise MlflowError(
                f"{role} MLflow server {self.uri} rejected the credentials (HTTP {response.status_code}); "
                f"set FERRYMAN_{role.upper()}_TOKEN or FERRYMAN_{role.upper()}_USERNAME/_PASSWORD"
            )
        if response.status_code != 200:
            raise MlflowError(
                f"{role} MLflow server {self.uri} answered HTTP {response.status_code} "
                f"to {url}: {response.text[:300]}"
            )

    @classmethod
    def _connect_database(cls, uri: str, role: str) -> _Backend:
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        artifact_root = base_dir = snapshot = None
        store_uri = uri
        if uri.startswith("sqlite:"):
            path = Path(uri.split(":///", 1)[-1]) if ":///" in uri else None
            if path is not None and str(path) not in ("", ":memory:"):
                if role == "source" and not path.exists():
                    raise MlflowError(f"{role} MLflow database {path} does not exist")
                if role == "source":
                    base_dir = path.resolve().parent
                    snapshot = _snapshot(path)
                    store_uri = f"sqlite:///{snapshot}"
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                artifact_root = str((path.parent / "mlartifacts").resolve())
        elif role == "source":
            _refuse_outdated_source(uri)
        try:
            tracking = SqlAlchemyStore(store_uri, artifact_root or str(Path("mlartifacts").resolve()))
            registry = RegistryStore(store_uri)
        except Exception as error:
            raise MlflowError(f"cannot open {role} MLflow database {uri}: {error}") from None
        return cls(
            uri, tracking, registry, default_artifact_root=artifact_root, base_dir=base_dir, snapshot=snapshot
        )

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        if self.snapshot is not None:
            shutil.rmtree(self.snapshot.parent, ignore_errors=True)

    # ------------------------------------------------------------------------------------ metrics fast path

    def log_batch_json(
        self,
        run_id: str,
        metrics: list[dict[str, Any]],
        params: list[dict[str, str]] | None = None,
        tags: list[dict[str, str]] | None = None,
    ) -> None:
        if self.session is None:
            from mlflow.entities import Metric, Param, RunTag

            self.tracking.log_batch(
                run_id,
                metrics=[
                    Metric(m["key"], float(m["value"]), int(m["timestamp"]), int(m["step"])) for m in metrics
                ],
                params=[Param(p["key"], p["value"]) for p in params or ()],
                tags=[RunTag(t["key"], t["value"]) for t in tags or ()],
            )
            return
        body = json.dumps(
            {"run_id": run_id, "metrics": metrics, "params": params or [], "tags": tags or []},
            allow_nan=False,
        )
        url = f"{self.uri}/api/2.0/mlflow/runs/log-batch"
        response = self.session.post(url, data=body, headers=self.headers, timeout=120)
        if response.status_code != 200:
            raise MlflowError(
                f"log-batch for run {run_id} on {self.uri} failed with HTTP "
                f"{response.status_code}: {response.text[:500]}"
            )

    def metric_history(self, run_id: str, key: str) -> Iterator[MetricBatch]:
        if self.session is None:
            token = None
            while True:
                page = self.tracking.get_metric_history(
                    run_id, key, max_results=HISTORY_PAGE, page_token=token
                )
                if page:
                    yield MetricBatch(
                        key,
                        [m.step for m in page],
                        [m.timestamp for m in page],
                        [m.value for m in page],
                        system=key.startswith("system/"),
                    )
                token = page.token
                if not token:
                    return
        url = f"{self.uri}/api/2.0/mlflow/metrics/get-history"
        token = None
        while True:
            query: dict[str, Any] = {"run_id": run_id, "metric_key": key, "max_results": HISTORY_PAGE}
            if token:
                query["page_token"] = token
            response = self.session.get(url, params=query, headers=self.headers, timeout=120)
            if response.status_code != 200:
                raise MlflowError(
                    f"get-history of {key!r} in run {run_id} on {self.uri} failed with HTTP "
                    f"{response.status_code}: {response.text[:300]}"
                )
            data = response.json()
            points = data.get("metrics", [])
            if points:
                yield MetricBatch(
                    key,
                    [int(p.get("step", 0)) for p in points],
                    [int(p.get("timestamp", 0)) for p in points],
                    [float(p.get("value", 0.0)) for p in points],
                    system=key.startswith("system/"),
                )
            token = data.get("next_page_token")
            if not token:
                return

    # --------------------------------------------------------------------------------------------- artifacts

    def _proxied(self, artifact_uri: str) -> str | None:
        """The path under the server's artifact proxy, if the artifact URI is proxied."""
        if self.session is None or not artifact_uri.startswith("mlflow-artifacts:"):
            return None
        parsed = urllib.parse.urlparse(artifact_uri)
        return parsed.path.lstrip("/")

    def _local(self, artifact_uri: str) -> Path | None:
        if artifact_uri.startswith("file:"):
            return Path(urllib.parse.unquote(urllib.parse.urlparse(artifact_uri).path))
        if "://" not in artifact_uri and ":" not in artifact_uri.split("/", 1)[0]:
            path = Path(artifact_uri)
            return self.base_dir / path if self.base_dir is not None and not path.is_absolute() else path
        return None

    def list_artifacts(self, artifact_uri: str) -> Iterator[tuple[str, int | None]]:
        """Every file below the artifact URI, as (relative path, size)."""
        proxied = self._proxied(artifact_uri)
        if proxied is not None:
            pending = [""]
            while pending:
                relative = pending.pop()
                path = f"{proxied}/{relative}".rstrip("/")
                response = self.session.get(
                    f"{self.uri}/api/2.0/mlflow-artifacts/artifacts",
                    params={"path": path},
                    headers=self.headers,
                    timeout=60,
                )
                if response.status_code != 200:
                    raise MlflowError(
                        f"listing artifacts {path} on {self.uri} failed with HTTP "
                        f"{response.status_code}: {response.text[:300]}"
                    )
                for entry in response.json().get("files", []):
                    child = f"{relative}/{entry['path']}".lstrip("/")
                    if entry.get("is_dir"):
                        pending.append(child)
                    else:
                        yield child, _int_or_none(entry.get("file_size"))
            return
        local = self._local(artifact_uri)
        if local is not None:
            if local.is_dir():
                for file in sorted(local.rglob("*")):
                    if file.is_file():
                        yield file.relative_to(local).as_posix(), file.stat().st_size
            return
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        repository = get_artifact_repository(artifact_uri)
        pending = [""]
        while pending:
            relative = pending.pop()
            for info in repository.list_artifacts(relative or None):
                if info.is_dir:
                    pending.append(info.path)
                else:
                    yield info.path, info.file_size

    def missing_location(self, artifact_uri: str) -> bool:
        """A local artifact location whose store is absent here (e.g. recorded on another machine)."""
        local = self._local(artifact_uri)
        return local is not None and not local.exists() and not local.parent.parent.exists()

    def open_artifact(self, artifact_uri: str, path: str) -> BinaryIO:
        proxied = self._proxied(artifact_uri)
        if proxied is not None:
            url = f"{self.uri}/api/2.0/mlflow-artifacts/artifacts/{urllib.parse.quote(f'{proxied}/{path}')}"
            response = self.session.get(url, headers=self.headers, stream=True, timeout=300)
            if response.status_code != 200:
                raise MlflowError(
                    f"downloading artifact {path} from {self.uri} failed with HTTP {response.status_code}"
                )
            response.raw.decode_content = True
            return response.raw  # type: ignore[no-any-return, unused-ignore]
        local = self._local(artifact_uri)
        if local is not None:
            return (local / path).open("rb")
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        target = tempfile.mkdtemp(prefix="ferryman-artifact-")
        downloaded = get_artifact_repository(artifact_uri).download_artifacts(path, target)
        return _TempFile(downloaded, target)

    def upload_artifact(self, artifact_uri: str, path: str, stream: IO[bytes]) -> None:
        proxied = self._proxied(artifact_uri)
        if proxied is not None:
            url = f"{self.uri}/api/2.0/mlflow-artifacts/artifacts/{urllib.parse.quote(f'{proxied}/{path}')}"
            headers = {k: v for k, v in self.headers.items() if k != "Content-Type"}
            response = self.session.put(url, data=stream, headers=headers, timeout=600)
            if response.status_code != 200:
                raise MlflowError(
                    f"uploading artifact {path} to {self.uri} failed with HTTP "
                    f"{response.status_code}: {response.text[:300]}"
                )
            return
        local = self._local(artifact_uri)
        if local is not None:
            target = local / path
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".ferryman-partial")
            with partial.open("wb") as out:
                shutil.copyfileobj(stream, out, 1 << 20)
            partial.replace(target)
            return
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        with tempfile.TemporaryDirectory(prefix="ferryman-artifact-") as tmp:
            local_file = Path(tmp) / Path(path).name
            with local_file.open("wb") as out:
                shutil.copyfileobj(stream, out, 1 << 20)
            parent = str(Path(path).parent)
            get_artifact_repository(artifact_uri).log_artifact(
                str(local_file), None if parent == "." else parent
            )


def _file_opener(path: Path) -> Callable[[], BinaryIO]:
    return functools.partial(path.open, "rb")  # type: ignore[return-value]


def _snapshot(path: Path) -> Path:
    """A private copy of a source SQLite store (SQLite's online backup, from a read-only connection).

    MLflow's SQL store upgrades an older schema in place when it opens a database; a migration must never
    write to its source, so the store opens the copy instead.
    """
    import sqlite3

    directory = Path(tempfile.mkdtemp(prefix="ferryman-source-"))
    target = directory / path.name
    try:
        source = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        try:
            with sqlite3.connect(target) as copy:
                source.backup(copy)
        finally:
            source.close()
    except sqlite3.Error as error:
        shutil.rmtree(directory, ignore_errors=True)
        raise MlflowError(f"cannot read source MLflow database {path}: {error}") from None
    return target


def _refuse_outdated_source(uri: str) -> None:
    """A server database source is read as it is: never created or upgraded by ferryman."""
    import sqlalchemy
    from mlflow.store.db.utils import _all_tables_exist

    engine = sqlalchemy.create_engine(uri)
    try:
        if not _all_tables_exist(engine):
            raise MlflowError(
                f"source MLflow database {uri} lacks tables of the current MLflow schema; "
                "ferryman does not write to sources: run `mlflow db upgrade` on a copy and read that"
            )
    except sqlalchemy.exc.SQLAlchemyError as error:
        raise MlflowError(f"cannot open source MLflow database {uri}: {error}") from None
    finally:
        engine.dispose()


class _TempFile(io.FileIO):
    """A downloaded copy that removes its directory when closed."""

    def __init__(self, path: str, directory: str) -> None:
        super().__init__(path, "rb")
        self._directory = directory

    def close(self) -> None:
        super().close()
        shutil.rmtree(self._directory, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- reader


class MlflowReader:
    """Reads a tracking server or database store through MLflow's stores."""

    kind = "mlflow"

    def __init__(self, backend: _Backend) -> None:
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
                [experiment.key], query, ViewType.ACTIVE_ONLY, 1000, ["attributes.start_time ASC"], token
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
        if self.backend.missing_location(artifact_uri):
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
            files = list(self.backend.list_artifacts(artifact_uri))
        except Exception as error:
            self._report(Outcome(OutcomeKind.UNREADABLE, f"run {run.key}/artifacts", str(error)))
            return
        backend = self.backend
        for path, size in files:
            yield Artifact(path, functools.partial(backend.open_artifact, artifact_uri, path), size)

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


# ---------------------------------------------------------------------------------------------------- writer


class MlflowWriter:
    """Writes into a tracking server or database store (see `TrackerWriter` for the contract)."""

    kind = "mlflow"

    def __init__(self, backend: _Backend) -> None:
        self.backend = backend
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
                [experiment_key], "", ViewType.ACTIVE_ONLY, 1000, None, token
            )
            for run in page:
                tags = run.data.tags
                source = tags.get(SOURCE_TAG)
                if source is None:
                    continue
                with self._lock:
                    self._artifact_uris[run.info.run_id] = run.info.artifact_uri
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
        self.backend.log_batch_json(run_key, [], [], [{"key": PARENT_TAG, "value": parent_key}])

    def _store_whole(self, run_key: str, section: str, values: dict[str, str]) -> None:
        """Merge values into the run's long-values artifact (read, update, rewrite: idempotent)."""
        uri = self._artifact_uri(run_key)
        document: dict[str, dict[str, str]] = {}
        with contextlib.suppress(Exception), self.backend.open_artifact(uri, LONG_VALUES_ARTIFACT) as stream:
            document = json.loads(stream.read())
        document.setdefault(section, {}).update(values)
        self.backend.upload_artifact(uri, LONG_VALUES_ARTIFACT, io.BytesIO(json.dumps(document).encode()))

    def write_params(self, run_key: str, params: dict[str, str]) -> list[Outcome]:
        with self._lock:  # created by this writer and no params written yet: nothing to look up
            fresh = run_key in self._fresh and run_key not in self._params_written
            self._params_written.add(run_key)
        present = {} if fresh or not params else self.backend.tracking.get_run(run_key).data.params
        outcomes: list[Outcome] = []
        whole: dict[str, str] = {}
        entries = []
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
            entries.append({"key": key, "value": value})
        if whole:
            self._store_whole(run_key, "params", whole)
        for start in range(0, len(entries), MAX_PARAMS_TAGS_PER_BATCH):
            self.backend.log_batch_json(run_key, [], entries[start : start + MAX_PARAMS_TAGS_PER_BATCH], [])
        return outcomes

    def write_tags(self, run_key: str, tags: dict[str, str], notes: str | None = None) -> list[Outcome]:
        all_tags = dict(tags)
        if notes is not None:
            all_tags[NOTE_TAG] = notes
        outcomes: list[Outcome] = []
        whole: dict[str, str] = {}
        entries = []
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
            entries.append({"key": key, "value": value})
        if whole:
            self._store_whole(run_key, "tags", whole)
        for start in range(0, len(entries), MAX_PARAMS_TAGS_PER_BATCH):
            self.backend.log_batch_json(run_key, [], [], entries[start : start + MAX_PARAMS_TAGS_PER_BATCH])
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
        renamed = self._renamed(run_key)
        new: dict[str, str] = {}
        taken = set(renamed.values())
        for key in {b.key for b in batches if b.key not in renamed and not valid_key(b.key)}:
            target = mlflow_key(key)
            if target in taken:  # two keys cleaned to the same name: keep them apart
                target = f"{target[: MAX_KEY_LENGTH - 13]}_{hashlib.sha256(key.encode()).hexdigest()[:12]}"
            taken.add(target)
            new[key] = target
        if new:  # recorded before any point is written under the new name, so a resume maps it back
            self._store_whole(run_key, "metrics", new)
            renamed.update(new)
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

    def stored_artifacts(self, run_key: str) -> dict[str, int]:
        return {path: size or 0 for path, size in self.backend.list_artifacts(self._artifact_uri(run_key))}

    def write_artifact(self, run_key: str, artifact: Artifact) -> Outcome | None:
        with artifact.open() as stream:
            self.backend.upload_artifact(self._artifact_uri(run_key), artifact.path, stream)
        return None

    def finish_run(self, run_key: str, run: Run) -> None:
        from mlflow.entities import RunStatus as MlflowRunStatus

        state = source_state(run)
        self.backend.tracking.update_run_info(
            run_key, MlflowRunStatus.from_string(run.status.value), run.end_time, None
        )
        self.backend.log_batch_json(run_key, [], [], [{"key": COMPLETE_TAG, "value": state}])

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
        from mlflow.entities import LoggedModelParameter, LoggedModelStatus, LoggedModelTag

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
        store.finalize_logged_model(created.model_id, LoggedModelStatus.READY)
        return []

    def reader(self) -> MlflowReader:
        return MlflowReader(self.backend)

    def close(self) -> None:
        self.backend.close()


# ------------------------------------------------------------------------------------------------ file store


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

    def _report(self, kind: OutcomeKind, item: str, reason: str) -> None:
        with self._lock:
            self._outcomes.append(Outcome(kind, item, reason))

    def _meta(self, path: Path) -> dict[str, Any] | None:
        try:
            data = yaml.safe_load(path.read_text())
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
        for file in sorted(directory.rglob("*")):
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
            if meta.get("lifecycle_stage") == "deleted":
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
            )
            if since and (run.start_time or 0) < since:
                continue
            with self._lock:
                self._run_dirs[run_id] = run_dir
            found.append(run)
        found.sort(key=lambda run: (run.start_time or 0, run.key))
        yield from found

    def _run_dir(self, run: Run) -> Path:
        with self._lock:
            return self._run_dirs.get(run.key) or self.root / run.experiment_key / run.key

    def metrics(self, run: Run) -> Iterator[MetricBatch]:
        directory = self._run_dir(run) / "metrics"
        if not directory.is_dir():
            return
        for file in sorted(directory.rglob("*")):
            if not file.is_file():
                continue
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
        for file in sorted(directory.rglob("*")):
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
                        creation_time=_int_or_none(vmeta.get("creation_timestamp")),
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
                    for f in sorted(artifacts_dir.rglob("*"))
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
                _int_or_none(meta.get("creation_timestamp")),
            )

    def outcomes(self) -> list[Outcome]:
        with self._lock:
            return list(self._outcomes)

    def close(self) -> None:
        return None
