"""The vectorised history/summary decoding (`wandb.items`) and the reuse of the metadata pass's framing in
the later passes, against the protobuf path with every pass framing its log afresh: the same points,
summary, kept objects and outcomes on SDK-written runs and on hand-built logs full of rows it must leave to
protobuf."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ferryman.trackers.wandb import items as wandb_items
from ferryman.trackers.wandb import offline
from ferryman.trackers.wandb.datastore import BLOCK_LEN, Damage, Framing, LogWriter, read_chunks
from ferryman.trackers.wandb.items import HISTORY_TAG, SUMMARY_TAG, decimals, split_items
from ferryman.trackers.wandb.offline import CHUNK, WandbDirReader
from ferryman_dev.wandb_runs import write_sdk_run, write_synthetic_log


def read_all(root: Path) -> dict[str, Any]:
    """Everything the reader says about every run, floats by `repr` (NaN and -0.0 compare exactly)."""
    reader = WandbDirReader(root)
    out: dict[str, Any] = {}
    for experiment in reader.experiments():
        for run in reader.runs(experiment):
            points: dict[str, list[tuple[int, int, str]]] = {}
            for batch in reader.metrics(run):
                assert len(batch) <= offline.BATCH
                points.setdefault(f"{batch.key}|{batch.system}", []).extend(
                    zip(batch.steps, batch.timestamps, map(repr, batch.values), strict=True)
                )
            files = {a.path: a.open().read() for a in reader.artifacts(run)}
            out[run.key] = {"points": points, "files": files, "run": repr(run)}
    out["outcomes"] = sorted(map(repr, reader.outcomes()))
    return out


def protobuf_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offline, "split_items", lambda payloads, tag: None)
    monkeypatch.setattr(offline, "FRAMING_BUDGET", 0)  # no framing kept: every pass checks every record


def both_paths(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    used: list[int] = []
    reused: list[Path] = []

    def counting(payloads: list[bytes], tag: int) -> Any:
        items = split_items(payloads, tag)
        used.append(0 if items is None else int(items.ok.sum()))
        return items

    def framing(
        path: Path, damage: list[Damage], size: int, framings: dict[Path, Framing], keep: bool = True
    ) -> Any:
        if path in framings:
            reused.append(path)
        return read_chunks(path, damage, size, framings, keep)

    with monkeypatch.context() as patch:
        patch.setattr(offline, "split_items", counting)
        patch.setattr(offline, "read_chunks", framing)
        fast = read_all(root)
    assert sum(used) > 0, "the vectorised path decoded nothing"
    assert reused, "no pass reused the metadata pass's framing"
    with monkeypatch.context() as patch:
        protobuf_only(patch)
        slow = read_all(root)
    assert fast == slow
    return fast


def test_sdk_runs_read_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_sdk_run(tmp_path, "fastsdk1", rows=30)
    read = both_paths(tmp_path, monkeypatch)
    assert len(read["fastsdk1"]["points"]["loss|False"]) == 30


def test_synthetic_log_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "run-20260101_000000-chunky1" / "run-chunky1.wandb"
    write_synthetic_log(log, rows=2 * CHUNK + 77, keys=3, run_id="chunky1")
    read = both_paths(tmp_path, monkeypatch)
    assert len(read["chunky1"]["points"]["metric_0|False"]) == 2 * CHUNK + 77


def _row(record: Any, items: list[tuple[str | list[str], str]], *, field: str = "nested") -> None:
    for key, text in items:
        item = record.history.item.add()
        if isinstance(key, list):
            item.nested_key.extend(key)
        elif field == "key":
            item.key = key
        else:
            item.nested_key.append(key)
        item.value_json = text


UNUSUAL: list[list[tuple[str | list[str], str]]] = [
    [("a", "NaN"), ("b", "Infinity"), ("c", "-Infinity"), ("_step", "5"), ("_timestamp", "1.5e9")],
    [
        ("a", "-0"),
        ("b", "12345678901234567890123456789"),
        ("c", "1e400"),
        ("_step", "6"),
        ("_timestamp", "1"),
    ],
    [("a", '"text"'), ("b", "true"), ("c", "null"), ("_step", "7"), ("_timestamp", "2")],
    [("a", "1.25"), ("_timestamp", "3")],  # no _step: the next one
    [("a", "2.5"), ("_step", "20")],  # no _timestamp: the previous row's
    [(["nested", "x"], "4"), ("a", "1"), ("_step", "21"), ("_timestamp", "4")],
    [("a", "1"), ("_step", "22"), ("_step", "23"), ("_timestamp", "5")],  # the last _step wins
    [("a", "1_0"), ("b", " 7 "), ("c", "[1, 2]"), ("_step", "24"), ("_timestamp", "6")],
    [("k" * 200, "1"), ("a", "x" * 300), ("_step", "25"), ("_timestamp", "7")],  # long key, long value
    [("a\x82\x01b", "1"), ("c\x00d", "2"), ("é", "3"), ("", "4"), ("_step", "26"), ("_timestamp", "8")],
    [("a", "1"), ("_ferryman_ts/a", "9000"), ("_step", "27"), ("_timestamp", "9")],
    [("a", "1"), ("_runtime", "0.5"), ("_wandb", '{"runtime": 1}'), ("_step", "28"), ("_timestamp", "9.5")],
    [("a", "1"), ("_step", "1e300"), ("_timestamp", "10")],
    [  # long mantissas, one halfway between two floats, leading zeros
        ("a", "4503599627370496.5"),
        ("b", "-9999999999999999999"),
        ("c", "0.00012345678901234567"),
        ("_step", "0029"),
        ("_timestamp", "007.25"),
    ],
    [("a", "3"), ("_step", "2.9"), ("_timestamp", "10.0015")],
]


def test_unusual_rows_read_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wandb.proto import wandb_internal_pb2 as pb

    log = tmp_path / "run-20260101_000000-unusual1" / "run-unusual1.wandb"
    log.parent.mkdir(parents=True)
    with log.open("wb") as stream:
        writer = LogWriter(stream)
        record = pb.Record()  # type: ignore[attr-defined]
        record.run.run_id, record.run.project = "unusual1", "edge"
        writer.write(record.SerializeToString())
        for index in range(3 * CHUNK // len(UNUSUAL)):  # plain rows between the unusual ones, over chunks
            for number, row in enumerate(UNUSUAL):
                step = 1000 + index * 100 + number
                record = pb.Record(num=index)  # type: ignore[attr-defined]
                plain = [("a", repr(step / 7)), ("b", str(step)), ("_step", str(step)), ("_timestamp", "11")]
                _row(record, plain)
                writer.write(record.SerializeToString())
                record = pb.Record(num=index)  # type: ignore[attr-defined]
                _row(record, row, field="key" if number % 2 else "nested")
                record.history.step.num = number
                writer.write(record.SerializeToString())
                summary = pb.Record()  # type: ignore[attr-defined]
                for key, text in row:
                    update = summary.summary.update.add()
                    update.key = key if isinstance(key, str) else ""
                    update.nested_key.extend(key if isinstance(key, list) else [])
                    update.value_json = text
                if number == 3:
                    summary.summary.remove.add().key = "b"
                writer.write(summary.SerializeToString())
            record = pb.Record()  # type: ignore[attr-defined]
            item = record.history.item.add()
            item.key, item.number = "typed", 1.5  # a typed value, not value_json
            writer.write(record.SerializeToString())
        record = pb.Record()  # type: ignore[attr-defined]
        record.stats.timestamp.FromSeconds(12)
        stat = record.stats.item.add()
        stat.key, stat.value_json = "cpu", "50"
        writer.write(record.SerializeToString())
        record = pb.Record()  # type: ignore[attr-defined]
        record.exit.exit_code = 0
        writer.write(record.SerializeToString())
    read = both_paths(tmp_path, monkeypatch)
    points = read["unusual1"]["points"]
    assert points["a|False"][:3] == [
        (1000, 11000, repr(1000 / 7)),
        (5, 1_500_000_000_000, "nan"),
        (1001, 11000, repr(1001 / 7)),
    ]
    assert (6, 1000, "-0.0") in points["a|False"]
    assert json.loads(read["unusual1"]["files"]["wandb-summary.json"])["a"] == 3
    assert any(math.isinf(float(v)) for _, _, v in points["c|False"])


def test_split_items_takes_only_plain_records() -> None:
    from wandb.proto import wandb_internal_pb2 as pb

    plain = pb.Record(num=300)  # type: ignore[attr-defined]
    _row(plain, [("loss", "0.5"), ("_step", "1")])
    plain.history.step.num = 1
    nested = pb.Record(num=2)  # type: ignore[attr-defined]
    _row(nested, [(["a", "b"], "1")])
    summary = pb.Record()  # type: ignore[attr-defined]
    summary.summary.update.add(key="x", value_json="1")
    removal = pb.Record()  # type: ignore[attr-defined]
    removal.summary.update.add(key="x", value_json="1")
    removal.summary.remove.add(key="y")
    payloads = [r.SerializeToString() for r in (plain, nested, summary, plain)]
    items = split_items(payloads, HISTORY_TAG)
    assert items is not None and items.ok.tolist() == [True, False, False, True]
    assert [items.names[k] for k in items.key] == ["loss", "_step", "loss", "_step"]
    assert items.values() == ["0.5", "1", "0.5", "1"]
    summaries = split_items([summary.SerializeToString(), removal.SerializeToString()], SUMMARY_TAG)
    assert summaries is not None and summaries.ok.tolist() == [True, False]


def _decimals(texts: list[str]) -> tuple[list[float], list[bool]]:
    blobs = [text.encode() for text in texts]
    hi = np.cumsum([len(blob) for blob in blobs]) + 24
    a = np.frombuffer(bytes(24) + b"".join(blobs) + bytes(8), np.uint8)
    numbers, parsed = decimals(a, hi - [len(blob) for blob in blobs], hi)
    return numbers.tolist(), parsed.tolist()


def _bits(value: float) -> bytes:
    return struct.pack("<d", value)


EDGE_DECIMALS = [
    "0",
    "-0",
    "0.0",
    "-0.0",
    "00.50",
    "007",
    "1",
    "9",
    "12345",
    "0.5",
    "-0.8414709848078965",
    "1700000000.01",
    "0.1",
    "0.3",
    "9007199254740993",
    "9007199254740995",
    "4503599627370496.5",
    "-4503599627370497.5",
    "18014398509481986",
    "9999999999999999999",
    "-9999999999999999999",
    "0.9999999999999999999",
    "1844674407370955161.5",
    "18446744073709551615",
    "18446744073709551616",
    "0.00012345678901234567",
    "-0.000000000000000000001",
    "100000000000000000000",
    "0.12345678901234567890",
    "1e5",
    "1E5",
    "1.5e-3",
    "NaN",
    "Infinity",
    "-Infinity",
    "inf",
    "+1",
    ".5",
    "5.",
    "-",
    "-.",
    ".",
    "1.2.3",
    "1.234567890123.5",
    "1-2",
    "--1",
    "1_0",
    "0x10",
    "\uff11",
    "1,5",
    "[1]",
    "true",
    "",
    " 1",
    "1 ",
]


def test_decimals_are_float_exactly() -> None:
    """Every text `decimals` takes gives `float()`'s bits; the usual shapes are taken, halfway cases and
    other forms left to `float()`."""
    rng = random.Random(7)
    texts = list(EDGE_DECIMALS)
    texts += [repr(struct.unpack("<d", rng.randbytes(8))[0]) for _ in range(20_000)]
    metrics = [repr(rng.uniform(-1, 1) * 10 ** rng.randint(-3, 9)) for _ in range(50_000)]
    texts += metrics
    for _ in range(100_000):  # random digit strings, up to and beyond 19 digits
        whole = "".join(rng.choices("0123456789", k=rng.randint(1, 20)))
        fraction = "".join(rng.choices("0123456789", k=rng.randint(0, 20)))
        texts.append(rng.choice(["", "-"]) + whole + (f".{fraction}" if fraction else ""))
    texts += ["".join(rng.choices("0123456789.-+e", k=rng.randint(0, 26))) for _ in range(20_000)]
    for power in range(53, 64):  # integers halfway between two floats, and next to that
        for offset in (-1, 0, 1):
            texts.append(str(2**power + 2 ** (power - 53) + offset))
    numbers, parsed = _decimals(texts)
    for text, number, ok in zip(texts, numbers, parsed, strict=True):
        if ok:
            assert _bits(number) == _bits(float(text)), text
    taken = dict(zip(texts, parsed, strict=True))
    usual = "0 -0 00.50 -0.8414709848078965 1700000000.01 9999999999999999999 0.00012345678901234567"
    assert all(taken[text] for text in usual.split())
    assert not any(taken[text] for text in ("4503599627370496.5", "9007199254740993", "1e5", "NaN", "+1"))
    left = ("18446744073709551616", ".5", "5.", "-", "1_0", "\uff11", "", " 1", "1.234567890123.5")
    assert not any(taken[text] for text in left)
    assert sum(taken[text] for text in metrics) > 0.9 * len(metrics)


def test_decimals_need_a_wide_long_double(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a 64-bit long double mantissas of 2**53 and more are left to `float()`."""
    monkeypatch.setattr(wandb_items, "_EXTENDED", False)
    numbers, parsed = _decimals(["0.8414709848078965", "0.12345678901234567", "12345"])
    assert parsed == [True, False, True]
    assert numbers[0] == 0.8414709848078965 and numbers[2] == 12345.0


