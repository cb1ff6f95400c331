"""W&B run directories for tests and benchmarks: real SDK runs with known content, and large `.wandb` logs.

`write_sdk_run` drives the real wandb SDK in offline mode and returns what it logged, so a test can compare a
reader's output point by point. `write_synthetic_log` frames `wandb_internal.proto` records with the same
framing as the SDK (`datastore.LogWriter`), for inputs the SDK would take minutes to write.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferryman.trackers.wandb.datastore import LogWriter
from ferryman.trackers.wandb.writer import wait_for_exit_record

QUIET_ENV = {
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "WANDB_DISABLE_GIT": "true",
    "WANDB_DISABLE_CODE": "true",
    "WANDB_CONSOLE": "off",
}


@dataclass
class LoggedRun:
    """What `write_sdk_run` logged: metric key -> [(step, timestamp ms, value)], and the run's settings."""

    run_id: str
    project: str
    run_dir: Path
    points: dict[str, list[tuple[int, int, float]]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""

    def assert_in_mlflow(self, client: Any, run_id: str) -> None:
        """MLflow run `run_id` (through `client`, an MlflowClient) holds every logged point once, at its step
        and timestamp, with its value (NaN as NaN)."""
        for key, points in self.points.items():
            history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
            assert [(m.step, m.timestamp) for m in history] == [(s, t) for s, t, _ in points], key
            assert all(
                m.value == v or (math.isnan(m.value) and math.isnan(v))
                for m, (_, _, v) in zip(history, points, strict=True)
            ), key


@contextmanager
def quiet_offline_env() -> Iterator[None]:
    """The wandb SDK offline and silent, without git or code capture, for the duration of the block."""
    saved = {key: os.environ.get(key) for key in QUIET_ENV}
    os.environ.update(QUIET_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def sdk_settings(**extra: Any) -> Any:
    import wandb

    options: dict[str, Any] = {
        "mode": "offline",  # explicit: the wandb singleton may predate QUIET_ENV (e.g. after wandb.Api)
        "x_disable_stats": True,
        "x_disable_meta": True,
        "console": "off",
        "x_save_requirements": False,
        "save_code": False,
        "silent": True,
    }
    options.update(extra)
    return wandb.Settings(**options)


def write_sdk_run(
    root: Path,
    run_id: str,
    *,
    project: str = "ferryman-test",
    rows: int = 20,
    start_ts: float | None = None,
    media: bool = True,
    artifact: bool = True,
    resume: bool = False,
    extra_step_offset: int = 0,
) -> LoggedRun:
    """Log a run through the real SDK: `loss` every row at steps 0, 3, 6 …, `acc` every other row, a NaN,
    `_timestamp`s one second apart from `start_ts`, nested config, tags, notes, group, job type, a summary
    value no row carries, a text value and (optionally) an image and a dataset artifact."""
    import numpy as np
    import wandb

    if start_ts is None:  # shortly before now, in whole milliseconds, so run times stay consistent
        start_ts = round(time.time() - 3600, 3)

    logged = LoggedRun(
        run_id=run_id,
        project=project,
        run_dir=root,
        name=f"name-{run_id}",
        notes=f"notes of {run_id}",
        tags=["baseline", "ferryman"],
        group="group-a",
        job_type="train",
        config={"lr": 0.01, "optimizer": {"name": "adam", "betas": [0.9, 0.99]}, "epochs": 3, "label": "x"},
    )
    with quiet_offline_env():
        run = wandb.init(
            dir=str(root),
            project=project,
            id=run_id,
            name=logged.name,
            notes=logged.notes,
            tags=logged.tags,
            group=logged.group,
            job_type=logged.job_type,
            config=logged.config,
            resume="allow" if resume else None,
            settings=sdk_settings(),
            reinit="create_new",
        )
        for row in range(rows):
            step = extra_step_offset + row * 3
            stamp = start_ts + extra_step_offset + row
            values: dict[str, Any] = {"loss": 1.0 / (row + 1), "_timestamp": stamp}
            if row % 2 == 0:
                values["acc"] = row / 100
            if row == 5:
                values["loss"] = math.nan
            for key, value in values.items():
                if not key.startswith("_"):
                    logged.points.setdefault(key, []).append((step, round(stamp * 1000), value))
            run.log(values, step=step)
        final_step = extra_step_offset + rows * 3
        extra: dict[str, Any] = {"note": "text value", "_timestamp": start_ts + extra_step_offset + rows}
        if media:
            extra["sample"] = wandb.Image(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
        run.log(extra, step=final_step)
        run.summary["best_loss"] = 0.125
        if artifact:
            data_file = root / f"data-{run_id}.txt"
            data_file.write_text("some data\n")
            dataset = wandb.Artifact(f"dataset-{run_id}", type="dataset")
            dataset.add_file(str(data_file), name="data.txt")
            run.log_artifact(dataset)
        logged.run_dir = Path(run.dir).parent
        run.finish()
        wait_for_exit_record(logged.run_dir)
    return logged


def write_synthetic_log(
    path: Path,
    rows: int,
    keys: int = 5,
    run_id: str = "synthetic",
    project: str = "bench",
    start_ms: int = 1_700_000_000_000,
) -> int:
    """A `.wandb` log of `rows` history rows with `keys` metrics each, as SDK 0.31 writes it (header, run,
    then per row a summary and a history record in the `nested_key` form, exit); returns the point count."""
    from wandb.proto import wandb_internal_pb2 as pb

    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f"metric_{k}" for k in range(keys)]
    with path.open("wb") as stream:
        log = LogWriter(stream)
        record = pb.Record()  # type: ignore[attr-defined]
        record.header.version_info.producer = "0.31.0"
        log.write(record.SerializeToString())
        record = pb.Record()  # type: ignore[attr-defined]
        record.run.run_id = run_id
        record.run.project = project
        record.run.start_time.FromMilliseconds(start_ms)
        log.write(record.SerializeToString())
        for row in range(rows):
            values = [(name, repr(math.sin(row * 0.001 + index))) for index, name in enumerate(names)]
            values += [("_step", str(row)), ("_timestamp", repr((start_ms + row * 10) / 1000))]
            record = pb.Record()  # type: ignore[attr-defined]
            record.num = 2 * row + 3
            for name, text in values:  # 0.31 updates the summary with every row, just before the row
                update = record.summary.update.add()
                update.nested_key.append(name)
                update.value_json = text
            log.write(record.SerializeToString())
            record = pb.Record()  # type: ignore[attr-defined]
            record.num = 2 * row + 4
            history = record.history
            history.step.num = row
            for name, text in values:
                item = history.item.add()
                item.nested_key.append(name)
                item.value_json = text
            log.write(record.SerializeToString())
        record = pb.Record()  # type: ignore[attr-defined]
        record.exit.exit_code = 0
        record.exit.runtime = rows // 100
        log.write(record.SerializeToString())
    return rows * keys
