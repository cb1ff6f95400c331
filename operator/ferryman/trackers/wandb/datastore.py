"""The block framing of W&B `.wandb` transaction logs, read (and written, for tests and benchmarks) without
the wandb SDK, which dropped its reader in 0.27.1.

The format is LevelDB's log format with W&B's own file header (`wandb/sdk/internal/datastore.py` up to 0.28,
`core/pkg/leveldb` in wandb-core since): a 7-byte header `:W&B`, magic 0xBEE1 (little-endian uint16),
version 0; then 32 KiB blocks of records `crc32 (uint32 LE) | length (uint16 LE) | type (uint8) | data`. The
checksum is zlib's CRC-32 of the data seeded with the CRC-32 of the type byte. A payload larger than the room
left in a block is split into FIRST, MIDDLE… and LAST records; a block tail shorter than a record header is
zero padding. Each reassembled payload is one serialized `wandb_internal.proto` `Record`.

Corruption follows LevelDB's recovery rule: a record with a bad checksum, an impossible length or type, or a
broken FIRST/MIDDLE/LAST sequence costs the rest of its block, never the rest of the file. Each such loss is
reported as a `Damage` with its file offset.
"""

from __future__ import annotations

import os
import struct
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import BinaryIO

HEADER = struct.pack("<4sHB", b":W&B", 0xBEE1, 0)
HEADER_LEN = 7  # both the file header and each record header are 7 bytes
BLOCK_LEN = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_TYPE_CRC = [zlib.crc32(bytes([kind])) for kind in range(LAST + 1)]
_RECORD_HEADER = struct.Struct("<IHB")


class NotAWandbLog(ValueError):
    """The file does not start with the `.wandb` header (empty, another format, or another version)."""


@dataclass(slots=True, frozen=True)
class Damage:
    """Bytes of a `.wandb` file that could not be read back into records."""

    offset: int
    length: int
    reason: str  # "bad checksum", "truncated record", "unexpected MIDDLE record" …


def check_header(data: bytes | memoryview) -> None:
    if len(data) == 0:
        raise NotAWandbLog("empty file (0 bytes)")
    head = bytes(data[:HEADER_LEN])
    if len(head) < HEADER_LEN or head[:4] != HEADER[:4]:
        raise NotAWandbLog(f"no ':W&B' header (starts with {head[:8]!r})")
    if head != HEADER:
        magic, version = struct.unpack("<HB", head[4:])
        raise NotAWandbLog(f"unknown .wandb header: magic {magic:#06x}, version {version}")


@dataclass(slots=True, frozen=True)
class Framing:
    """Where the payloads of a `.wandb` file are, found by a full read, to cut them again without checking."""

    stat: tuple[int, int, int]  # size, mtime (ns) and inode of the file when it was framed
    spans: array[int]  # start, end of each payload in the file; a split one: (-1 - index in `joined`, 0)
    joined: list[bytes]  # the reassembled FIRST…LAST payloads
    damage: tuple[Damage, ...]  # what the full read lost


