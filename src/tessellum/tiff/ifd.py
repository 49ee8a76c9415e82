"""Walk every IFD of a TIFF held (partly) in a :class:`BytesSource`.

Only the tags tessellum uses are decoded; other tags cost nothing (their out-of-line
values are never read). Missing bytes are collected over the whole walk, so the caller
can fetch them all in one read (see :class:`NeedBytes`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataFormatError
from .source import BytesSource, NeedBytes, merge_ranges

__all__ = ["IFD_GUESS", "WANTED_TAGS", "RawIFD", "TiffLayout", "read_ifds"]

#: Bytes requested for an IFD whose size is not known yet (its entry count lies beyond
#: the buffer). Generous so that the IFDs and arrays that usually follow come with it.
IFD_GUESS = 65536
MAX_ENTRIES = 4096
MAX_IFDS = 4096

#: TIFF type code -> (size in bytes, numpy type char)
TYPES: dict[int, tuple[int, str]] = {
    1: (1, "u1"),  # BYTE
    2: (1, "u1"),  # ASCII
    3: (2, "u2"),  # SHORT
    4: (4, "u4"),  # LONG
    5: (8, "u4"),  # RATIONAL (two LONGs)
    6: (1, "i1"),  # SBYTE
    7: (1, "u1"),  # UNDEFINED
    8: (2, "i2"),  # SSHORT
    9: (4, "i4"),  # SLONG
    10: (8, "i4"),  # SRATIONAL
    11: (4, "f4"),  # FLOAT
    12: (8, "f8"),  # DOUBLE
    13: (4, "u4"),  # IFD
    16: (8, "u8"),  # LONG8
    17: (8, "i8"),  # SLONG8
    18: (8, "u8"),  # IFD8
}
ASCII = 2

#: Tags decoded (everything else is skipped).
WANTED_TAGS = frozenset(
    {
        254, 256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 322, 323, 324, 325,
        330, 338, 339, 347, 530, 33550, 33922, 34264, 34735, 34736, 34737, 42112, 42113,
        50674,
    }
)  # fmt: skip
#: Tags kept as raw bytes whatever their declared type (JPEGTables may be UNDEFINED or BYTE).
RAW_TAGS = frozenset({347})


@dataclass(slots=True)
class RawIFD:
    """One IFD: its offset and decoded tag values (numpy arrays, bytes or str)."""

    offset: int
    tags: dict[int, Any] = field(default_factory=dict)
    sub_ifd: bool = False

    def get(self, tag: int, default: Any = None) -> Any:
        """The tag's value (array, bytes or str) or ``default``."""
        return self.tags.get(tag, default)

    def scalar(self, tag: int, default: int | float = 0) -> Any:
        """The tag's first value as a Python number, or ``default``."""
        value = self.tags.get(tag)
        if value is None or len(value) == 0:
            return default
        return value[0].item()


@dataclass(slots=True)
class TiffLayout:
    """The file-level facts of a TIFF and its IFDs in file order (SubIFDs after)."""

    byte_order: str
    bigtiff: bool
    ifds: list[RawIFD]


class _Walker:
    def __init__(self, src: BytesSource, url: str, file_size: int | None):
        self.src = src
        self.url = url
        self.file_size = file_size
        self.missing: list[tuple[int, int]] = []

    def fail(self, msg: str, offset: int | None) -> DataFormatError:
        return DataFormatError(f"{msg} ({self.url or 'buffer'})", url=self.url, offset=offset)

    def want(self, start: int, end: int) -> None:
        if self.file_size is not None:
            end = min(end, self.file_size)
        self.missing.append((start, max(end, start + 1)))

    def check_range(self, start: int, size: int, what: str) -> None:
        if self.file_size is not None and start + size > self.file_size:
            raise self.fail(f"{what} [{start}, {start + size}) lies beyond the end of file", start)


