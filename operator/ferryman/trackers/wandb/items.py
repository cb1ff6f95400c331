"""Vectorised decoding of the hot `.wandb` records: history rows and summary updates.

A history record is `Record{num, history: HistoryRecord{item: HistoryItem{nested_key|key, value_json}...,
step}}`, a summary record `Record{num, summary: SummaryRecord{update: SummaryItem{...}...}}`; both item kinds
share one wire shape (`wandb_internal.proto`: key = 1, nested_key = 2, value_json = 16). SDK 0.31 writes one
of each per logged row, so decoding them item by item through the protobuf objects is most of a read.

`split_items` checks a whole chunk of such records at once with numpy, walking every record's items the way a
protobuf parser does (tags, one-byte lengths, each item ending where its length says) and anchoring each item
on its `value_json` tag (0x82 0x01). A record is accepted only if its bytes are exactly: optional `num`, the
field tag, the body length, then items of the form `0x0a L (0x0a|0x12) Lk key 0x82 0x01 Lv value`, then (for
history) an optional `step` field and nothing else. Anything else (nested keys, typed values, long fields,
summary removals, a stray 0x82 0x01 inside a key) is left to the caller's protobuf path, record by record, so
the result is the same as decoding every record with `Record.ParseFromString`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HISTORY_TAG, SUMMARY_TAG = 0x12, 0x1A  # `Record.history` (2) and `Record.summary` (3), wire type 2
_PAD = b"\x00" * 512  # reads past a record's end stay inside the buffer (items are at most 2 + 127 bytes)
_WINDOW = 24  # bytes `decimals` reads ending at a value's end; the buffer starts with as many zero bytes
_FRONT = b"\x00" * _WINDOW


@dataclass(slots=True)
class Items:
    """The items of the accepted records of a chunk, in record order then item order."""

    ok: np.ndarray  # bool per record: decoded here (else the caller parses it with protobuf)
    record: np.ndarray  # per item: index of its record in the chunk
    key: np.ndarray  # per item: index in `names` of its key (`nested_key[0]` or `key`)
    names: list[str]  # the chunk's distinct keys, in order of first appearance
    _bytes: np.ndarray
    _anchor: np.ndarray  # per item: offset of its value_json tag in `_bytes`
    _value_end: np.ndarray

    def values(self, which: np.ndarray | None = None) -> list[str] | None:
        """`value_json` of every item (or of the items `which`); None if one is not UTF-8 or holds a NUL."""
        if which is None:
            return _strings(self._bytes, self._anchor + 3, self._value_end)
        return _strings(self._bytes, self._anchor[which] + 3, self._value_end[which])

    def numbers(self) -> tuple[np.ndarray, np.ndarray]:
        """`decimals` of every item's `value_json`."""
        return decimals(self._bytes, self._anchor + 3, self._value_end)


