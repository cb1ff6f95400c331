"""One MLflow end (tracking server or database store): its stores, artifacts and the fast metric path.

A database end opens MLflow's own stores (and imports MLflow, a second and more) only when something asks for
them: the bulk reader and writer (`bulk`) do most of their work with SQL on the end's own engine.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from ferryman.trackers import paths
from ferryman.trackers.mlflow.fields import HISTORY_PAGE, MlflowError, int_or_none
from ferryman.trackers.model import MetricBatch
from ferryman.trackers.paths import inside, safe_relative
from ferryman.trackers.registry import Credentials, Endpoint, Store, redact

HISTORY_BULK_PATH = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"  # MLflow's UI route: up to 25,000 points


def artifact_root_of(database: Path) -> Path:
    """Where a SQLite destination keeps its artifacts: beside it, named after it (`runs.db` ->
    `runs-artifacts/`), so two databases in one folder never share an artifact directory."""
    return database.with_name(f"{database.stem}-artifacts")


class Backend:
    """One MLflow end: its tracking and registry stores, artifacts, and the fast metric path."""

    def __init__(
        self,
        uri: str,
        tracking: Any = None,
        registry: Any = None,
        session: Any = None,
        headers: Any = None,
        default_artifact_root: str | None = None,
        base_dir: Path | None = None,
        snapshot: Path | None = None,
        role: str = "destination",
    ) -> None:
        self.uri = uri
        self.role = role
        self.base_dir = base_dir  # relative local artifact locations are relative to this directory
        self.snapshot = snapshot  # private copy of a source database, removed on close
        self._tracking = tracking  # a database end's MLflow stores: opened on first use (`tracking`)
        self._registry = registry
        self._stores_lock = threading.Lock()
        self.session = session  # requests.Session for servers, None for database stores
        self.headers = headers or {}
        self.default_artifact_root = default_artifact_root
        self.bulk_history = session is not None  # a server answering get-history-bulk (see metric_history)
        # What a database end's stores and engine open: the source's private snapshot, or the URI itself.
        self.store_uri = f"sqlite:///{snapshot}" if snapshot is not None else uri
        self.artifact_root = default_artifact_root or str(Path("mlartifacts").resolve())
        self._engine: Any = None

    @property
    def tracking(self) -> Any:
        """MLflow's tracking store (a database end's is opened, importing MLflow, on first use)."""
        return self._stores()[0]

    @property
    def registry(self) -> Any:
        """MLflow's model registry store (opened with the tracking store)."""
        return self._stores()[1]

    def _stores(self) -> tuple[Any, Any]:
        with self._stores_lock:
            if self._tracking is None:
                from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
                from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

                try:
                    self._tracking = SqlAlchemyStore(self.store_uri, self.artifact_root)
                    self._registry = RegistryStore(self.store_uri)
                except Exception as error:
                    where = f"{self.role} MLflow database {redact(self.uri)}"
                    raise MlflowError(f"cannot open {where}: {redact(str(error))}") from None
            return self._tracking, self._registry

    @property
    def engine(self) -> Any:
        """A database end's own SQLAlchemy engine (its DB-API connections serve the bulk path)."""
        with self._stores_lock:
            if self._engine is None:
                import sqlalchemy

                self._engine = sqlalchemy.create_engine(self.store_uri)
            return self._engine

    @classmethod
    def connect(cls, endpoint: Endpoint, credentials: Credentials, role: str) -> Backend:
        """The tracking server or database store the endpoint names, as "source" or "destination"."""
        if endpoint.tracker.store is Store.TRACKING_SERVER:
            return cls._connect_server(endpoint.uri.rstrip("/"), credentials, role)
        return cls._connect_database(endpoint.uri, role, sqlite=endpoint.tracker.store is Store.SQLITE)

    @classmethod
    def _connect_server(cls, uri: str, credentials: Credentials, role: str) -> Backend:
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
    def _connect_database(cls, uri: str, role: str, *, sqlite: bool) -> Backend:
        """A database end; MLflow's stores open later, when asked for. A source at another schema revision
        than the installed MLflow's opens them at once: MLflow upgrades an SQLite source's private snapshot
        (so it reads as one at the head), and refuses a server database's with the upgrade to run; so does a
        destination without MLflow's schema: MLflow creates it."""
        from ferryman.trackers.mlflow.schema import head_revision

        artifact_root = base_dir = snapshot = None
        if sqlite:
            path = Path(uri.split(":///", 1)[-1]) if ":///" in uri else None
            if path is not None and str(path) not in ("", ":memory:"):
                if role == "source" and not path.exists():
                    raise MlflowError(f"{role} MLflow database {path} does not exist")
                if role == "source":
                    base_dir = path.resolve().parent
                    snapshot = _snapshot(path)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                artifact_root = str(artifact_root_of(path).resolve())
        backend = cls(
            uri, default_artifact_root=artifact_root, base_dir=base_dir, snapshot=snapshot, role=role
        )
        revision = backend.revision()
        if (role == "source" and revision != head_revision()) or revision is None:
            if role == "source" and not sqlite:
                _refuse_outdated_source(uri)
            backend.tracking  # noqa: B018 (opens MLflow's stores: they upgrade, refuse or create the schema)
        return backend

    def revision(self) -> str | None:
        """The Alembic revision a database end's schema is stamped with (None without one)."""
        import sqlalchemy

        try:
            with self.engine.connect() as connection:
                return connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar()
        except sqlalchemy.exc.SQLAlchemyError:
            return None

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        if self._engine is not None:
            self._engine.dispose()
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
        if self.bulk_history:
            points = self._history_in_one(run_id, key)
            if points is not None:
                if points:
                    yield _batch_of(key, points)
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
                yield _batch_of(key, points)
            token = data.get("next_page_token")
            if not token:
                return

    def _history_in_one(self, run_id: str, key: str) -> list[dict[str, Any]] | None:
        """A series of fewer than `HISTORY_PAGE` points in one `get-history-bulk` answer (the server's
        cheapest exact read: plain JSON, no protobuf); None when the series may be longer (that endpoint has
        no page token) or the server has no such endpoint (then `bulk_history` turns off)."""
        response = self.session.get(
            f"{self.uri}{HISTORY_BULK_PATH}",
            params={"run_id": run_id, "metric_key": key, "max_results": HISTORY_PAGE},
            headers=self.headers,
            timeout=120,
        )
        if response.status_code in (404, 405, 501) and "error_code" not in response.text:  # no such route
            self.bulk_history = False
            return None
        if response.status_code != 200:
            raise MlflowError(
                f"get-history-bulk of {key!r} in run {run_id} on {self.uri} failed with HTTP "
                f"{response.status_code}: {response.text[:300]}"
            )
        points: list[dict[str, Any]] = response.json().get("metrics", [])
        return points if len(points) < HISTORY_PAGE else None

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

    def list_artifacts(
        self, artifact_uri: str, escaped: Callable[[Path], None] = lambda _: None
    ) -> Iterator[tuple[str, int | None]]:
        """Every file below the artifact URI, as (relative path, size); a local symlink leading out of the
        location is passed to `escaped` instead (trackers.paths)."""
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
                        yield child, int_or_none(entry.get("file_size"))
            return
        local = self._local(artifact_uri)
        if local is not None:
            if local.is_dir():
                for file in paths.files(local, escaped):
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
        """A local artifact location whose store is absent here (e.g. recorded on another machine). A run's
        directory (`<root>/<experiment>/<run>/artifacts`) that MLflow never created because the run logged no
        artifacts is not missing while the artifact root is here."""
        local = self._local(artifact_uri)
        return local is not None and not any(path.exists() for path in (local, *local.parents[:3]))

    def beside_database(self, artifact_uri: str) -> str | None:
        """Where a SQLite store's local artifact location recorded on another machine (`file:C:/Users/…`)
        is found on this one: the same `<experiment>/<run>/artifacts` under the database's own `mlruns/` or
        `mlartifacts/`, or the directory ferryman gives a SQLite destination (`artifact_root_of`), as a file
        store's runs are found under its own directory."""
        if self.base_dir is None or self._local(artifact_uri) is None:
            return None
        tail = [part for part in re.split(r"[\\/]", urllib.parse.unquote(artifact_uri)) if part][-3:]
        database = self.base_dir / Path(self.uri.split(":///", 1)[-1]).name
        for root in (self.base_dir / "mlruns", self.base_dir / "mlartifacts", artifact_root_of(database)):
            if len(tail) == 3 and root.is_dir():
                return (root.joinpath(*tail)).as_uri()
        return None

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
            return inside(local, path).open("rb")
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        target = tempfile.mkdtemp(prefix="ferryman-artifact-")
        downloaded = get_artifact_repository(artifact_uri).download_artifacts(path, target)
        return _TempFile(downloaded, target)

    def upload_artifact(self, artifact_uri: str, path: str, stream: IO[bytes]) -> None:
        """Store one file below the artifact URI; a name leaving it raises `UnsafePath` (trackers.paths)."""
        path = safe_relative(path)
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
            target = inside(local, path)
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


def _batch_of(key: str, points: list[dict[str, Any]]) -> MetricBatch:
    """Points as a server's JSON holds them (a NaN as a NaN literal or the string "NaN") as one batch."""
    return MetricBatch(
        key,
        [int(p.get("step", 0)) for p in points],
        [int(p.get("timestamp", 0)) for p in points],
        [float(p.get("value", 0.0)) for p in points],
        system=key.startswith("system/"),
    )


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
