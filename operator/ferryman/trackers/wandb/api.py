"""W&B through its public API (`wandb://ENTITY[/PROJECT]`), read with `wandb.Api` (wandb 0.31).

URI: `wandb://ENTITY/PROJECT[?filters=<JSON>&base_url=URL]`, or `wandb://ENTITY` for every project of the
entity (`--experiment` picks projects by name). `filters` is a W&B run filter (the MongoDB-style
dict `wandb.Api.runs` takes, e.g. `{"tags": {"$in": ["prod"]}}`); `base_url` (or `WANDB_BASE_URL`) points at
a self-hosted server. The API key comes from the source credentials' token or `WANDB_API_KEY`.

- History is read whole with `Run.scan_history` (wandb-core pages the run's exported parquet history and the
  live GraphQL `history` pages), every row with its `_step` and `_timestamp`; numeric values become metric
  points, anything else (media, tables, histograms, strings) is counted per key. Media files are run files.
- System metrics come from the run's `events` stream (`history(stream="system")`), which the server samples:
  when the cap is reached the run reports it as truncated.
- Config (flattened, `_wandb` internals left in the run's `config.yaml`), tags (as tags with empty values),
  notes, group, job type, sweep and commit (as `wandb.*` tags); summary and metadata travel in the run files.
- Files (`run.files()`) and logged artifacts (`artifacts/<name>/<version>/<path>`) are streamed over HTTP
  and checked against the MD5 digests W&B records.
- Rate limits: wandb-core retries GraphQL 429s and 5xx itself, honouring `Retry-After`, with exponential
  backoff; ferryman bounds that (`retries`, `max_wait`) and applies the same policy to file downloads. When
  the budget is spent the error says so. Run details are loaded by a thread pool while runs are listed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, BinaryIO, cast
from urllib.parse import parse_qs, urlsplit

import httpx

from ferryman.trackers.model import (
    Artifact,
    Experiment,
    LoggedModel,
    MetricBatch,
    Outcome,
    OutcomeKind,
    RegisteredModel,
    Run,
    RunStatus,
)
from ferryman.trackers.registry import Credentials, Endpoint

BATCH_POINTS = 10_000
SYSTEM_SAMPLES = 100_000  # events rows asked for; the server samples beyond its own cap
_STATUS = {
    "finished": RunStatus.FINISHED,
    "failed": RunStatus.FAILED,
    "crashed": RunStatus.FAILED,
    "killed": RunStatus.KILLED,
    "running": RunStatus.RUNNING,
    "pending": RunStatus.SCHEDULED,
    "preempted": RunStatus.KILLED,
}


class WandbApiError(RuntimeError):
    """The W&B API cannot serve the migration: bad credentials, a missing project, a spent retry budget."""


def open_reader(endpoint: Endpoint, credentials: Credentials) -> WandbApiReader:
    """The reader for `wandb://ENTITY[/PROJECT]` (the URI registry's factory)."""
    uri = endpoint.uri
    parts = urlsplit(uri)
    entity, project = parts.netloc, parts.path.strip("/")
    if not entity or "/" in project:
        raise WandbApiError(f"{uri!r}: expected wandb://ENTITY/PROJECT or wandb://ENTITY")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    filters = None
    if "filters" in query:
        try:
            filters = json.loads(query["filters"])
        except json.JSONDecodeError as error:
            raise WandbApiError(f"{uri!r}: filters is not JSON: {error}") from None
    return WandbApiReader(  # the token is FERRYMAN_SOURCE_TOKEN, else WANDB_API_KEY
        entity, project or None, api_key=credentials.token, base_url=query.get("base_url"), filters=filters
    )


def _iso_ms(text: str | None) -> int | None:
    """W&B's ISO times ("2026-01-01T00:00:00", UTC without an offset) as epoch milliseconds."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _flatten(prefix: str, value: Any, into: dict[str, Any]) -> None:
    if isinstance(value, dict) and value and "_type" not in value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, into)
    else:
        into[prefix] = value


def _param_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


class WandbApiReader:
    """A `TrackerReader` over one W&B project."""

    def __init__(
        self,
        entity: str,
        project: str | None,
        *,
        api_key: str | None,
        base_url: str | None = None,
        filters: dict[str, Any] | None = None,
        workers: int = 4,
        retries: int = 6,
        min_wait: float = 1.0,
        max_wait: float = 60.0,
        timeout: int = 60,
    ) -> None:
        self.entity, self.project = entity, project
        self.filters = filters or {}
        self.retries, self.min_wait, self.max_wait, self.timeout = retries, min_wait, max_wait, timeout
        self._workers = workers
        self._outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._runs: dict[str, Any] = {}
        if not api_key:
            raise WandbApiError(
                f"wandb://{entity}/{project}: no API key (set WANDB_API_KEY or FERRYMAN_SOURCE_TOKEN)"
            )
        self._api = self._connect(api_key, base_url or os.environ.get("WANDB_BASE_URL"))
        self.base_url = self._api.settings["base_url"]
        self._http = httpx.Client(timeout=timeout, follow_redirects=True)
        self._api_key = api_key

    @property
    def where(self) -> str:
        if self.project is None:
            return f"W&B entity {self.entity}"
        return f"W&B project {self.entity}/{self.project}"

    def _connect(self, api_key: str, base_url: str | None) -> Any:
        import wandb
        from wandb.apis.public.service_api import ServiceApi
        from wandb.errors import AuthenticationError

        overrides = {"base_url": base_url} if base_url else {}
        try:
            api = wandb.Api(overrides=overrides, api_key=api_key, timeout=self.timeout)
        except AuthenticationError as error:
            raise WandbApiError(f"{self.where}: the API key was rejected ({error})") from None
        except Exception as error:  # wandb-core reports transport failures as plain exceptions
            raise WandbApiError(f"{self.where}: cannot reach the W&B API: {error}") from None
        # Bound wandb-core's own GraphQL retries (it honours Retry-After and backs off exponentially).
        settings = api._service_api._settings.model_copy(
            update={
                "x_graphql_retry_max": self.retries,
                "x_graphql_retry_wait_min_seconds": float(self.min_wait),
                "x_graphql_retry_wait_max_seconds": float(self.max_wait),
            }
        )
        api._service_api = ServiceApi(settings=settings, timeout=self.timeout)
        return api

    def _call(self, what: str, action: Callable[[], Any]) -> Any:
        """Run an API call, turning wandb's errors into ones that name the project and what failed."""
        try:
            return action()
        except WandbApiError:
            raise
        except Exception as error:
            text = str(error)
            if "Could not find project" in text or "project not found" in text.lower():
                raise WandbApiError(
                    f"{self.where} does not exist or is not visible with this API key"
                ) from None
            if "429" in text:
                raise WandbApiError(
                    f"{self.where}: {what}: still rate limited after {self.retries} retries ({text})"
                ) from None
            if "401" in text or "403" in text or "permission" in text.lower():
                raise WandbApiError(f"{self.where}: {what}: access denied ({text})") from None
            raise WandbApiError(f"{self.where}: {what} failed: {text}") from error

    def _report(self, *outcomes: Outcome) -> None:
        with self._lock:
            self._outcomes.extend(outcomes)

    # --- TrackerReader ------------------------------------------------------------------------------------

    def experiments(self, names: list[str] | None = None) -> Iterator[Experiment]:
        """The project of the URI, or with `wandb://ENTITY` every project of the entity (by name or
        ENTITY/NAME in `names`)."""
        if self.project is not None:
            if names and self.project not in names and f"{self.entity}/{self.project}" not in names:
                return
            query = """
            query FerrymanProject($entity: String!, $project: String!) {
                project(name: $project, entityName: $entity) { id name entityName description }
            }"""
            variables = {"entity": self.entity, "project": self.project}
            result = self._call("reading the project", lambda: self._graphql(query, variables))
            project = (result or {}).get("project")
            if not project:
                raise WandbApiError(f"{self.where} does not exist or is not visible with this API key")
            yield self._experiment(project)
            return
        query = """
        query FerrymanProjects($entity: String!, $cursor: String) {
            models(entityName: $entity, after: $cursor, first: 100) {
                pageInfo { endCursor hasNextPage }
                edges { node { id name entityName description } }
            }
        }"""
        cursor: str | None = None
        while True:
            page_variables: dict[str, Any] = {"entity": self.entity, "cursor": cursor}
            page = self._call("listing projects", partial(self._graphql, query, page_variables)).get("models")
            if page is None:
                raise WandbApiError(f"{self.where} does not exist or is not visible with this API key")
            for edge in page["edges"]:
                node = edge["node"]
                if not names or node["name"] in names or f"{self.entity}/{node['name']}" in names:
                    yield self._experiment(node)
            if not page["pageInfo"]["hasNextPage"]:
                return
            cursor = page["pageInfo"]["endCursor"]

    def _graphql(self, query: str, variables: dict[str, Any]) -> Any:
        return self._api._service_api.execute_graphql(query, variables)

    def _experiment(self, project: dict[str, Any]) -> Experiment:
        return Experiment(
            key=f"{self.entity}/{project['name']}",
            name=project["name"],
            description=project.get("description") or None,
        )

    def runs(self, experiment: Experiment, since: int | None = None) -> Iterator[Run]:
        """Runs in creation order; `since` keeps runs created at or after it (a server-side filter)."""
        filters = dict(self.filters)
        if since is not None:
            stamp = datetime.fromtimestamp(since / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
            condition = {"createdAt": {"$gte": stamp}}
            filters = {"$and": [filters, condition]} if filters else condition
        listing = self._call("listing runs", lambda: iter(self._api.runs(experiment.key, filters=filters)))
        pending: deque[Future[Any]] = deque()
        with ThreadPoolExecutor(self._workers, thread_name_prefix="wandb-run") as pool:
            while True:
                while len(pending) < 2 * self._workers:
                    source = self._call("listing runs", lambda: next(listing, None))
                    if source is None:
                        break
                    pending.append(pool.submit(self._load, source))
                if not pending:
                    return
                source = pending.popleft().result()
                run = self._to_run(experiment, source)
                if since is not None and (run.start_time or 0) < since:
                    continue
                with self._lock:
                    self._runs[run.key] = source
                yield run

    def _load(self, source: Any) -> Any:
        self._call(f"loading run {source.id}", lambda: source.load_full_data())
        return source

    def _to_run(self, experiment: Experiment, source: Any) -> Run:
        attrs = source._attrs
        start = _iso_ms(attrs.get("createdAt"))
        state = str(attrs.get("state") or "finished").lower()
        status = _STATUS.get(state, RunStatus.FINISHED)
        summary = dict(source.summary._json_dict) if source.summary is not None else {}
        runtime = summary.get("_runtime")
        end = None
        if status is not RunStatus.RUNNING:
            heartbeat = _iso_ms(attrs.get("heartbeatAt"))
            end = start + int(runtime * 1000) if isinstance(runtime, int | float) and start else heartbeat
        tags = {tag: "" for tag in attrs.get("tags") or []}
        for field, tag in (
            ("group", "wandb.group"),
            ("jobType", "wandb.job_type"),
            ("sweepName", "wandb.sweep"),
            ("commit", "wandb.commit"),
        ):
            if attrs.get(field):
                tags[tag] = str(attrs[field])
        if state not in _STATUS:
            tags["wandb.state"] = state
        config: dict[str, Any] = {}
        for key, value in (source.config or {}).items():
            if key != "_wandb":
                _flatten(key, value, config)
        user = attrs.get("user") or {}
        return Run(
            key=source.id,
            experiment_key=experiment.key,
            name=attrs.get("displayName") or source.id,
            status=status,
            start_time=start,
            end_time=end,
            user=user.get("username") or user.get("name"),
            tags=tags,
            notes=attrs.get("notes") or None,
            params={key: _param_text(value) for key, value in config.items()},
        )

    def _source(self, run: Run) -> Any:
        with self._lock:
            source = self._runs.get(run.key)
        if source is None:
            raise WandbApiError(f"{self.where}: run {run.key} was not listed by this reader")
        return source

    def metrics(self, run: Run) -> Iterator[MetricBatch]:
        source = self._source(run)
        yield from self._history(run, source)
        yield from self._system_metrics(run, source)

    def _history(self, run: Run, source: Any) -> Iterator[MetricBatch]:
        buffers: dict[str, MetricBatch] = {}
        skipped: dict[str, str] = {}
        skipped_count: dict[str, int] = {}
        untimed = 0
        scan = self._call(f"reading the history of run {run.key}", lambda: iter(source.scan_history()))
        while True:
            row = self._call(f"reading the history of run {run.key}", lambda: next(scan, None))
            if row is None:
                break
            step = row.get("_step")
            stamp = row.get("_timestamp")
            if not isinstance(stamp, int | float):
                untimed += 1
                timestamp = run.start_time or 0
            else:
                timestamp = round(stamp * 1000)
            flat: dict[str, Any] = {}
            for key, value in row.items():
                if not key.startswith("_"):
                    _flatten(key, value, flat)
            for key, value in flat.items():
                if value is None:
                    continue
                if isinstance(value, bool) or not isinstance(value, int | float):
                    kind = value.get("_type", "object") if isinstance(value, dict) else type(value).__name__
                    skipped.setdefault(key, kind)
                    skipped_count[key] = skipped_count.get(key, 0) + 1
                    continue
                batch = buffers.get(key)
                if batch is None:
                    batch = buffers[key] = MetricBatch(key, [], [], [])
                batch.steps.append(int(step) if isinstance(step, int | float) else len(batch))
                batch.timestamps.append(timestamp)
                batch.values.append(float(value))
                if len(batch) >= BATCH_POINTS:
                    yield buffers.pop(key)
        yield from (batch for batch in buffers.values() if len(batch))
        for key, kind in skipped.items():
            self._report(
                Outcome(
                    OutcomeKind.UNSUPPORTED,
                    f"run {run.key}/history key {key}",
                    f"{skipped_count[key]} values of type {kind} are not metric points (media are run files)",
                )
            )
        if untimed:
            self._report(
                Outcome(OutcomeKind.TRUNCATED, f"run {run.key}/history", f"{untimed} rows without _timestamp")
            )

    def _system_metrics(self, run: Run, source: Any) -> Iterator[MetricBatch]:
        rows = self._call(
            f"reading the system metrics of run {run.key}",
            lambda: source.history(samples=SYSTEM_SAMPLES, stream="system", pandas=False),
        )
        series: dict[str, MetricBatch] = {}
        for index, row in enumerate(rows):
            stamp = row.get("_timestamp")
            timestamp = round(stamp * 1000) if isinstance(stamp, int | float) else run.start_time or 0
            for key, value in row.items():
                if key.startswith("_") or isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                batch = series.setdefault(key, MetricBatch(key, [], [], [], system=True))
                batch.steps.append(index)
                batch.timestamps.append(timestamp)
                batch.values.append(float(value))
        yield from series.values()
        if len(rows) >= SYSTEM_SAMPLES:
            self._report(
                Outcome(
                    OutcomeKind.TRUNCATED,
                    f"run {run.key}/system metrics",
                    f"the W&B server returns at most {SYSTEM_SAMPLES} sampled system-metric rows",
                )
            )

    def artifacts(self, run: Run) -> Iterator[Artifact]:
        source = self._source(run)
        files = self._call(f"listing the files of run {run.key}", lambda: list(source.files()))
        for file in files:
            yield self._remote(run, file.name, file)
        logged = self._call(
            f"listing the artifacts of run {run.key}", lambda: list(source.logged_artifacts())
        )
        for artifact in logged:
            name, _, version = artifact.name.partition(":")
            members = self._call(f"listing artifact {artifact.name}", artifact_files(artifact))
            for file in members:
                yield self._remote(run, f"artifacts/{name}/{version or artifact.version}/{file.name}", file)

    def _remote(self, run: Run, path: str, file: Any) -> Artifact:
        attrs = file._attrs  # run files carry GraphQL names, artifact files pydantic field names
        url = attrs.get("directUrl") or attrs.get("direct_url") or attrs.get("url")
        md5 = attrs.get("md5") or attrs.get("digest")
        size = attrs.get("sizeBytes", attrs.get("size_bytes"))
        item = f"run {run.key}/file {path}"
        return Artifact(path=path, open=lambda: self._download(item, url, md5), size=size)

    def _download(self, item: str, url: str, md5: str | None) -> BinaryIO:
        """The file's bytes (spooled), retried on 429/5xx with Retry-After and backoff, MD5-checked."""
        import tempfile

        auth = ("api", self._api_key) if url.startswith(self.base_url) else None
        wait = self.min_wait
        for attempt in range(self.retries + 1):
            try:
                with self._http.stream("GET", url, auth=auth) as response:
                    if response.status_code == 429 or response.status_code >= 500:
                        if attempt == self.retries:
                            status = response.status_code
                            raise WandbApiError(
                                f"{self.where}: {item}: HTTP {status} after {self.retries} retries"
                            )
                        time.sleep(min(self.max_wait, _retry_after(response) or wait))
                        wait = min(self.max_wait, wait * 2)
                        continue
                    if response.status_code != 200:
                        raise WandbApiError(
                            f"{self.where}: {item}: download failed with HTTP {response.status_code}"
                        )
                    spool = tempfile.SpooledTemporaryFile(max_size=16 << 20)  # noqa: SIM115 (returned open)
                    digest = hashlib.md5(usedforsecurity=False)
                    for chunk in response.iter_bytes(1 << 20):
                        digest.update(chunk)
                        spool.write(chunk)
            except httpx.TransportError as error:
                if attempt == self.retries:
                    raise WandbApiError(f"{self.where}: {item}: {error}") from None
                time.sleep(wait)
                wait = min(self.max_wait, wait * 2)
                continue
            got = base64.b64encode(digest.digest()).decode()
            if md5 and md5 not in (got, digest.hexdigest()):
                spool.close()
                self._report(Outcome(OutcomeKind.UNREADABLE, item, f"MD5 {got} differs from W&B's {md5}"))
                raise WandbApiError(
                    f"{self.where}: {item}: downloaded bytes have MD5 {got}, W&B records {md5}"
                )
            spool.seek(0)
            return cast(BinaryIO, spool)
        raise AssertionError("unreachable")

    def registered_models(self) -> Iterator[RegisteredModel]:
        return iter(())  # the W&B model registry is not read; model artifacts travel as run artifacts

    def logged_models(self, experiment: Experiment) -> Iterator[LoggedModel]:
        return iter(())

    def outcomes(self) -> list[Outcome]:
        with self._lock:
            return list(self._outcomes)

    def close(self) -> None:
        self._http.close()


def artifact_files(artifact: Any) -> Callable[[], list[Any]]:
    # a plain loop: list() would ask ArtifactFiles for a length that older servers cannot give
    return lambda: [file for file in artifact.files()]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
