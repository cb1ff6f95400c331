"""Decoding TensorBoard `Event` records into scalar series and the other summaries.

The hot path is vectorised: in a chunk of records, all records of one length whose bytes have the exact shape
of a one-value `simple_value` event (`wall_time`, optional `step`, `summary { value { tag simple_value } }`,
as torch's and tensorboardX's `add_scalar` write them) are checked and decoded with numpy column operations,
grouped by tag with `np.unique`. Every other record is parsed with the protobuf classes tensorboardX ships.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from google.protobuf.json_format import MessageToJson
from google.protobuf.message import DecodeError
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.proto.tensor_pb2 import TensorProto

from ferryman.trackers.tfrecord import RecordChunk

_MAX_FAST_LENGTH = 300  # longer records are never one-scalar events of a sane tag
_MIN_FAST_COUNT = 8  # below this many records of one length the protobuf parse is cheaper

SCALARS_PLUGIN = "scalars"
HPARAMS_PLUGIN = "hparams"
SESSION_START_TAG = "_hparams_/session_start_info"


@dataclass(slots=True)
class Series:
    """Points of one tag in one chunk, in record order."""

    steps: list[int]
    wall_ms: list[int]
    values: list[float]


@dataclass(slots=True)
class Summarised:
    """A non-scalar summary value, with the event's step and wall time."""

    tag: str
    plugin: str
    step: int
    wall_time: float
    value: Summary.Value


@dataclass(slots=True)
class ChunkEvents:
    scalars: dict[str, Series] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    others: list[Summarised] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # events without a summary (graphs, session logs …)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (file offset of the record, what is wrong)


def wall_ms(seconds: np.ndarray) -> np.ndarray:
    """Wall times in seconds to integer milliseconds (rounded, so ms/1000 written back reads back equal)."""
    return np.rint(np.nan_to_num(seconds, nan=0.0, posinf=0.0, neginf=0.0) * 1000.0).astype(np.int64)


def _varint(columns: np.ndarray) -> np.ndarray:
    """Little-endian base-128 varints stored in `columns` (one row each, all of the same byte count)."""
    out = np.zeros(len(columns), dtype=np.uint64)
    for j in range(columns.shape[1]):
        out |= (columns[:, j] & 0x7F).astype(np.uint64) << np.uint64(7 * j)
    return out.view(np.int64)


def _fast_scalars(chunk: RecordChunk) -> tuple[dict[bytes, list[tuple[np.ndarray, ...]]], np.ndarray]:
    """Decode the one-scalar records of the chunk. Returns, per tag, pieces of (record index, step, wall
    seconds, value) and a mask of the records decoded."""
    done = np.zeros(len(chunk), dtype=bool)
    found: dict[bytes, list[tuple[np.ndarray, ...]]] = {}
    raw = np.frombuffer(chunk.buffer, dtype=np.uint8)
    lengths = chunk.lengths
    candidates = np.flatnonzero((lengths <= _MAX_FAST_LENGTH) & (lengths >= 16))
    if not len(candidates):
        return found, done
    candidates = candidates[raw[chunk.starts[candidates]] == 0x09]
    sizes, counts = np.unique(lengths[candidates], return_counts=True)
    for size, count in zip(sizes.tolist(), counts.tolist(), strict=True):
        if count < _MIN_FAST_COUNT or len(raw) < size:
            continue
        rows = candidates[lengths[candidates] == size]
        matrix = np.lib.stride_tricks.sliding_window_view(raw, size)[chunk.starts[rows]]
        has_step = matrix[:, 9] == 0x10
        # byte count of the step varint (0: no step), found by the first byte without continuation bit
        step_bytes = np.zeros(len(rows), dtype=np.int64)
        if has_step.any():
            continuation = matrix[:, 10 : min(20, size)] >= 0x80
            ends = np.argmin(continuation, axis=1)
            closed = ~continuation[np.arange(len(rows)), ends]
            step_bytes = np.where(has_step & closed, ends + 1, np.where(has_step, -1, 0))
        for nbytes in np.unique(step_bytes).tolist():
            if nbytes < 0:
                continue
            pos = 9 if nbytes == 0 else 10 + nbytes
            tag_len = size - pos - 11
            if tag_len < 0 or size - pos - 2 > 127:
                continue
            sub = matrix[step_bytes == nbytes]
            ok = (
                (sub[:, pos] == 0x2A) & (sub[:, pos + 1] == size - pos - 2)
                & (sub[:, pos + 2] == 0x0A) & (sub[:, pos + 3] == size - pos - 4)
                & (sub[:, pos + 4] == 0x0A) & (sub[:, pos + 5] == tag_len)
                & (sub[:, size - 5] == 0x15)
            )
            if not ok.any():
                continue
            sub = sub[ok]
            index = rows[step_bytes == nbytes][ok]
            done[index] = True
            walls = np.ascontiguousarray(sub[:, 1:9]).view("<f8").ravel()
            values = np.ascontiguousarray(sub[:, size - 4 : size]).view("<f4").ravel()
            steps = _varint(sub[:, 10 : 10 + nbytes]) if nbytes else np.zeros(len(sub), dtype=np.int64)
            if tag_len == 0:
                groups: list[tuple[bytes, np.ndarray]] = [(b"", np.arange(len(sub)))]
            else:
                groups = _by_tag(sub[:, pos + 6 : size - 5])
            for tag, sel in groups:
                found.setdefault(tag, []).append((index[sel], steps[sel], walls[sel], values[sel]))
    return found, done


