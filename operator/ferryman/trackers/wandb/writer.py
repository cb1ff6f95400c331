"""W&B as a migration destination (`wandb:PATH`): runs written through the real wandb SDK.

Offline by default: runs land in `PATH/wandb/offline-run-*-<id>/` for `wandb sync` to upload later. With an
API key (`FERRYMAN_DESTINATION_TOKEN` or `WANDB_API_KEY`) the SDK runs online and uploads as it writes; the
build machines cannot reach W&B, so that mode is untested here.

W&B accepts a run's history only in increasing step order and drops anything logged behind the current
step, so a run is staged first (`PATH/.ferryman/<id>/`: a state file, a SQLite table of points, the files)
and written through the SDK in one go by `finish_run`, rows merged by step. Staging makes the writer
resumable: a crash before or during `finish_run` leaves the staged data, and the next attempt writes the run
again from scratch.
Run ids derive from the source identity, so re-runs address the same W&B run.

What W&B cannot hold natively is kept so ferryman's own reader (`offline.WandbDirReader`) restores it exactly:
- status, start/end time, user, key/value tags and the parent go into the `_ferryman` config entry;
- each row carries the earliest timestamp of its points as `_timestamp`; a point whose own timestamp differs
  adds a `_ferryman_ts/<key>` column;
- points a history row cannot take (negative steps, a second value for a key at one step, reserved key names)
  go to `ferryman-unrepresentable-points.jsonl` among the run's files;
- system metrics become `stats` records (the SDK has no public call for them) at their own timestamps.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ferryman.trackers import paths
from ferryman.trackers.model import (
    COMPLETE_TAG,
    SOURCE_TAG,
    Artifact,
    DestinationRun,
    Experiment,
    MetricBatch,
    Outcome,
    Run,
    RunStatus,
    WithoutModelRegistry,
    source_state,
)
from ferryman.trackers.registry import Credentials, Endpoint
from ferryman.trackers.wandb.datastore import NotAWandbLog, read_payloads
from ferryman.trackers.wandb.offline import (
    ENVELOPE,
    F_EXIT,
    INTERNAL_KEYS,
    LEFTOVERS_FILE,
    RUN_DIR,
    SDK_FILES,
    SOURCE_FILES_PREFIX,
    STEP_PREFIX,
    TIMESTAMP_PREFIX,
    WandbDirReader,
    first_field,
    project_name,
)

STAGING = ".ferryman"
_SDK_LOCK = threading.Lock()  # one SDK run at a time per process: wandb's global state is not thread-safe


def wait_for_exit_record(run_dir: Path, timeout: float = 60.0) -> None:
    """Block until the run's log holds its exit record: `Run.finish` returns before wandb-core has flushed
    the log, and a run must be complete on disk before it is marked complete or read back."""
    deadline = time.monotonic() + timeout
    while True:
        for log in run_dir.glob("*.wandb"):
            try:
                if any(first_field(p) == F_EXIT for p in read_payloads(log, [])):
                    return
            except (NotAWandbLog, OSError):
                pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{run_dir}: wandb did not write the run's exit record within {timeout:.0f}s")
        time.sleep(0.05)


def run_id_for(source: str) -> str:
    """The W&B run id of a source identity: stable, so a re-run addresses the same run."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