def iter_payloads(
    data: bytes, damage: list[Damage], spans: array[int] | None = None, joined: list[bytes] | None = None
) -> Iterator[bytes]:
    """Every complete record payload of a `.wandb` file's bytes, in order; losses are appended to `damage`,
    and where each payload is to `spans` and `joined` if given (see `Framing`)."""
    check_header(data)
    size = len(data)
    unpack = _RECORD_HEADER.unpack_from
    crc32 = zlib.crc32
    type_crc = _TYPE_CRC
    pos = HEADER_LEN
    parts: list[bytes] | None = None  # fragments of a FIRST…LAST payload being reassembled
    parts_start = 0
    full_crc = type_crc[FULL]
    while True:
        left = BLOCK_LEN - pos % BLOCK_LEN
        if left < HEADER_LEN:  # block trailer: zero padding
            pos += left
            continue
        if pos + HEADER_LEN > size:
            break
        checksum, length, kind = unpack(data, pos)
        end = pos + HEADER_LEN + length
        if kind == FULL and parts is None and HEADER_LEN + length <= left and end <= size:  # the usual record
            payload = data[pos + HEADER_LEN : end]
            if crc32(payload, full_crc) == checksum:
                if spans is not None:
                    spans.append(pos + HEADER_LEN)
                    spans.append(end)
                yield payload
                pos = end
                continue
        if kind == 0 and length == 0 and checksum == 0:  # zeroed tail of a preallocated or padded block
            pos += left
            continue
        problem = None
        if kind < FULL or kind > LAST:
            problem = f"unknown record type {kind}"
        elif end > size:
            problem = "truncated record"
        elif HEADER_LEN + length > left:
            problem = "record overruns its block"
        elif crc32(data[pos + HEADER_LEN : end], type_crc[kind]) != checksum:
            problem = "bad checksum"
        if problem is not None:
            if parts is not None:
                damage.append(Damage(parts_start, pos - parts_start, f"{problem} inside a split record"))
                parts = None
            skip = min(left, size - pos)
            damage.append(Damage(pos, skip, problem))
            pos += left
            continue
        payload = data[pos + HEADER_LEN : end]
        if kind == FULL:
            if parts is not None:
                damage.append(Damage(parts_start, pos - parts_start, "split record without its LAST part"))
                parts = None
            if spans is not None:
                spans.append(pos + HEADER_LEN)
                spans.append(end)
            yield payload
        elif kind == FIRST:
            if parts is not None:
                damage.append(Damage(parts_start, pos - parts_start, "split record without its LAST part"))
            parts, parts_start = [payload], pos
        elif parts is None:
            damage.append(
                Damage(pos, end - pos, f"{'MIDDLE' if kind == MIDDLE else 'LAST'} record without FIRST")
            )
        elif kind == MIDDLE:
            parts.append(payload)
        else:
            parts.append(payload)
            whole = b"".join(parts)
            if spans is not None and joined is not None:
                spans.append(-1 - len(joined))
                spans.append(0)
                joined.append(whole)
            yield whole
            parts = None
        pos = end
    if parts is not None:
        damage.append(Damage(parts_start, size - parts_start, "truncated split record at end of file"))
    elif pos < size:
        damage.append(Damage(pos, size - pos, "truncated record at end of file"))


def read_payloads(path: Path, damage: list[Damage]) -> Iterator[bytes]:
    """`iter_payloads` over a file, read whole (W&B files are written in full blocks; reading them in one
    call is the fastest path and bounded by the file's size)."""
    return iter_payloads(path.read_bytes(), damage)


def _stat(path: Path) -> tuple[int, int, int]:
    found = os.stat(path)
    return found.st_size, found.st_mtime_ns, found.st_ino


def read_chunks(
    path: Path, damage: list[Damage], size: int, framings: dict[Path, Framing], keep: bool = True
) -> Iterator[list[bytes]]:
    """The payloads of a file in lists of `size`. If `framings` holds a framing of this very file (same
    size, mtime and inode), the payloads are cut where it says, without checking again (its losses are
    appended to `damage` all at once); else the file is read in full and (if `keep`) its framing is stored."""
    stat = _stat(path)
    data = path.read_bytes()
    known = framings.get(path)
    if known is not None and known.stat == stat and len(data) == stat[0]:
        damage.extend(known.damage)
        for start in range(0, len(known.spans), 2 * size):
            part = known.spans[start : start + 2 * size]
            pairs = zip(part[::2], part[1::2], strict=True)
            yield [data[lo:hi] if lo >= 0 else known.joined[-1 - lo] for lo, hi in pairs]
        return
    spans: array[int] = array("q")
    joined: list[bytes] = []
    lost: list[Damage] = []
    payloads = iter_payloads(data, lost, spans, joined)
    told = 0
    while chunk := list(islice(payloads, size)):
        damage.extend(lost[told:])
        told = len(lost)
        yield chunk
    damage.extend(lost[told:])
    if keep and len(data) == stat[0]:
        framings[path] = Framing(stat, spans, joined, tuple(lost))


class LogWriter:
    """Writes the framing exactly as wandb does; used to build test fixtures and benchmark inputs."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._pos = 0
        self._write(HEADER)

    def _write(self, data: bytes) -> None:
        self._stream.write(data)
        self._pos += len(data)

    def _record(self, kind: int, data: bytes) -> None:
        checksum = zlib.crc32(data, _TYPE_CRC[kind])
        self._write(_RECORD_HEADER.pack(checksum, len(data), kind) + data)

    def write(self, payload: bytes) -> None:
        left = BLOCK_LEN - self._pos % BLOCK_LEN
        if left < HEADER_LEN:
            self._write(b"\x00" * left)
            left = BLOCK_LEN
        if len(payload) + HEADER_LEN <= left:
            self._record(FULL, payload)
            return
        room = left - HEADER_LEN
        self._record(FIRST, payload[:room])
        used = room
        while len(payload) - used > BLOCK_LEN - HEADER_LEN:
            self._record(MIDDLE, payload[used : used + BLOCK_LEN - HEADER_LEN])
            used += BLOCK_LEN - HEADER_LEN
        self._record(LAST, payload[used:])