def _strings(a: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[str] | None:
    """The byte ranges [lo, hi) of `a` decoded, or None if one is not UTF-8 (protobuf rejects such a string
    field) or holds a NUL."""
    if not len(lo):
        return []
    width = hi - lo + 1  # each string and a NUL after it
    ends = np.cumsum(width)
    out = a[np.arange(int(ends[-1]), dtype=np.int64) + np.repeat(lo - (ends - width), width)]
    out[ends - 1] = 0
    try:
        parts = out.tobytes().decode("utf-8").split("\x00")
    except UnicodeDecodeError:
        return None
    if len(parts) != len(lo) + 1:
        return None
    parts.pop()
    return parts


def _envelope(payloads: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The chunk's bytes (padded on both sides), each record's end, where its type tag is (after an optional
    `num`), and whether that `num` is a proper varint."""
    lengths = np.fromiter(map(len, payloads), np.int64, len(payloads))
    ends = np.cumsum(lengths) + _WINDOW
    a = np.frombuffer(b"".join([_FRONT, *payloads, _PAD]), np.uint8)
    tag = ends - lengths
    has_num = (a[tag] == 0x08) & (lengths > 0)
    tag[has_num] += 1
    for _ in range(9):
        more = has_num & (a[tag] >= 0x80)
        if not more.any():
            break
        tag[more] += 1
    num_ok = ~has_num | (a[tag] < 0x80)
    tag[has_num] += 1
    return a, ends, tag, num_ok


def record_types(payloads: list[bytes]) -> np.ndarray:
    """Each record's type (its oneof field number) when a one-byte tag directly follows `num`, the common
    shape, matched for a whole chunk at once; else 0 (then `offline.first_field` decides)."""
    a, ends, tag, num_ok = _envelope(payloads)
    byte = a[tag]
    return np.where(num_ok & (tag < ends) & (byte < 0x80) & (byte != 0x08), byte >> 3, 0)


def split_items(payloads: list[bytes], field_tag: int) -> Items | None:
    """Decode the items of `payloads` (serialized `Record`s whose type field is `field_tag`), or None if no
    record of the chunk has the plain shape."""
    count = len(payloads)
    a, ends, tag, ok = _envelope(payloads)
    first = a[tag + 1].astype(np.int64)
    second = a[tag + 2].astype(np.int64)
    long_length = first >= 0x80
    body_len = np.where(long_length, (first & 0x7F) | (second << 7), first)
    body = tag + 2 + long_length
    ok &= (a[tag] == field_tag) & (body + body_len == ends) & ~(long_length & (second >= 0x80))
    # items, each anchored on its value_json tag 0x82 0x01 inside a record's body
    anchor = np.flatnonzero((a[:-1] == 0x82) & (a[1:] == 0x01))
    anchor = anchor[anchor < ends[-1]]
    record = np.searchsorted(ends, anchor, side="right")
    inside = anchor >= body[record]
    anchor, record = anchor[inside], record[inside]
    if not len(anchor):
        return None
    value_end = anchor + 3 + a[anchor + 2]
    item = np.empty_like(anchor)
    item[1:] = value_end[:-1]
    opens = np.ones(len(anchor), dtype=bool)
    opens[1:] = record[1:] != record[:-1]
    item[opens] = body[record[opens]]
    key_tag = a[item + 2]
    good = (
        (a[item] == 0x0A)
        & (a[item + 1] < 0x80)
        & ((key_tag == 0x12) | (key_tag == 0x0A))
        & (a[item + 3] < 0x80)
        & (item + 4 + a[item + 3] == anchor)
        & (a[anchor + 2] < 0x80)
        & (a[item + 1] == value_end - item - 2)
        & (value_end <= ends[record])
    )
    ok &= np.bincount(record[~good], minlength=count) == 0
    ok &= np.bincount(record, minlength=count) > 0
    # what follows the last item: nothing, or (history) the `step` field alone
    closes = np.ones(len(anchor), dtype=bool)
    closes[:-1] = opens[1:]
    last = np.zeros(count, dtype=np.int64)
    last[record[closes]] = value_end[closes]
    tail = ends - last
    tail_ok = tail == 0
    if field_tag == HISTORY_TAG:  # `step`: empty, or `num` (0x08, a varint) filling it exactly
        step_ok = (a[last] == 0x12) & (a[last + 1] == tail - 2)
        varint_ok = (tail >= 4) & (tail <= 13) & (a[last + 2] == 0x08) & (a[np.maximum(ends - 1, 0)] < 0x80)
        for offset in range(3, 12):
            inner = last + offset < ends - 1
            varint_ok &= ~inner | (a[np.minimum(last + offset, len(a) - 1)] >= 0x80)
        tail_ok |= step_ok & ((tail == 2) | varint_ok)
    ok &= tail_ok
    if not ok.any():
        return None
    keep = ok[record]
    item, anchor, value_end, record = item[keep], anchor[keep], value_end[keep], record[keep]
    keyed = _key_ids(a, item + 4, anchor, record)
    if keyed is None:
        return None
    return Items(ok, record, keyed[0], keyed[1], _bytes=a, _anchor=anchor, _value_end=value_end)


def _key_ids(
    a: np.ndarray, lo: np.ndarray, hi: np.ndarray, record: np.ndarray
) -> tuple[np.ndarray, list[str]] | None:
    """Per range [lo, hi) of `a` (the keys of items, grouped by `record`) the index of its text among the
    distinct ones, and those (None if one is not UTF-8 or holds a NUL). A record whose keys (of at most 16
    bytes) are byte for byte those of the record before it, slot by slot (the usual case: one row after
    another), takes that record's ids; only the others' keys become strings."""
    count = len(lo)
    if not count:
        return np.zeros(0, np.int64), []
    first = np.flatnonzero(np.concatenate(([True], record[1:] != record[:-1])))  # each record's first item
    items = np.diff(np.append(first, count))
    owner = np.repeat(np.arange(len(first)), items)  # per item: its record among `first`
    slot = np.arange(count) - first[owner]
    repeats = np.zeros(len(first), dtype=bool)
    repeats[1:] = items[1:] == items[:-1]
    pairs = np.flatnonzero(repeats[owner])
    before = pairs - items[owner[pairs]]
    # a key of at most 16 bytes lies within its first 8 and its last 8 bytes, compared as two words
    words = np.ndarray((len(a) - 7,), np.uint64, a, 0, (1,))
    length = hi - lo
    head, tail = words[lo], words[np.maximum(hi - 8, 0)]
    same = (length[pairs] == length[before]) & (length[pairs] <= 16)
    same &= head[pairs] == head[before]
    same &= tail[pairs] == tail[before]
    differs = np.ones(count, dtype=bool)
    differs[pairs[same]] = False
    repeats &= np.bincount(owner[differs], minlength=len(first)) == 0
    fresh = ~repeats[owner]
    keys = _strings(a, lo[fresh], hi[fresh])
    if keys is None:
        return None
    names = list(dict.fromkeys(keys))
    index = {name: number for number, name in enumerate(names)}
    ids = np.zeros(count, np.int64)
    ids[fresh] = np.fromiter(map(index.__getitem__, keys), np.int64, len(keys))
    source = np.maximum.accumulate(np.where(repeats, 0, np.arange(len(first))))  # the record copied
    return ids[first[source[owner]] + slot], names


# `decimals`: SWAR constants (a uint64 holds 8 characters, the first in its lowest byte)
_U64 = np.uint64
_ZEROS, _DOTS = _U64(0x3030303030303030), _U64(0x2E2E2E2E2E2E2E2E)
_HIGH_BITS, _LOW_BITS = _U64(0x8080808080808080), _U64(0x7F7F7F7F7F7F7F7F)
_LOW_BYTES = np.array([(1 << (8 * count)) - 1 for count in range(9)], np.uint64)  # the lowest `count` bytes
_ROOM = _U64((2**64 - 10**8) // 10**8)  # below it, `value * 10**8 + eight digits` stays below 2**64
_TENS = np.array([10**power for power in range(20)], np.uint64)
_POWERS = 10.0 ** np.arange(_WINDOW)  # all exact in a float64 (and a long double) up to 10**22
_LONG_POWERS = np.array([np.longdouble(10) ** power for power in range(_WINDOW)], np.longdouble)
_EXACT_MANTISSA = 2**53  # below it a float64 holds an integer exactly
_EXTENDED = np.longdouble(1) + np.longdouble(2.0**-63) != 1  # long double keeps 64 mantissa bits (x86-64)


def _eight_digits(digits: np.ndarray) -> np.ndarray:
    """The number written by 8 digit values (0-9 per byte, the most significant in the lowest byte)."""
    digits = digits * _U64(10) + (digits >> _U64(8))
    pairs = _U64(0x000000FF000000FF)
    return (
        ((digits & pairs) * _U64(100 + (1_000_000 << 32)))
        + (((digits >> _U64(16)) & pairs) * _U64(1 + (10_000 << 32)))
    ) >> _U64(32)


def decimals(a: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`float()` of each text a[lo:hi] and whether it is that: True for `-?D+(.D+)?` of at most 24
    characters whose digits, the dot read as a 0, make an integer below 2**64 (19 digits after leading
    zeros); False (another form, or a rounding this cannot settle) leaves it to `float()`. `a` needs
    `_WINDOW` bytes before each text and 8 after.

    Eight characters at a time: the digits, `-` and `.` read as zeros, make one integer, which the dot's
    place splits into the mantissa M and F fraction digits. M / 10**F is one correctly rounded float64
    division while M < 2**53; above, one long double division (64 bits) then the rounding to float64,
    which equals the single rounding unless the first lands exactly halfway between two floats."""
    count = len(lo)
    length = hi - lo
    negative = a[lo] == 0x2D
    ok = (length > negative) & (length <= _WINDOW)
    before = _WINDOW - np.where(ok, length, 0)  # bytes of the window ending at `hi` that are not the text
    words = np.ndarray((len(a) - 7,), "<u8", a, 0, (1,))
    value = np.zeros(count, np.uint64)  # the text's characters read as digits, `-` and `.` as zeros
    strays = np.zeros(count, np.uint64)  # characters that are not digits
    dot_end = np.zeros(count, np.int64)  # window offset just after the dot; 0: no dot
    for index in range(_WINDOW // 8):
        word = words[hi - _WINDOW + 8 * index]
        outside = _LOW_BYTES[np.clip(before - 8 * index, 0, 8)]
        shifted = word ^ _ZEROS  # digits become 0-9; adding 0x76 sets the high bit of any byte above 9
        other = ((shifted + _U64(0x7676767676767676)) | shifted) & _HIGH_BITS & ~outside
        dotted = word ^ _DOTS  # dots become 0: the one byte value for which (b & 0x7F) + 0x7F | b < 0x80
        dots = ~(((dotted & _LOW_BITS) + _LOW_BITS) | dotted | _LOW_BITS) & ~outside
        strays += np.bitwise_count(other)
        dot_end += (dots != 0) * (8 * index + 1 + (np.bitwise_count(dots - _U64(1)).astype(np.int64) >> 3))
        filler = ((other >> _U64(7)) * _U64(0xFF)) | outside
        digits = ((word & ~filler) | (_ZEROS & filler)) - _ZEROS
        ok &= value < _ROOM
        value = value * _U64(100_000_000) + _eight_digits(digits)
    has_dot = dot_end > 0
    ok &= strays == negative + has_dot.astype(np.uint64)  # no other character, at most one dot
    ok &= ~has_dot | ((dot_end < _WINDOW) & (dot_end > before + negative + 1))  # digits on both sides of it
    fraction = np.where(ok & has_dot, _WINDOW - dot_end, 0)
    short = np.minimum(fraction, 18)  # with 19 fraction digits or more, `value` has no integer part
    split = _TENS[short + 1]
    mantissa = np.where(has_dot & (fraction < 19), value // split * _TENS[short] + value % split, value)
    numbers = mantissa.astype(np.float64) / _POWERS[fraction]
    wide = np.flatnonzero(mantissa >= _U64(_EXACT_MANTISSA))
    if len(wide) and _EXTENDED:
        exact = mantissa[wide].astype(np.longdouble) / _LONG_POWERS[fraction[wide]]
        near = exact.astype(np.float64)
        beyond = np.nextafter(near, np.where(exact > near, np.inf, -np.inf))
        ok[wide] &= exact != (near.astype(np.longdouble) + beyond.astype(np.longdouble)) / 2
        numbers[wide] = near
    elif len(wide):
        ok[wide] = False
    return np.where(negative, -numbers, numbers), ok
