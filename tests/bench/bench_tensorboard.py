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

from ferryman.trackers.tensorboard.reader import TensorBoardReader
from ferryman.trackers.tensorboard.tfrecord import masked_crc32c

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


Timing = tuple[float, float]  # (wall seconds, CPU seconds of this process)


def _now() -> Timing:
    return time.perf_counter(), time.process_time()


def _since(start: Timing) -> Timing:
    wall, cpu = _now()
    return wall - start[0], cpu - start[1]


def read_run(root: Path) -> tuple[int, Timing, Timing]:
    """Scalar points of the run through the reader; time of `metrics()` and of `runs()` + `metrics()`."""
    started = _now()
    reader = TensorBoardReader(root)
    (experiment,) = reader.experiments()
    (run,) = reader.runs(experiment)
    probed = _now()
    count = sum(len(batch) for batch in reader.metrics(run))
    metrics, total = _since(probed), _since(started)
    reader.close()
    return count, metrics, total


def timed_baseline(path: Path) -> tuple[int, Timing]:
    started = _now()
    count = baseline(path)
    return count, _since(started)


def best(timings: list[Timing]) -> Timing:
    return min(t[0] for t in timings), min(t[1] for t in timings)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-tensorboard-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        write_file(root)
        (path,) = root.iterdir()
        print(f"   wrote {EVENTS:,} scalar events ({os.path.getsize(path) / 1e6:.1f} MB) with tensorboardX "
              f"in {time.perf_counter() - started:.1f} s")
        baselines = [timed_baseline(path) for _ in range(REPEATS)]
        runs = [read_run(root) for _ in range(REPEATS)]
        counts = {count for count, _ in baselines} | {count for count, _, _ in runs}
        assert counts == {EVENTS}, counts
        rows = (
            ("baseline (record loop, CRC + Event.FromString)", best([t for _, t in baselines])),
            ("ferryman metrics() of the run", best([t for _, t, _ in runs])),
            ("ferryman runs() + metrics()", best([t for _, _, t in runs])),
        )
        base_wall = rows[0][1][0]
        for label, (wall, cpu) in rows:
            ratio = "" if label.startswith("baseline") else f"  ({base_wall / wall:.1f}x baseline)"
            print(f"   {label:<48} {EVENTS / wall:10,.0f} scalar events/s "
                  f"({EVENTS / cpu:,.0f} per CPU second){ratio}")
        wall = rows[2][1][0]
        verdict = "met" if EVENTS / wall >= GOAL else "NOT met (see the CPU rate if the machine is busy)"
        print(f"   goal >= {GOAL:,.0f} scalar events/s end to end: {verdict}")