# rows of equally many keys of equal lengths (and equal values), differing where the comparison
# of neighbouring rows' keys looks: the first or last of 16 bytes, the middle of a short key, beyond 16 bytes,
# the length alone, the order of the keys
SIMILAR: list[list[str]] = [
    ["ab", "cd", "e"],
    ["ab", "ce", "e"],
    ["ce", "ab", "e"],
    ["0123456789abcdef", "x", ""],
    ["0123456789abcdeg", "x", ""],
    ["1123456789abcdef", "x", ""],
    ["0123456X89abcdef", "x", ""],
    ["01234567X9abcdef", "x", ""],
    ["0123456789ab", "y", ""],
    ["0123X56789ab", "y", ""],
    ["k" * 17, "y", ""],
    ["k" * 8 + "X" + "k" * 8, "y", ""],
    ["k" * 8 + "X" + "k" * 8, "y", ""],
    ["a" * 9, "y", ""],
    ["a" * 10, "y", ""],
]


def test_rows_with_similar_keys_read_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wandb.proto import wandb_internal_pb2 as pb

    log = tmp_path / "run-20260101_000000-similar1" / "run-similar1.wandb"
    log.parent.mkdir(parents=True)
    rows = [SIMILAR[(index // 3) % len(SIMILAR)] for index in range(3 * CHUNK // 2)]  # runs of 3 alike
    payloads: list[bytes] = []
    with log.open("wb") as stream:
        writer = LogWriter(stream)
        record = pb.Record()  # type: ignore[attr-defined]
        record.run.run_id, record.run.project = "similar1", "edge"
        writer.write(record.SerializeToString())
        for step, keys in enumerate(rows):
            row = [(key, "1") for key in keys]
            summary = pb.Record()  # type: ignore[attr-defined]
            for key, text in row:
                summary.summary.update.add(key=key, value_json=text)
            record = pb.Record(num=step)  # type: ignore[attr-defined]
            _row(record, [*row, ("_step", str(step)), ("_timestamp", str(step))])
            payloads.append(record.SerializeToString())
            writer.write(summary.SerializeToString())
            writer.write(payloads[-1])
    items = split_items(payloads, HISTORY_TAG)
    assert items is not None and items.ok.all()
    written = [key for keys in rows for key in [*keys, "_step", "_timestamp"]]
    assert [items.names[k] for k in items.key] == written
    read = both_paths(tmp_path, monkeypatch)
    points = read["similar1"]["points"]
    assert {key.split("|")[0] for key in points} == {key for keys in SIMILAR for key in keys}
    summary = json.loads(read["similar1"]["files"]["wandb-summary.json"])
    assert set(summary) == {key for keys in SIMILAR for key in keys}


@pytest.mark.corpus
def test_corpus_reads_the_same(corpus_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = sorted(p for p in (corpus_dir / "trackers" / "wandb").iterdir() if p.is_dir())
    assert datasets
    for dataset in datasets:
        with monkeypatch.context() as patch:
            protobuf_only(patch)
            slow = read_all(dataset)
        assert read_all(dataset) == slow, dataset.name


def test_framing_is_reused_only_for_the_same_file(tmp_path: Path) -> None:
    """Split records and a bad block come back the same from a kept framing; a changed file is framed anew."""
    log = tmp_path / "run-x.wandb"
    write_synthetic_log(log, rows=3000, keys=3, run_id="x")
    data = bytearray(log.read_bytes())
    data[BLOCK_LEN + 100] ^= 0xFF
    log.write_bytes(bytes(data))
    framings: dict[Path, Framing] = {}
    first: list[Damage] = []
    fresh = list(read_chunks(log, first, 100, framings))
    kept = framings[log]
    assert first and kept.joined  # records lost and records split across blocks
    again: list[Damage] = []
    assert list(read_chunks(log, again, 100, framings)) == fresh and again == first
    data[3 * BLOCK_LEN + 100] ^= 0xFF  # the file changes in place (same size, a later mtime)
    log.write_bytes(bytes(data))
    stamp = log.stat().st_mtime_ns + 10**9
    os.utime(log, ns=(stamp, stamp))
    changed: list[Damage] = []
    payloads = list(itertools.chain(*read_chunks(log, changed, 100, framings, keep=False)))
    assert len(payloads) < sum(map(len, fresh))
    assert framings[log] is kept and len(changed) > len(first)
