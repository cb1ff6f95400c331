"""TensorBoard reading throughput on 500,000 scalar events in one event file (goal: at least 200,000 scalar
events/s).

The file is written by tensorboardX's own `RecordWriter` (the framing `SummaryWriter` uses), with the exact
`Event` protos `add_scalar` produces: five tags, steps and wall times advancing. `add_scalar` itself is not
used because it writes about 10,000 events/s, which would make the set-up dominate the benchmark.

Baseline, measured in the same run on the same file: the fastest pure-Python full parse (the loop of
tensorboard's `RawEventFileLoader` plus `Event.FromString`, as the notes measure it): a read of every record
with both checksums checked by the same C `crc32c`, each record parsed by protobuf (upb) and its scalar
appended to per-tag lists. The ratio says what the vectorised reader gains over it.
"""

from __future__ import annotations

import os
import struct
import tempfile
import time
from pathlib import Path

from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.record_writer import RecordWriter

from ferryman.trackers.tensorboard import TensorBoardReader
from ferryman.trackers.tfrecord import masked_crc32c

EVENTS = 500_000
TAGS = ("loss", "train/accuracy", "validation/loss", "lr-AdamW/pg1", "grad_norm")
GOAL = 200_000.0  # scalar events/s
REPEATS = 3


def write_file(directory: Path) -> None:
    writer = RecordWriter(str(directory / "events.out.tfevents.1700000000.bench.1.0"))
    writer.write(Event(wall_time=1_700_000_000.0, file_version="brain.Event:2").SerializeToString())
    for i in range(EVENTS):
        value = Summary.Value(tag=TAGS[i % len(TAGS)], simple_value=1.0 / (i + 1))
        wall = 1_700_000_000.0 + i * 0.01
        event = Event(wall_time=wall, step=i // len(TAGS), summary=Summary(value=[value]))
        writer.write(event.SerializeToString())
    writer.close()


def baseline(path: Path) -> int:
    """Record by record: both checksums, `Event.FromString`, scalars to per-tag lists."""
    data = path.read_bytes()
    series: dict[str, tuple[list[int], list[int], list[float]]] = {}
    pos, count, unpack = 0, 0, struct.Struct("<QI").unpack_from
    while pos < len(data):
        length, length_crc = unpack(data, pos)
        if masked_crc32c(data[pos : pos + 8]) != length_crc:
            raise ValueError("header checksum")
        payload = data[pos + 12 : pos + 12 + length]
        if masked_crc32c(payload) != struct.unpack_from("<I", data, pos + 12 + length)[0]:
            raise ValueError("data checksum")
        event = Event.FromString(payload)
        for value in event.summary.value:
            steps, times, values = series.setdefault(value.tag, ([], [], []))
            steps.append(event.step)
            times.append(round(event.wall_time * 1000))
            values.append(value.simple_value)
            count += 1
        pos += 16 + length
    return count


def read_run(root: Path) -> tuple[int, float, float]:
    """Scalar points of the run through the reader; seconds for `metrics()` and for `runs()` + `metrics()`."""
    started = time.perf_counter()
    reader = TensorBoardReader(root)
    (experiment,) = reader.experiments()
    (run,) = reader.runs(experiment)
    probed = time.perf_counter()
    count = sum(len(batch) for batch in reader.metrics(run))
    done = time.perf_counter()
    reader.close()
    return count, done - probed, done - started


def baseline_seconds(path: Path) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(REPEATS):
        started = time.perf_counter()
        count = baseline(path)
        times.append(time.perf_counter() - started)
    return min(times), count


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-tensorboard-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        write_file(root)
        (path,) = root.iterdir()
        print(f"   wrote {EVENTS:,} scalar events ({os.path.getsize(path) / 1e6:.1f} MB) with tensorboardX "
              f"in {time.perf_counter() - started:.1f} s")
        base_seconds, base_count = baseline_seconds(path)
        runs = [read_run(root) for _ in range(REPEATS)]
        assert {count for count, _, _ in runs} == {base_count} == {EVENTS}, (runs, base_count)
        metrics_rate = EVENTS / min(seconds for _, seconds, _ in runs)
        total_rate = EVENTS / min(seconds for _, _, seconds in runs)
        base_rate = EVENTS / base_seconds
        print(f"   baseline (record loop, CRC + Event.FromString): {base_rate:12,.0f} scalar events/s")
        print(f"   ferryman metrics() of the run:                  {metrics_rate:12,.0f} scalar events/s "
              f"({metrics_rate / base_rate:.1f}x baseline)")
        print(f"   ferryman runs() + metrics() (two passes):       {total_rate:12,.0f} scalar events/s "
              f"({total_rate / base_rate:.1f}x baseline)")
        verdict = "met" if total_rate >= GOAL else "NOT met"
        print(f"   goal >= {GOAL:,.0f} scalar events/s end to end: {verdict}")
