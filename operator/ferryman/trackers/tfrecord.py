"""TFRecord framing, the container of TensorBoard event files, read and written without TensorFlow.

A record is `uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)`, all little
endian. `read_records` streams a file in chunks: a Python walk follows the lengths, numpy checks the header
checksums (one CRC per distinct length) and the C `crc32c` extension the data checksum of every
record. Problems are reported with their byte offset and never raised: a bad data checksum drops
that record only, a bad header (whose length cannot be trusted) ends the file, as does a truncated tail.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import BinaryIO

import numpy as np
from crc32c import crc32c

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
CHUNK_SIZE = 16 << 20


class Problem(StrEnum):
    EMPTY = "empty"  # a file without a single byte
    CORRUPT = "corrupt"  # a checksum mismatch
    TRUNCATED = "truncated"  # the file ends inside a record


Report = Callable[[Problem, int, str], None]  # (problem, byte offset, description)


def masked_crc32c(data: bytes | memoryview) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _mask(crcs: np.ndarray) -> np.ndarray:
    crcs = crcs.astype(np.uint32)
    return ((crcs >> np.uint32(15)) | (crcs << np.uint32(17))) + np.uint32(_MASK_DELTA)


@dataclass(slots=True)
class RecordChunk:
    """Records of one read: record `i` is `buffer[starts[i]:starts[i] + lengths[i]]`, and begins (header
    included) at file offset `offset + starts[i] - 12`. Only records with valid checksums are listed."""

    buffer: bytes
    offset: int  # file offset of buffer[0]
    starts: np.ndarray  # int64
    lengths: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.starts)

    def record(self, i: int) -> bytes:
        start = int(self.starts[i])
        return self.buffer[start : start + int(self.lengths[i])]


def _walk(buf: bytes) -> tuple[np.ndarray, int]:
    """Follow the record lengths from the start of `buf`: the header offsets of the complete records, and the
    position after the last of them. Checksums are checked afterwards (`_check_headers`)."""
    offsets: list[int] = []
    append = offsets.append
    unpack = _LENGTH.unpack_from
    pos, limit = 0, len(buf) - 16
    while pos <= limit:
        end = pos + 16 + unpack(buf, pos)[0]
        if end > limit + 16:
            break
        append(pos)
        pos = end
    return np.asarray(offsets, dtype=np.int64), pos


def _header_ok(buf: bytes, pos: int) -> bool:
    return masked_crc32c(buf[pos : pos + 8]) == _HEADER.unpack_from(buf, pos)[1]


def _check_headers(raw: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Offsets and lengths of the records, cut before the first header whose checksum does not match (the
    walk went astray there), and the position of that header."""
    if not len(offsets):
        return offsets, offsets, None
    headers = np.lib.stride_tricks.sliding_window_view(raw, 12)[offsets]
    lengths = headers[:, :8].copy().view("<u8").ravel().astype(np.int64)
    stored = headers[:, 8:].copy().view("<u4").ravel()
    sizes, inverse = np.unique(lengths, return_inverse=True)
    expected = np.fromiter((masked_crc32c(struct.pack("<Q", n)) for n in sizes.tolist()), dtype=np.uint32,
                           count=len(sizes))
    bad = np.flatnonzero(expected[inverse] != stored)
    if len(bad):
        first = int(bad[0])
        return offsets[:first], lengths[:first], int(offsets[first])
    return offsets, lengths, None


def _check_data(buf: bytes, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """A mask of the records whose data checksum matches."""
    ends = starts + lengths
    computed = np.fromiter(map(crc32c, map(buf.__getitem__, map(slice, starts.tolist(), ends.tolist()))),
                           dtype=np.uint32, count=len(starts))
    raw = np.frombuffer(buf, dtype=np.uint8)
    stored = np.lib.stride_tricks.sliding_window_view(raw, 4)[ends].copy().view("<u4").ravel()
    return np.asarray(_mask(computed) == stored)


def read_records(
    path: str | os.PathLike[str], report: Report, chunk_size: int = CHUNK_SIZE
) -> Iterator[RecordChunk]:
    """Every record of the file whose checksums match, chunk by chunk; problems go to `report`."""
    with open(path, "rb") as f:
        yield from _read(f, os.fstat(f.fileno()).st_size, report, chunk_size)


def _read(f: BinaryIO, size: int, report: Report, chunk_size: int) -> Iterator[RecordChunk]:
    if size == 0:
        report(Problem.EMPTY, 0, "empty event file (0 bytes)")
        return
    carry, offset, need = b"", 0, chunk_size
    while True:
        data = f.read(need)
        buf = carry + data if carry else data
        at_eof = len(data) < need
        raw = np.frombuffer(buf, dtype=np.uint8)
        offsets, pos = _walk(buf)
        offsets, lengths, bad = _check_headers(raw, offsets)
        if bad is None and len(buf) - pos >= 12 and not _header_ok(buf, pos):
            bad = pos
        if len(offsets):
            starts = offsets + 12
            valid = _check_data(buf, starts, lengths)
            if not valid.all():
                for i in np.flatnonzero(~valid).tolist():
                    report(Problem.CORRUPT, offset + int(offsets[i]),
                           f"data checksum mismatch in a record of {int(lengths[i])} bytes; record skipped")
            chunk = RecordChunk(buf, offset, starts[valid], lengths[valid])
            if len(chunk):
                yield chunk
        if bad is not None:
            report(Problem.CORRUPT, offset + bad,
                   f"header checksum mismatch; the remaining {size - offset - bad} bytes cannot be framed")
            return
        carry, offset = buf[pos:], offset + pos
        if at_eof:
            if carry:
                _report_tail(carry, offset, report)
            return
        need = chunk_size
        if len(carry) >= 12:  # a record larger than a chunk: read all of it at once
            need = max(chunk_size, 16 + _HEADER.unpack_from(carry)[0] - len(carry))


def _report_tail(tail: bytes, offset: int, report: Report) -> None:
    if len(tail) < 12:
        report(Problem.TRUNCATED, offset, f"file ends inside a record header ({len(tail)} of 12 bytes)")
    else:
        length = _HEADER.unpack_from(tail)[0]
        report(Problem.TRUNCATED, offset,
               f"file ends inside a record ({len(tail)} of {length + 16} bytes)")


def frame(data: bytes) -> bytes:
    """One record around `data`."""
    header = struct.pack("<Q", len(data))
    return header + _CRC.pack(masked_crc32c(header)) + data + _CRC.pack(masked_crc32c(data))
