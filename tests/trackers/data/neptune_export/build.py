"""Builds the hand-made Neptune export next to this file (`data/`, `files/`); run it to regenerate them.

It follows neptune-exporter's documented layout and schema (`../shared/notes/tracker-migration.md` §4 and the
exporter's `ParquetWriter`) and deliberately does not use ferryman's writer, so the reader is checked against
data it did not produce. Project `acme/vision`:

- `VIS-1`: a finished run in two parts (`train/loss` continues in part 1): typed parameters, `sys/*` fields,
  tags, float series (one of them a `monitoring/` system series), a string series, a histogram series, a file,
  a file series and a file set.
- `VIS-2`: a failed run forked from VIS-1, with a fractional step and a point without a timestamp.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent
PROJECT = "acme/vision"
T0 = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)

SCHEMA = pa.schema(
    [
        ("project_id", pa.string()),
        ("run_id", pa.string()),
        ("attribute_path", pa.string()),
        ("attribute_type", pa.string()),
        ("step", pa.decimal128(18, 6)),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
        ("int_value", pa.int64()),
        ("float_value", pa.float64()),
        ("string_value", pa.string()),
        ("bool_value", pa.bool_()),
        ("datetime_value", pa.timestamp("ms", tz="UTC")),
        ("string_set_value", pa.list_(pa.string())),
        ("file_value", pa.struct([("path", pa.string())])),
        (
            "histogram_value",
            pa.struct(
                [("type", pa.string()), ("edges", pa.list_(pa.float64())), ("values", pa.list_(pa.float64()))]
            ),
        ),
    ]
)


def safe(part: str) -> str:
    digest = hashlib.blake2b(part.encode(), digest_size=8).hexdigest()
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in part) + "-" + digest


def row(run: str, path: str, kind: str, **values: object) -> dict[str, object]:
    return {"project_id": PROJECT, "run_id": run, "attribute_path": path, "attribute_type": kind, **values}


def point(run: str, path: str, kind: str, step: str | None, at: datetime | None, **values: object) -> dict:
    return row(run, path, kind, step=None if step is None else Decimal(step), timestamp=at, **values)


def write(rows: list[dict], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), target, compression="snappy")


def main() -> None:
    data, files = HERE / "data" / safe(PROJECT), HERE / "files"
    shutil.rmtree(HERE / "data", ignore_errors=True)
    shutil.rmtree(files, ignore_errors=True)
    run_files = files / safe(PROJECT) / safe("VIS-1")
    (run_files / "model").mkdir(parents=True)
    (run_files / "model" / "weights.pt").write_bytes(b"\x00weights" * 100)
    for step in (0, 1):
        (run_files / "samples" / "img" / f"step_{step}").mkdir(parents=True)
        (run_files / "samples" / "img" / f"step_{step}" / "sample.png").write_bytes(bytes([step]) * 64)
    (run_files / "source_code" / "files" / "pkg").mkdir(parents=True)
    (run_files / "source_code" / "files" / "train.py").write_text("print('train')\n")
    (run_files / "source_code" / "files" / "pkg" / "util.py").write_text("X = 1\n")
    rel = run_files.relative_to(files / safe(PROJECT)).as_posix()  # paths are relative to the project's files

    r = "VIS-1"
    params = [
        row(r, "sys/id", "string", string_value="VIS-1"),
        row(r, "sys/name", "string", string_value="baseline"),
        row(r, "sys/owner", "string", string_value="alice"),
        row(r, "sys/description", "string", string_value="first try"),
        row(r, "sys/state", "string", string_value="Inactive"),
        row(r, "sys/failed", "bool", bool_value=False),
        row(r, "sys/creation_time", "datetime", datetime_value=T0),
        row(r, "sys/ping_time", "datetime", datetime_value=T0 + timedelta(hours=1, milliseconds=250)),
        row(r, "sys/modification_time", "datetime", datetime_value=T0 + timedelta(days=2)),
        row(r, "sys/tags", "string_set", string_set_value=["resnet", "best"]),
        row(r, "sys/hostname", "string", string_value="gpu-node-1"),
        row(r, "parameters/lr", "float", float_value=0.001),
        row(r, "parameters/epochs", "int", int_value=10),
        row(r, "parameters/optimizer", "string", string_value="adam"),
        row(r, "parameters/use_amp", "bool", bool_value=True),
        row(r, "parameters/started", "datetime", datetime_value=T0),
        row(r, "parameters/datasets", "string_set", string_set_value=["imagenet", "coco"]),
    ]
    loss = [
        point(
            r,
            "train/loss",
            "float_series",
            f"{s}.000000",
            T0 + timedelta(seconds=s, milliseconds=7),
            float_value=1.0 / (s + 1),
        )
        for s in range(100)
    ]
    acc = [
        point(r, "val/acc", "float_series", str(s), T0 + timedelta(seconds=s), float_value=s / 100)
        for s in range(0, 100, 10)
    ]
    cpu = [
        point(
            r, "monitoring/cpu", "float_series", str(s), T0 + timedelta(seconds=5 * s), float_value=40.0 + s
        )
        for s in range(5)
    ]
    logs = [
        point(r, "logs/stdout", "string_series", str(s), T0 + timedelta(seconds=s), string_value=f"line {s}")
        for s in range(3)
    ]
    hists = [
        point(
            r,
            "weights/hist",
            "histogram_series",
            str(s),
            T0 + timedelta(seconds=s),
            histogram_value={"type": "COUNTING", "edges": [0.0, 0.5, 1.0], "values": [float(s), 2.0]},
        )
        for s in range(2)
    ]
    file_rows = [
        row(r, "model/weights", "file", file_value={"path": f"{rel}/model/weights.pt"}),
        *[
            point(
                r,
                "samples/img",
                "file_series",
                str(s),
                T0 + timedelta(seconds=s),
                file_value={"path": f"{rel}/samples/img/step_{s}/sample.png"},
            )
            for s in (0, 1)
        ],
        row(r, "source_code/files", "file_set", file_value={"path": f"{rel}/source_code/files"}),
    ]
    write(params + loss[:60] + acc + cpu + logs + hists + file_rows, data / f"{safe(r)}_part_0.parquet")
    write(loss[60:], data / f"{safe(r)}_part_1.parquet")

    r = "VIS-2"
    write(
        [
            row(r, "sys/id", "string", string_value="VIS-2"),
            row(r, "sys/name", "string", string_value="forked"),
            row(r, "sys/state", "string", string_value="Inactive"),
            row(r, "sys/failed", "bool", bool_value=True),
            row(r, "sys/creation_time", "datetime", datetime_value=T0 + timedelta(hours=2)),
            row(r, "sys/forking/parent", "string", string_value="VIS-1"),
            row(r, "parameters/lr", "float", float_value=0.01),
            point(r, "train/loss", "float_series", "0", T0 + timedelta(hours=2), float_value=2.0),
            point(r, "train/loss", "float_series", "1", None, float_value=1.5),
            point(r, "lr/schedule", "float_series", "0.5", T0 + timedelta(hours=2), float_value=0.01),
        ],
        data / f"{safe(r)}_part_0.parquet",
    )


if __name__ == "__main__":
    main()
