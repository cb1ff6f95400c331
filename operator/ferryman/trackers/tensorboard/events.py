"""Decoding TensorBoard `Event` records into scalar series and the other summaries.

The hot path is vectorised: all records of a chunk whose bytes have the exact shape of a one-value scalar
event (`wall_time`, optional `step`, `summary { value { tag simple_value } }` as torch's and tensorboardX's
`add_scalar` write it, or a rank-0 float/double `tensor` as TF2, Keras and ferryman's writer do) are checked
and decoded with numpy gathers, grouped by tag. Every other record is parsed with the protobuf classes
tensorboardX ships.
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

from ferryman.trackers.tensorboard.tfrecord import RecordChunk

_MAX_FAST_LENGTH = 300  # longer records are never one-scalar events of a sane tag

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


# The value part of a one-scalar `Summary.Value` after its tag: (bytes that must match, value dtype). TF2
# tensors are recognised here, but only count as scalars once the tag's plugin is known to be `scalars`.
_SIMPLE = (b"\x15", "<f4")  # simple_value (torch, tensorboardX, TF1)
_TENSOR_F32 = (b"\x42\x0a\x08\x01\x12\x00\x22\x04", "<f4")  # rank-0 DT_FLOAT tensor_content (TF2, Keras)
_TENSOR_F64 = (b"\x42\x0e\x08\x02\x12\x00\x22\x08", "<f8")  # rank-0 DT_DOUBLE tensor_content (ferryman)
_FAST_SHAPES = (_SIMPLE, _TENSOR_F32, _TENSOR_F64)

Found = dict[tuple[bytes, bool], list[tuple[np.ndarray, ...]]]  # (tag, is a tensor) -> pieces


def _fast_scalars(chunk: RecordChunk) -> tuple[Found, np.ndarray]:
    """Decode the one-scalar records of the chunk. Returns, per (tag, is a tensor), pieces of (record index,
    step, wall seconds, value), each in record order, and a mask of the records decoded.

    Works on all records at once by gathering single bytes at per-record positions: the optional step varint
    fixes where the summary starts, after which every length byte and field tag is checked."""
    done = np.zeros(len(chunk), dtype=bool)
    found: Found = {}
    raw = np.frombuffer(chunk.buffer, dtype=np.uint8)
    index = np.flatnonzero((chunk.lengths <= _MAX_FAST_LENGTH) & (chunk.lengths >= 16))
    index = index[raw[chunk.starts[index]] == 0x09]
    starts, lengths = chunk.starts[index], chunk.lengths[index]
    # byte count of the step varint (0: no step field; -1: not closed within 10 bytes)
    step_bytes = np.where(raw[starts + 9] == 0x10, -1, 0)
    open_rows = np.flatnonzero(step_bytes < 0)
    for j in range(10):
        if not len(open_rows):
            break
        closing = raw[starts[open_rows] + 10 + j] < 0x80
        step_bytes[open_rows[closing]] = j + 1
        open_rows = open_rows[~closing]
    pos = np.where(step_bytes > 0, 10 + step_bytes, 9)  # where the summary field starts
    usable = (step_bytes >= 0) & (lengths - pos - 2 <= 127)
    at = starts + pos
    frame_ok = np.zeros(len(index), dtype=bool)
    rows = np.flatnonzero(usable)
    frame_ok[rows] = (
        (raw[at[rows]] == 0x2A) & (raw[at[rows] + 1] == lengths[rows] - pos[rows] - 2)
        & (raw[at[rows] + 2] == 0x0A) & (raw[at[rows] + 3] == lengths[rows] - pos[rows] - 4)
        & (raw[at[rows] + 4] == 0x0A)
    )
    windows8 = np.lib.stride_tricks.sliding_window_view(raw, 8)
    for marker, dtype in _FAST_SHAPES:
        width = np.dtype(dtype).itemsize
        suffix = len(marker) + width
        tag_len = lengths - pos - 6 - suffix
        ok = frame_ok & (tag_len >= 0)
        rows = np.flatnonzero(ok)
        ok[rows] = raw[at[rows] + 5] == tag_len[rows]
        for k, byte in enumerate(marker):
            rows = np.flatnonzero(ok)
            ok[rows] = raw[starts[rows] + lengths[rows] - suffix + k] == byte
        rows = np.flatnonzero(ok)
        if not len(rows):
            continue
        frame_ok[rows] = False
        done[index[rows]] = True
        r_starts, r_lengths, r_bytes = starts[rows], lengths[rows], step_bytes[rows]
        walls = windows8[r_starts + 1].copy().view("<f8").ravel()
        values = np.lib.stride_tricks.sliding_window_view(raw, width)[r_starts + r_lengths - width]
        values = values.copy().view(dtype).ravel()
        steps = np.zeros(len(rows), dtype=np.uint64)
        for j in range(int(r_bytes.max())):
            sel = np.flatnonzero(r_bytes > j)
            steps[sel] |= (raw[r_starts[sel] + 10 + j] & 0x7F).astype(np.uint64) << np.uint64(7 * j)
        signed_steps = steps.view(np.int64)
        r_tag_len, r_tag_at = tag_len[rows], at[rows] + 6
        for length in np.unique(r_tag_len).tolist():
            group = np.flatnonzero(r_tag_len == length)
            if length == 0:
                groups: list[tuple[bytes, np.ndarray]] = [(b"", group)]
            else:
                tags = np.lib.stride_tricks.sliding_window_view(raw, length)[r_tag_at[group]]
                groups = [(tag, group[sel]) for tag, sel in _by_tag(tags)]
            for tag, sel in groups:
                found.setdefault((tag, marker != _SIMPLE[0]), []).append(
                    (index[rows][sel], signed_steps[sel], walls[sel], values[sel]))
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
        self._parse(chunk, np.flatnonzero(~done).tolist(), out, extra, others)
        pieces_by_tag: dict[str, list[tuple[np.ndarray, ...]]] = {}
        for (tag, tensor), pieces in found.items():
            name = tag.decode("utf-8", "replace")
            if tensor and self.plugins.get(name) != SCALARS_PLUGIN:  # a one-value tensor of another plugin
                rows = np.concatenate([piece[0] for piece in pieces])
                self._parse(chunk, np.sort(rows).tolist(), out, extra, others)
                continue
            self.plugins.setdefault(name, SCALARS_PLUGIN)
            pieces_by_tag.setdefault(name, []).extend(pieces)
        for name, pieces in pieces_by_tag.items():
            points = extra.pop(name, [])
            if points:
                pieces = [*pieces, tuple(np.asarray(col) for col in zip(*points, strict=True))]
            out.scalars[name] = _series(pieces)
        for name, points in extra.items():
            out.scalars[name] = _series([tuple(np.asarray(col) for col in zip(*points, strict=True))])
        return out

    def _parse(self, chunk: RecordChunk, rows: list[int], out: ChunkEvents,
               extra: dict[str, list[tuple[int, int, float, float]]], others: bool) -> None:
        """Records parsed whole with protobuf, in order."""
        for i in rows:
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
    if len(pieces) == 1:
        _, steps, walls, values = pieces[0]
    else:
        index, steps, walls, values = (np.concatenate([np.asarray(p[k]) for p in pieces]) for k in range(4))
        order = np.argsort(index, kind="stable")
        steps, walls, values = steps[order], walls[order], values[order]
    return Series(
        steps=np.asarray(steps, dtype=np.int64).tolist(),
        wall_ms=wall_ms(np.asarray(walls, dtype=np.float64)).tolist(),
        values=np.asarray(values, dtype=np.float64).tolist(),
    )