def _by_tag(tags: np.ndarray) -> list[tuple[bytes, np.ndarray]]:
    """Group the rows of equal tag bytes, as (tag, row indices in order): a 64-bit hash of each row picks the
    groups, a comparison with the group's first row confirms them (colliding rows are grouped again)."""
    hashes = np.zeros(len(tags), dtype=np.uint64)
    for j in range(tags.shape[1]):
        hashes = hashes * np.uint64(1099511628211) + tags[:, j].astype(np.uint64)
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    equal = (tags == tags[first[inverse]]).all(axis=1)
    kept = np.flatnonzero(equal)
    order = kept[np.argsort(inverse[kept], kind="stable")]
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    groups = [(tags[rows[0]].tobytes(), rows) for rows in np.split(order, bounds) if len(rows)]
    if len(kept) < len(tags):
        rest = np.flatnonzero(~equal)
        groups += [(tag, rest[rows]) for tag, rows in _by_tag(tags[rest])]
    return groups


def tensor_array(tensor: TensorProto) -> np.ndarray:
    """A TensorProto as a numpy array (strings as an object array of bytes)."""
    shape = tuple(d.size for d in tensor.tensor_shape.dim)
    size = int(np.prod(shape)) if shape else 1
    dtype = _DTYPES.get(tensor.dtype)
    if tensor.dtype == _DT_STRING:
        flat = np.empty(len(tensor.string_val), dtype=object)
        flat[:] = list(tensor.string_val)
    elif dtype is None:
        raise ValueError(f"tensor dtype {tensor.dtype} is not supported")
    elif tensor.tensor_content:
        flat = np.frombuffer(tensor.tensor_content, dtype=np.dtype(dtype).newbyteorder("<"))
    elif tensor.dtype == _DT_HALF:
        flat = np.asarray(list(tensor.half_val), dtype=np.uint16).view(np.float16)
    else:
        flat = np.asarray(list(getattr(tensor, _VALUE_FIELDS[tensor.dtype])), dtype=dtype)
    if len(flat) == 1 and size != 1:
        flat = np.repeat(flat, size)  # TensorFlow stores a constant tensor as one value
    if len(flat) != size:
        raise ValueError(f"tensor holds {len(flat)} values for shape {list(shape)}")
    return flat.reshape(shape)


_DT_STRING, _DT_HALF = 7, 19
_DTYPES: dict[int, type] = {
    1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64,
    10: np.bool_, 17: np.uint16, 19: np.float16,
}
_VALUE_FIELDS: dict[int, str] = {
    1: "float_val", 2: "double_val", 3: "int_val", 4: "int_val", 5: "int_val", 6: "int_val", 9: "int64_val",
    10: "bool_val", 17: "int_val",
}


