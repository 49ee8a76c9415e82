"""Byte buffers for header parsing: a prefix plus any extra ranges fetched later."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping

__all__ = ["BytesSource", "NeedBytes", "merge_ranges"]


class NeedBytes(Exception):
    """Raised by the header parser when bytes outside the buffer are needed.

    ``[start, end)`` covers every missing range found in one pass; ``ranges`` lists the
    same bytes as disjoint ranges (nearby ones merged), for callers that prefer several
    smaller concurrent reads over one large one.
    """

    def __init__(self, start: int, end: int, ranges: list[tuple[int, int]] | None = None):
        super().__init__(f"need bytes [{start}, {end})")
        self.start = start
        self.end = end
        self.ranges = ranges if ranges is not None else [(start, end)]


def merge_ranges(ranges: Iterable[tuple[int, int]], gap: int = 0) -> list[tuple[int, int]]:
    """Sort ``[start, end)`` ranges and merge those less than ``gap`` bytes apart."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1] + gap:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


class BytesSource:
    """Non-overlapping byte segments of one file, looked up by absolute offset.

    Args:
        prefix: the bytes at offset 0 (the speculative prefix read).
        extra: more segments as ``{start: bytes}``.
    """

    __slots__ = ("_ends", "_segments", "_starts", "max_end")

    def __init__(
        self,
        prefix: bytes | memoryview = b"",
        extra: Mapping[int, bytes | memoryview] | None = None,
    ):
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._segments: list[memoryview] = []
        self.max_end = 0
        """The end of the furthest byte read through :meth:`get` (bytes the parse used)."""
        if len(prefix):
            self.add(0, prefix)
        for start, data in (extra or {}).items():
            self.add(start, data)

    def add(self, start: int, data: bytes | memoryview) -> None:
        """Add the bytes found at ``start`` (segments may touch or overlap earlier ones)."""
        if not len(data):
            return
        i = bisect.bisect_left(self._starts, start)
        self._starts.insert(i, start)
        self._ends.insert(i, start + len(data))
        self._segments.insert(i, memoryview(data).cast("B"))

    @property
    def segments(self) -> list[tuple[int, int]]:
        """The ``[start, end)`` ranges held."""
        return list(zip(self._starts, self._ends, strict=True))

    def covers(self, start: int, end: int) -> bool:
        """True when ``[start, end)`` lies inside one segment."""
        return self._find(start, end) >= 0

    def _find(self, start: int, end: int) -> int:
        i = bisect.bisect_right(self._starts, start) - 1
        # overlapping segments: walk back to find one long enough
        while i >= 0:
            if self._ends[i] >= end:
                return i
            i -= 1
        return -1

    def get(self, start: int, size: int) -> memoryview | None:
        """Return ``size`` bytes at ``start`` or None when they are not held."""
        end = start + size
        i = self._find(start, end)
        if i < 0:
            return None
        if end > self.max_end:
            self.max_end = end
        off = start - self._starts[i]
        return self._segments[i][off : off + size]