class WandbWriter(WithoutModelRegistry):
    """A `TrackerWriter` into W&B run directories (offline) or W&B itself (online, with an API key)."""

    no_registry_reason = "W&B keeps models in its online registry; run directories cannot hold them"

    def __init__(self, root: Path, api_key: str | None = None, entity: str | None = None) -> None:
        self.root = root
        self.api_key = api_key
        self.entity = entity
        self.staging = root / STAGING
        self.staging.mkdir(parents=True, exist_ok=True)

    # -- staging ------------------------------------------------------------------------------------------

    def _dir(self, run_key: str) -> Path:
        return self.staging / run_key

    def _state(self, run_key: str) -> dict[str, Any]:
        return json.loads((self._dir(run_key) / "state.json").read_text(encoding="utf-8"))

    def _save_state(self, run_key: str, state: dict[str, Any]) -> None:
        path = self._dir(run_key) / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)

    def _points(self, run_key: str) -> sqlite3.Connection:
        db = sqlite3.connect(self._dir(run_key) / "points.sqlite", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS points (seq INTEGER PRIMARY KEY, key TEXT NOT NULL,"
            " step INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL, system INTEGER NOT NULL)"
        )
        return db

    # -- TrackerWriter --------------------------------------------------------------------------------------

    def ensure_experiment(self, experiment: Experiment) -> str:
        return project_name(experiment.name)  # a W&B project exists as soon as a run names it

    def migrated_runs(self, experiment_key: str) -> dict[str, DestinationRun]:
        found: dict[str, DestinationRun] = {}
        for state_file in sorted(self.staging.glob("*/state.json")):
            state = json.loads(state_file.read_text(encoding="utf-8"))
            if state["project"] == experiment_key:
                found[state["source"]] = DestinationRun(
                    key=state_file.parent.name,
                    source=state["source"],
                    complete=state["complete"],
                    source_state=state["finished"] if state["complete"] else None,
                )
        return found

    def create_run(self, experiment_key: str, run: Run, source: str) -> str:
        run_key = run_id_for(source)
        directory = self._dir(run_key)
        if (directory / "state.json").exists():
            return run_key
        (directory / "files").mkdir(parents=True, exist_ok=True)
        self._save_state(
            run_key,
            {
                "source": source,
                "project": experiment_key,
                "name": run.name,
                "start_time": run.start_time,
                "user": run.user,
                "params": {},
                "tags": {},
                "notes": None,
                "parent": None,
                "complete": False,
                "finished": None,
                "counts": {},
                "files": {},
            },
        )
        return run_key

    def set_parent(self, run_key: str, parent_key: str) -> None:
        state = self._state(run_key)
        state["parent"] = parent_key
        self._save_state(run_key, state)

    def write_params(self, run_key: str, params: dict[str, str]) -> list[Outcome]:
        state = self._state(run_key)
        state["params"].update(params)
        self._save_state(run_key, state)
        return []

    def write_tags(self, run_key: str, tags: dict[str, str], notes: str | None = None) -> list[Outcome]:
        state = self._state(run_key)
        state["tags"].update(tags)
        if notes is not None:
            state["notes"] = notes
        self._save_state(run_key, state)
        return []

    def high_water_marks(self, run_key: str) -> dict[str, int]:
        state = self._state(run_key)
        if state["complete"]:
            return dict(state["counts"])
        with self._points(run_key) as db:
            return dict(db.execute("SELECT key, COUNT(*) FROM points GROUP BY key").fetchall())

    def write_metrics(self, run_key: str, batches: list[MetricBatch]) -> None:
        db = self._points(run_key)
        try:
            db.execute("BEGIN")
            for batch in batches:
                system = int(batch.system)
                db.executemany(
                    "INSERT INTO points (key, step, ts, value, system) VALUES (?, ?, ?, ?, ?)",
                    (
                        (batch.key, s, t, v, system)
                        for s, t, v in zip(batch.steps, batch.timestamps, batch.values, strict=True)
                    ),
                )
            db.execute("COMMIT")
        finally:
            db.close()

    def stored_artifacts(self, run_key: str) -> dict[str, int]:
        state = self._state(run_key)
        if state["complete"]:
            return dict(state["files"])
        files = self._dir(run_key) / "files"
        return {p.relative_to(files).as_posix(): p.stat().st_size for p in files.rglob("*") if p.is_file()}

    def write_artifact(self, run_key: str, artifact: Artifact) -> Outcome | None:
        try:
            target = paths.inside(self._dir(run_key) / "files", artifact.path)
        except paths.UnsafePath as error:
            return paths.unsafe_outcome(f"file {artifact.path}", error)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        with artifact.open() as source, tmp.open("wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        os.replace(tmp, target)
        return None

    def finish_run(self, run_key: str, run: Run) -> None:
        state = self._state(run_key)
        if state["complete"]:
            return
        with _SDK_LOCK:
            counts = self._write_with_sdk(run_key, state, run)
        state["complete"] = True
        state["counts"] = counts
        state["files"] = self.stored_artifacts(run_key)
        state["finished"] = source_state(run)
        self._save_state(run_key, state)
        (self._dir(run_key) / "points.sqlite").unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            (self._dir(run_key) / f"points.sqlite{suffix}").unlink(missing_ok=True)
        shutil.rmtree(self._dir(run_key) / "files", ignore_errors=True)

    def reader(self) -> WandbDirReader:
        return WandbDirReader(self.root)

    def close(self) -> None:
        pass

    # -- the SDK write ------------------------------------------------------------------------------------

    def _remove_partial(self, run_key: str) -> None:
        wandb_dir = self.root / "wandb"
        if wandb_dir.is_dir():
            for path in wandb_dir.iterdir():
                match = RUN_DIR.match(path.name)
                if match and match.group(2) == run_key and path.is_dir():
                    shutil.rmtree(path)

    def _write_with_sdk(self, run_key: str, state: dict[str, Any], run: Run) -> dict[str, int]:
        import wandb  # heavy import, only when a run is written

        self._remove_partial(run_key)  # an earlier attempt that crashed mid-write
        tags = dict(state["tags"])
        tags[SOURCE_TAG] = state["source"]
        tags[COMPLETE_TAG] = "true"
        labels: list[str] = []
        if "wandb.tags" in tags:
            try:
                labels = [str(t) for t in json.loads(tags["wandb.tags"])]
            except ValueError:
                labels = []
        leftovers: list[dict[str, Any]] = []
        system_keys: dict[str, str] = {}
        envelope = {
            "source": state["source"],
            "status": run.status.value,
            "start_time": state["start_time"],
            "end_time": run.end_time,
            "user": state["user"],
            "name": state["name"],
            "tags": tags,
            "parent": state["parent"],
            "system_keys": system_keys,
        }
        config: dict[str, Any] = dict(state["params"])
        config[ENVELOPE] = envelope
        settings = wandb.Settings(
            mode="online" if self.api_key else "offline",
            api_key=self.api_key,
            silent=True,
            x_disable_stats=True,
            x_disable_meta=True,
            console="off",
            x_save_requirements=False,
            save_code=False,
            disable_git=True,
            x_disable_machine_info=True,
        )
        wrun = wandb.init(
            dir=str(self.root),
            project=state["project"],
            entity=self.entity,
            id=run_key,
            name=state["name"],
            notes=state["notes"],
            tags=labels[:] or None,
            group=tags.get("wandb.group"),
            job_type=tags.get("wandb.job_type"),
            config=config,
            resume="allow",
            settings=settings,
            reinit="create_new",
        )
        counts: dict[str, int] = {}
        try:
            db = self._points(run_key)
            try:
                for step, row in self._rows(db, leftovers, counts):
                    wrun.log(row, step=step)
                self._write_stats(wrun, db, system_keys, counts)
            finally:
                db.close()
            files = self._dir(run_key) / "files"
            if leftovers:
                files.mkdir(parents=True, exist_ok=True)
                with (files / LEFTOVERS_FILE).open("w", encoding="utf-8") as out:
                    for point in leftovers:
                        out.write(json.dumps(point, sort_keys=True) + "\n")
            self._copy_files(wrun, files)
            if system_keys:
                wrun.config.update({ENVELOPE: envelope}, allow_val_change=True)
            wrun.finish(exit_code=0 if run.status == RunStatus.FINISHED else 1)
            wait_for_exit_record(Path(wrun.dir).parent)
        except BaseException:
            wrun.finish(exit_code=1)
            raise
        (self._dir(run_key) / "files" / LEFTOVERS_FILE).unlink(missing_ok=True)
        return counts

    @staticmethod
    def _rows(
        db: sqlite3.Connection, leftovers: list[dict[str, Any]], counts: dict[str, int]
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """History rows in step order: one per step, the earliest timestamp as `_timestamp`."""
        current: int | None = None
        points: dict[str, tuple[int, float]] = {}

        def row() -> dict[str, Any]:
            when = min(ts for ts, _ in points.values())
            out: dict[str, Any] = {key: value for key, (_, value) in points.items()}
            out["_timestamp"] = when / 1000
            for key, (ts, _) in points.items():
                if ts != when:
                    out[TIMESTAMP_PREFIX + key] = ts
            return out

        for key, step, ts, value in db.execute(
            "SELECT key, step, ts, value FROM points WHERE system = 0 ORDER BY step, seq"
        ):
            counts[key] = counts.get(key, 0) + 1
            value = float("nan") if value is None else value  # SQLite stores NaN as NULL
            if (
                step < 0
                or key in INTERNAL_KEYS
                or key.startswith("_ferryman")
                or (key in points and step == current)
            ):
                leftovers.append({"key": key, "step": step, "timestamp": ts, "value": value})
                continue
            if step != current:
                if points:
                    yield current, row()  # type: ignore[misc]
                current, points = step, {}
            points[key] = (ts, value)
        if points:
            yield current, row()  # type: ignore[misc]

    @staticmethod
    def _write_stats(
        wrun: Any, db: sqlite3.Connection, system_keys: dict[str, str], counts: dict[str, int]
    ) -> None:
        from wandb.proto import wandb_internal_pb2 as pb

        interface = wrun._interface  # private: the SDK samples system metrics itself and has no public call
        index: dict[str, int] = {}
        records: dict[int, Any] = {}
        for key, step, ts, value in db.execute(
            "SELECT key, step, ts, value FROM points WHERE system = 1 ORDER BY ts, seq"
        ):
            counts[key] = counts.get(key, 0) + 1
            stats_key = key.removeprefix("system/")
            if not key.startswith("system/"):
                system_keys[stats_key] = key
            record = records.get(ts)
            if record is None or any(item.key == stats_key for item in record.item):
                if record is not None:
                    interface._publish(interface._make_record(stats=record))
                record = records[ts] = pb.StatsRecord(stats_type=pb.StatsRecord.StatsType.SYSTEM)  # type: ignore[attr-defined]
                record.timestamp.FromMilliseconds(ts)
            item = record.item.add()
            item.key = stats_key
            item.value_json = json.dumps(float("nan") if value is None else value)
            sample = index.get(stats_key, 0)
            index[stats_key] = sample + 1
            if step != sample:
                extra = record.item.add()
                extra.key = STEP_PREFIX + stats_key
                extra.value_json = str(step)
        for record in records.values():
            interface._publish(interface._make_record(stats=record))

    @staticmethod
    def _copy_files(wrun: Any, staged: Path) -> None:
        if not staged.is_dir():
            return
        run_dir = Path(wrun.dir)
        for path in sorted(staged.rglob("*")):
            if not path.is_file():
                continue
            rel = path.relative_to(staged).as_posix()
            if rel.split("/", 1)[0] in SDK_FILES:
                rel = SOURCE_FILES_PREFIX + rel  # the SDK writes a file of that name itself
            target = run_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            wrun.save(str(target), base_path=str(run_dir), policy="now")


def open_writer(endpoint: Endpoint, credentials: Credentials) -> WandbWriter:
    """The writer for `wandb:PATH` (the URI registry's factory); online when an API key is given
    (FERRYMAN_DESTINATION_TOKEN, else WANDB_API_KEY)."""
    return WandbWriter(
        Path(endpoint.location).expanduser(), api_key=credentials.token, entity=os.environ.get("WANDB_ENTITY")
    )
