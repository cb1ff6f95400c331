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
from pathlib import Path
from typing import BinaryIO

HEADER = struct.pack("<4sHB", b":W&B", 0xBEE1, 0)
HEADER_LEN = 7  # both the file header and each record header are 7 bytes
BLOCK_LEN = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_TYPE_CRC = [zlib.crc32(bytes([kind])) for kind in range(LAST + 1)]
_RECORD_HEADER = struct.Struct("<IHB")
_CUT = 4096  # payloads `iter_payloads` copies out at a time


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


def frame(data: bytes) -> tuple[array[int], list[bytes], list[Damage]]:
    """Where the complete record payloads of a `.wandb` file's bytes are, in order (`Framing.spans`), the
    split ones reassembled (`Framing.joined`), and what was lost. One loop, no payload copied but the
    reassembled ones: the usual record (FULL, in its block, checksum right) costs a header read and a CRC."""
    check_header(data)
    size = len(data)
    unpack = _RECORD_HEADER.unpack_from
    crc32 = zlib.crc32
    type_crc = _TYPE_CRC
    full_crc = type_crc[FULL]
    spans: array[int] = array("q")
    add = spans.append
    joined: list[bytes] = []
    damage: list[Damage] = []
    parts: list[bytes] | None = None  # fragments of a FIRST…LAST payload being reassembled
    parts_start = 0
    pos = HEADER_LEN
    block_end = BLOCK_LEN
    bound = min(block_end, size)  # a record must end by the end of its block and of the file
    while True:
        if pos + HEADER_LEN > block_end:  # block trailer: zero padding
            pos = block_end
            block_end += BLOCK_LEN
            bound = min(block_end, size)
            continue
        if pos + HEADER_LEN > size:
            break
        checksum, length, kind = unpack(data, pos)
        start = pos + HEADER_LEN
        end = start + length
        if kind == FULL and end <= bound and parts is None and crc32(data[start:end], full_crc) == checksum:
            add(start)
            add(end)
            pos = end
            continue
        if kind == 0 and length == 0 and checksum == 0:  # zeroed tail of a preallocated or padded block
            pos = block_end
            continue
        problem = None
        if kind < FULL or kind > LAST:
            problem = f"unknown record type {kind}"
        elif end > size:
            problem = "truncated record"
        elif end > block_end:
            problem = "record overruns its block"
        elif crc32(data[start:end], type_crc[kind]) != checksum:
            problem = "bad checksum"
        if problem is not None:
            if parts is not None:
                damage.append(Damage(parts_start, pos - parts_start, f"{problem} inside a split record"))
                parts = None
            damage.append(Damage(pos, min(block_end, size) - pos, problem))
            pos = block_end
            continue
        if kind == FULL:  # with a split payload pending
            damage.append(Damage(parts_start, pos - parts_start, "split record without its LAST part"))
            parts = None
            add(start)
            add(end)
        elif kind == FIRST:
            if parts is not None:
                damage.append(Damage(parts_start, pos - parts_start, "split record without its LAST part"))
            parts, parts_start = [data[start:end]], pos
        elif parts is None:
            damage.append(
                Damage(pos, end - pos, f"{'MIDDLE' if kind == MIDDLE else 'LAST'} record without FIRST")
            )
        elif kind == MIDDLE:
            parts.append(data[start:end])
        else:
            parts.append(data[start:end])
            add(-1 - len(joined))
            add(0)
            joined.append(b"".join(parts))
            parts = None
        pos = end
    if parts is not None:
        damage.append(Damage(parts_start, size - parts_start, "truncated split record at end of file"))
    elif pos < size:
        damage.append(Damage(pos, size - pos, "truncated record at end of file"))
    return spans, joined, damage


def _cut(data: bytes, spans: array[int], joined: list[bytes]) -> list[bytes]:
    """The payloads `spans` names (see `Framing`)."""
    pairs = zip(spans[::2], spans[1::2], strict=True)
    return [data[lo:hi] if lo >= 0 else joined[-1 - lo] for lo, hi in pairs]


def iter_payloads(data: bytes, damage: list[Damage]) -> Iterator[bytes]:
    """Every complete record payload of a `.wandb` file's bytes, in order; losses are appended to `damage`."""
    spans, joined, lost = frame(data)
    damage.extend(lost)
    for start in range(0, len(spans), 2 * _CUT):
        yield from _cut(data, spans[start : start + 2 * _CUT], joined)


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
    """The payloads of a file in lists of `size`, and its losses appended to `damage`. If `framings` holds a
    framing of this very file (same size, mtime and inode), the payloads are cut where it says, without
    checking again; else the file is framed and (if `keep`) its framing is stored."""
    stat = _stat(path)
    data = path.read_bytes()
    known = framings.get(path)
    if known is None or known.stat != stat or len(data) != stat[0]:
        spans, joined, lost = frame(data)
        known = Framing(stat, spans, joined, tuple(lost))
        if keep and len(data) == stat[0]:
            framings[path] = known
    damage.extend(known.damage)
    for start in range(0, len(known.spans), 2 * size):
        yield _cut(data, known.spans[start : start + 2 * size], known.joined)


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