def _header(src: BytesSource, w: _Walker) -> tuple[str, bool, int]:
    head = src.get(0, 8)
    if head is None:
        raise NeedBytes(0, 16)
    bom = bytes(head[:2])
    if bom == b"II":
        bo = "<"
    elif bom == b"MM":
        bo = ">"
    else:
        raise w.fail(f"not a TIFF file: starts with {bytes(head[:4])!r}", 0)
    (magic,) = struct.unpack_from(bo + "H", head, 2)
    if magic == 42:
        (first,) = struct.unpack_from(bo + "I", head, 4)
        return bo, False, first
    if magic == 43:
        full = src.get(0, 16)
        if full is None:
            raise NeedBytes(0, 16)
        bytesize, zero, first = struct.unpack_from(bo + "HHQ", full, 4)
        if bytesize != 8 or zero != 0:
            raise w.fail("invalid BigTIFF header", 4)
        return bo, True, first
    raise w.fail(f"not a TIFF file: magic number {magic}", 2)


def read_ifds(src: BytesSource, *, url: str = "", file_size: int | None = None) -> TiffLayout:
    """Decode every IFD (main chain and SubIFDs) reachable in ``src``.

    Raises:
        NeedBytes: some IFDs or tag values lie outside ``src`` (all of them collected).
        DataFormatError: the bytes are not a valid TIFF.
    """
    w = _Walker(src, url, file_size)
    bo, big, first = _header(src, w)
    if big:
        count_fmt, entry_size, ptr_fmt, inline = bo + "Q", 20, bo + "Q", 8
        entry_fmt = bo + "HHQ"
    else:
        count_fmt, entry_size, ptr_fmt, inline = bo + "H", 12, bo + "I", 4
        entry_fmt = bo + "HHI"
    count_size = struct.calcsize(count_fmt)
    ptr_size = struct.calcsize(ptr_fmt)

    ifds: list[RawIFD] = []
    seen: set[int] = set()
    queue: list[tuple[int, bool]] = [(first, False)]
    while queue:
        offset, is_sub = queue.pop(0)
        if offset == 0 or offset in seen:
            continue
        if len(seen) >= MAX_IFDS:
            raise w.fail("too many IFDs", offset)
        seen.add(offset)
        if offset < 8 or (file_size is not None and offset >= file_size):
            raise w.fail(f"IFD offset {offset} out of range", offset)
        head = src.get(offset, count_size)
        if head is None:
            w.want(offset, offset + IFD_GUESS)
            continue
        (n,) = struct.unpack_from(count_fmt, head)
        if n == 0 or n > MAX_ENTRIES:
            raise w.fail(f"invalid IFD entry count {n}", offset)
        size = n * entry_size + ptr_size
        w.check_range(offset + count_size, size, "IFD")
        body = src.get(offset + count_size, size)
        if body is None:
            w.want(offset, offset + count_size + max(size, IFD_GUESS))
            continue
        ifd = RawIFD(offset, sub_ifd=is_sub)
        for i in range(n):
            pos = i * entry_size
            tag, typ, count = struct.unpack_from(entry_fmt, body, pos)
            if tag not in WANTED_TAGS:
                continue
            tinfo = TYPES.get(typ)
            if tinfo is None:
                raise w.fail(f"tag {tag} has unknown type {typ}", offset + count_size + pos)
            nbytes = count * tinfo[0]
            vpos = pos + (12 if big else 8)
            if nbytes <= inline:
                raw: memoryview | None = body[vpos : vpos + nbytes]
            else:
                (voff,) = struct.unpack_from(ptr_fmt, body, vpos)
                w.check_range(voff, nbytes, f"tag {tag} value")
                raw = src.get(voff, nbytes)
                if raw is None:
                    w.want(voff, voff + nbytes)
                    continue
            ifd.tags[tag] = _decode(raw, typ, count, bo, tag)
        (nxt,) = struct.unpack_from(ptr_fmt, body, n * entry_size)
        ifds.append(ifd)
        if nxt:
            queue.insert(0, (nxt, is_sub))
        subs = ifd.tags.get(330)
        if subs is not None:
            queue.extend((int(s), True) for s in subs)
    if w.missing:
        ranges = merge_ranges(w.missing, gap=4096)
        raise NeedBytes(ranges[0][0], ranges[-1][1], ranges)
    return TiffLayout(bo, big, ifds)


def _decode(raw: memoryview, typ: int, count: int, bo: str, tag: int) -> Any:
    if typ == ASCII:
        return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")
    if tag in RAW_TAGS:
        return bytes(raw)
    char = TYPES[typ][1]
    arr = np.frombuffer(raw, dtype=bo + char)
    if typ in (5, 10):  # rationals: numerator / denominator
        arr = arr[0::2] / np.where(arr[1::2] == 0, 1, arr[1::2])
    return arr
