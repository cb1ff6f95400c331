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
    position after the last of them. Checksums are checked afterwards (`_check_headers`).

    Loggers repeat themselves (the same tags every step), so after a few records walked in Python the sizes
    are usually periodic: the walk then predicts the following offsets and confirms them all at once by
    reading the length at each predicted offset, keeping the prefix where every length is as predicted (each
    confirmed length is the one the Python walk would have read there)."""
    parts: list[np.ndarray] = []
    pos, budget = 0, _WALK_BUDGET
    lengths = np.ndarray((max(len(buf) - 7, 0),), dtype="<u8", buffer=buf, strides=(1,))
    while True:
        offsets, pos, done = _walk_python(buf, pos, budget)
        parts.append(offsets)
        if done:
            break
        sizes = np.diff(np.append(offsets, pos))
        pattern = _period(sizes)
        confirmed = _confirm(lengths, len(buf), pos, pattern) if pattern is not None else sizes[:0]
        if len(confirmed):
            parts.append(confirmed)
            pos = int(confirmed[-1] + 16 + lengths[confirmed[-1]])
        # predictions that hold for long make the next one come soon; others, later and later
        budget = _WALK_BUDGET if len(confirmed) >= 4 * budget else min(budget * 2, 1 << 14)
    return np.concatenate(parts), pos


_WALK_BUDGET = 64  # records walked in Python before a prediction is tried


def _walk_python(buf: bytes, pos: int, budget: int) -> tuple[np.ndarray, int, bool]:
    offsets: list[int] = []
    append = offsets.append
    unpack = _LENGTH.unpack_from
    limit = len(buf) - 16
    while pos <= limit and len(offsets) < budget:
        end = pos + 16 + unpack(buf, pos)[0]
        if end > limit + 16:
            return np.asarray(offsets, dtype=np.int64), pos, True
        append(pos)
        pos = end
    return np.asarray(offsets, dtype=np.int64), pos, pos > limit


def _period(sizes: np.ndarray) -> np.ndarray | None:
    """The shortest unit (at most 16 records) the last record sizes repeat, seen at least twice in a row."""
    for period in range(1, min(16, len(sizes) // 2) + 1):
        if np.array_equal(sizes[-period:], sizes[-2 * period : -period]):
            return sizes[-period:]
    return None


def _confirm(lengths: np.ndarray, size: int, pos: int, pattern: np.ndarray) -> np.ndarray:
    """Offsets from `pos` on where the records' lengths follow `pattern` (record sizes), up to the first
    that does not, in blocks that grow while every prediction holds."""
    found: list[np.ndarray] = []
    block = 256
    while True:
        sizes = np.tile(pattern, max(1, block // len(pattern)))
        offsets = pos + np.concatenate(([0], np.cumsum(sizes[:-1])))
        fits = np.flatnonzero(offsets + sizes > size)  # records the buffer does not hold completely
        if len(fits):
            offsets, sizes = offsets[: fits[0]], sizes[: fits[0]]
        wrong = np.flatnonzero(lengths[offsets] + np.uint64(16) != sizes.astype(np.uint64))
        keep = int(wrong[0]) if len(wrong) else len(offsets)
        found.append(offsets[:keep])
        if keep < len(offsets) or len(fits) or not keep:
            break
        pos = int(offsets[-1] + sizes[-1])
        block *= 4
    return np.concatenate(found)


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


def _crc_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table[byte] = crc
    return table


_TABLE = _crc_table()
_VECTOR_MAX_LENGTH = 1024  # longer records are checked one by one with the C extension
_VECTOR_MIN_COUNT = 64  # as are lengths shared by fewer records


def _crc32c_rows(columns: np.ndarray) -> np.ndarray:
    """CRC32C of each column of an (L, N) uint8 array: one table step per byte, all records at once."""
    crc = np.full(columns.shape[1], 0xFFFFFFFF, dtype=np.uint32)
    index = np.empty(columns.shape[1], dtype=np.intp)
    step = np.empty(columns.shape[1], dtype=np.uint32)
    for row in columns:  # in place: crc = TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        np.bitwise_xor(crc, row, out=index, casting="unsafe")
        np.bitwise_and(index, 0xFF, out=index)
        np.take(_TABLE, index, out=step)
        np.right_shift(crc, 8, out=crc)
        np.bitwise_xor(crc, step, out=crc)
    return crc ^ np.uint32(0xFFFFFFFF)


def _check_data(buf: bytes, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """A mask of the records whose data checksum matches. Records of a common length are checked together
    with numpy; the others with the C extension."""
    raw = np.frombuffer(buf, dtype=np.uint8)
    ends = starts + lengths
    computed = np.zeros(len(starts), dtype=np.uint32)
    single = np.ones(len(starts), dtype=bool)
    sizes, counts = np.unique(lengths, return_counts=True)
    for size, count in zip(sizes.tolist(), counts.tolist(), strict=True):
        if count < _VECTOR_MIN_COUNT or not 0 < size <= _VECTOR_MAX_LENGTH:
            continue
        rows = np.flatnonzero(lengths == size)
        matrix = np.lib.stride_tricks.sliding_window_view(raw, size)[starts[rows]]
        computed[rows] = _crc32c_rows(np.ascontiguousarray(matrix.T))
        single[rows] = False
    rest = np.flatnonzero(single)
    if len(rest):
        pieces = map(buf.__getitem__, map(slice, starts[rest].tolist(), ends[rest].tolist()))
        computed[rest] = np.fromiter(map(crc32c, pieces), dtype=np.uint32, count=len(rest))
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


# Random access, for a quick look at a file without walking it: its first and last record, the records that
# contain a byte pattern. Each returns None when the file is not well-formed there; callers then walk it.


def _checked_record(f: BinaryIO, offset: int, size: int) -> bytes | None:
    """The payload of the record at `offset` if both checksums match and it lies within the file."""
    f.seek(offset)
    header = f.read(12)
    if len(header) < 12:
        return None
    length, length_crc = _HEADER.unpack(header)
    if masked_crc32c(header[:8]) != length_crc or offset + 16 + length > size:
        return None
    rest = f.read(length + 4)
    data = rest[:length]
    return data if masked_crc32c(data) == _CRC.unpack_from(rest, length)[0] else None


def _lengths_at_every_byte(buf: bytes) -> np.ndarray:
    """The uint64 read at each position of `buf` that has 16 bytes after it (an unaligned strided view)."""
    return np.ndarray((len(buf) - 15,), dtype="<u8", buffer=buf, strides=(1,))


def first_record(f: BinaryIO, size: int) -> bytes | None:
    return _checked_record(f, 0, size)


def last_record(f: BinaryIO, size: int, window: int = 1 << 20) -> bytes | None:
    """The record that ends exactly at the end of the file, found among the last `window` bytes."""
    start = max(0, size - window)
    f.seek(start)
    tail = f.read(size - start)
    if len(tail) < 16:
        return None
    positions = np.arange(len(tail) - 15, dtype=np.uint64)
    ends_at_eof = np.flatnonzero(_lengths_at_every_byte(tail) == np.uint64(len(tail) - 16) - positions)
    for p in ends_at_eof.tolist():  # the outermost candidate first
        record = _checked_record(f, start + p, size)
        if record is not None:
            return record
    return None


def records_containing(f: BinaryIO, size: int, pattern: bytes, window: int = 1 << 16) -> list[bytes] | None:
    """Every record whose payload contains `pattern`, or None when one of its records cannot be located
    (a record starting more than `window` bytes before the pattern, or damage)."""
    found: list[bytes] = []
    for at in _find_all(f, size, pattern):
        lo = max(0, at - window)
        f.seek(lo)
        head = f.read(at - lo)
        record = None
        if len(head) >= 16:
            lengths = _lengths_at_every_byte(head + b"\0" * 15)[: len(head) - 11]
            positions = np.arange(len(lengths), dtype=np.int64)
            covers = (lengths < np.uint64(size)) & (positions + 12 + lengths.astype(np.int64) >= len(head))
            for p in np.flatnonzero(covers)[::-1].tolist():  # the nearest header first
                record = _checked_record(f, lo + p, size)
                if record is not None:
                    break
        if record is None:
            return None
        found.append(record)
    return found


def _find_all(f: BinaryIO, size: int, pattern: bytes, chunk_size: int = CHUNK_SIZE) -> list[int]:
    hits: list[int] = []
    offset, carry = 0, b""
    f.seek(0)
    while True:
        data = f.read(chunk_size)
        if not data:
            return hits
        buf = carry + data
        at = buf.find(pattern)
        while at >= 0:
            hits.append(offset + at)
            at = buf.find(pattern, at + 1)
        keep = min(len(buf), len(pattern) - 1)
        carry, offset = buf[len(buf) - keep :], offset + len(buf) - keep