def _hparam_value(value: Any) -> str:
    """A `google.protobuf.Value` as an MLflow-style param string."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = float(value.number_value)
        return str(int(number)) if number.is_integer() and abs(number) < 2**53 else repr(number)
    if kind == "bool_value":
        return str(bool(value.bool_value))
    if kind == "string_value":
        return str(value.string_value)
    if kind is None:
        return ""
    return MessageToJson(value, indent=None)


def record_params(record: bytes) -> dict[str, str]:
    """The hyperparameters in one serialized event (none unless it holds a session_start_info)."""
    params: dict[str, str] = {}
    for value in Event.FromString(record).summary.value:
        if value.tag == SESSION_START_TAG:
            params.update(hparams(value))
    return params


def hparams(value: Summary.Value) -> dict[str, str]:
    """The hyperparameters of an `_hparams_/session_start_info` summary."""
    data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
    if not data.HasField("session_start_info"):
        return {}
    return {name: _hparam_value(v) for name, v in data.session_start_info.hparams.items()}


class EventDecoder:
    """Decodes the chunks of the event files of one run; remembers each tag's plugin, which TF2 writers put
    only on a tag's first event."""

    def __init__(self) -> None:
        self.plugins: dict[str, str] = {}

    def decode(self, chunk: RecordChunk, *, others: bool) -> ChunkEvents:
        """Scalars and params of the chunk, and its other summaries and events when `others` is set."""
        out = ChunkEvents()
        found, done = _fast_scalars(chunk)
        extra: dict[str, list[tuple[int, int, float, float]]] = {}
        for i in np.flatnonzero(~done).tolist():
            try:
                event = Event.FromString(chunk.record(i))
                if not event.HasField("summary"):
                    if others and event.WhichOneof("what") not in (None, "file_version"):
                        out.events.append(event)
                    continue
                for value in event.summary.value:
                    self._summary_value(event, value, i, out, extra, others)
            except (DecodeError, ValueError) as error:
                offset = chunk.offset + int(chunk.starts[i]) - 12
                out.errors.append((offset, str(error) or type(error).__name__))
        for tag, pieces in found.items():
            name = tag.decode("utf-8", "replace")
            self.plugins.setdefault(name, SCALARS_PLUGIN)
            points = extra.pop(name, [])
            if points:
                pieces = [*pieces, tuple(np.asarray(col) for col in zip(*points, strict=True))]
            out.scalars[name] = _series(pieces)
        for name, points in extra.items():
            out.scalars[name] = _series([tuple(np.asarray(col) for col in zip(*points, strict=True))])
        return out

    def _summary_value(self, event: Event, value: Summary.Value, index: int, out: ChunkEvents,
                       extra: dict[str, list[tuple[int, int, float, float]]], others: bool) -> None:
        tag = value.tag
        if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
            self.plugins[tag] = value.metadata.plugin_data.plugin_name
        kind = value.WhichOneof("value")
        plugin = self.plugins.get(tag, "")
        if kind == "simple_value":
            self.plugins.setdefault(tag, SCALARS_PLUGIN)
            extra.setdefault(tag, []).append((index, event.step, event.wall_time, value.simple_value))
        elif kind == "tensor" and plugin == SCALARS_PLUGIN:
            array = tensor_array(value.tensor)
            if array.size != 1:
                raise ValueError(f"scalar summary {tag!r} at step {event.step} holds {array.size} values")
            extra.setdefault(tag, []).append((index, event.step, event.wall_time, float(array.ravel()[0])))
        elif plugin == HPARAMS_PLUGIN:
            if tag == SESSION_START_TAG:
                out.params.update(hparams(value))
        elif others:
            out.others.append(Summarised(tag, plugin, event.step, event.wall_time, value))


def _series(pieces: list[tuple[np.ndarray, ...]]) -> Series:
    index, steps, walls, values = (np.concatenate([np.asarray(p[k]) for p in pieces]) for k in range(4))
    order = np.argsort(index, kind="stable")
    return Series(
        steps=steps[order].astype(np.int64).tolist(),
        wall_ms=wall_ms(walls[order].astype(np.float64)).tolist(),
        values=values[order].astype(np.float64).tolist(),
    )

