"""Read planning: pure functions from a request to the tiles it needs (no I/O).

A :class:`SourceRead` is one band of one file, one overview level and one pixel window
of that level; the tiles of all SourceReads of a call are deduplicated before fetching.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class TileKey:
    """One stored tile: file, level and linear tile index (planes included); ``mask``:
    a tile of the file's internal mask (``level`` then indexes its mask levels)."""

    href: str
    level: int
    index: int
    mask: bool = False


@dataclass(frozen=True, slots=True)
class SourceRead:
    """Read ``window`` (row0, col0, row1, col1; may extend past the image) of sample
    ``sample`` of ``level`` of the file at ``href``. A read of the file's internal mask
    has ``mask=True`` and a header whose levels are the mask levels
    (:func:`mask_header`)."""

    href: str
    header: Any  # tessellum.tiff.TiffHeader
    level: int
    sample: int
    window: tuple[int, int, int, int]
    mask: bool = False

    def key(self, index: int) -> TileKey:
        """The key of tile ``index`` of this read's level."""
        return TileKey(self.href, self.level, index, self.mask)

    @property
    def shape(self) -> tuple[int, int]:
        r0, c0, r1, c1 = self.window
        return (r1 - r0, c1 - c0)


def level_resolutions(header: Any) -> list[float]:
    """Pixel size of every level (its finer axis, in CRS units), full resolution first.

    The finer axis, as the targets' resolution (``min(grid.resolution)``) and GDAL's
    overview choice: an overview's rounded size makes its pixels slightly non-square
    (67 rows / 4 -> 17), and its coarser axis would rule out reading it at its own grid.
    """
    gt = header.geo.transform
    res_x, res_y = math.hypot(gt[1], gt[4]), math.hypot(gt[2], gt[5])
    full = header.levels[0]
    return [
        min(res_x * full.width / lvl.width, res_y * full.height / lvl.height)
        for lvl in header.levels
    ]


def pick_overview(header: Any, target_resolution: float | None, *, tolerance: float = 0.01) -> int:
    """The coarsest level whose resolution is at least as fine as ``target_resolution``.

    ``None`` (native) picks the full resolution. A level counts as fine enough when its
    pixel is no more than ``tolerance`` (relative) larger than the target.
    """
    if target_resolution is None:
        return 0
    best = 0
    for i, res in enumerate(level_resolutions(header)):
        if res <= target_resolution * (1 + tolerance):
            best = i
    return best


def mask_header(header: Any) -> Any:
    """``header`` with its internal mask levels as its levels: what a mask read plans,
    pastes and decodes with (sparse mask tiles decode to 0, masked, as in GDAL)."""
    import dataclasses

    return dataclasses.replace(header, levels=header.mask_levels, mask_levels=(), nodata_raw=None)


def mask_level_for(header: Any, level: int) -> int | None:
    """The internal mask level of the size of image ``level`` (None: no such mask)."""
    lvl = header.levels[level]
    for i, m in enumerate(header.mask_levels):
        if (m.width, m.height) == (lvl.width, lvl.height):
            return i
    return None


def tiles_in_window(level: Any, window: tuple[int, int, int, int], sample: int = 0) -> list[int]:
    """Linear indexes of the tiles of ``level`` overlapping ``window`` (clipped to the
    image). Planar-separate files keep each sample's tiles in its own plane."""
    r0, c0, r1, c1 = window
    r0, c0 = max(r0, 0), max(c0, 0)
    r1, c1 = min(r1, level.height), min(c1, level.width)
    if r1 <= r0 or c1 <= c0:
        return []
    th, tw = level.tile_height, level.tile_width
    across = math.ceil(level.width / tw)
    down = math.ceil(level.height / th)
    plane = sample if level.planar_config == 2 else 0
    rows = range(r0 // th, (r1 - 1) // th + 1)
    cols = range(c0 // tw, (c1 - 1) // tw + 1)
    base = plane * across * down
    return [base + r * across + c for r in rows for c in cols]


def unique_tiles(reads: Sequence[SourceRead]) -> dict[TileKey, tuple[Any, int]]:
    """Every tile needed by ``reads`` once: key -> (header, level)."""
    out: dict[TileKey, tuple[Any, int]] = {}
    for rd in reads:
        lvl = rd.header.levels[rd.level]
        for idx in tiles_in_window(lvl, rd.window, rd.sample):
            out.setdefault(rd.key(idx), (rd.header, rd.level))
    return out


def inside_mask(rd: SourceRead) -> np.ndarray:
    """Pixels of ``rd``'s window that lie inside the image (a rectangle)."""
    inside = np.zeros(rd.shape, dtype=bool)
    rect = inside_rect(rd)
    if rect is not None:
        inside[rect] = True
    return inside


def inside_rect(rd: SourceRead) -> tuple[slice, slice] | None:
    """The rectangle of ``rd``'s window that lies inside the image (None: none)."""
    lvl = rd.header.levels[rd.level]
    r0, c0, r1, c1 = rd.window
    y0, x0 = max(r0, 0) - r0, max(c0, 0) - c0
    y1, x1 = min(r1, lvl.height) - r0, min(c1, lvl.width) - c0
    if y1 > y0 and x1 > x0:
        return slice(y0, y1), slice(x0, x1)
    return None


def paste_tile(
    dst: np.ndarray, rd: SourceRead, index: int, tile: np.ndarray
) -> tuple[slice, slice] | None:
    """Copy the part of one decoded tile (linear ``index``) that falls in ``rd``'s window
    into ``dst`` (shape ``rd.shape``); returns the region of ``dst`` written (None:
    none). Tiles touch disjoint regions, so several threads may paste into one ``dst``
    at once."""
    lvl = rd.header.levels[rd.level]
    r0, c0, r1, c1 = rd.window
    th, tw = lvl.tile_height, lvl.tile_width
    across = math.ceil(lvl.width / tw)
    down = math.ceil(lvl.height / th)
    plane = rd.sample if lvl.planar_config == 2 else 0
    chan = 0 if lvl.planar_config == 2 else rd.sample
    tr, tc = divmod(index - plane * across * down, across)
    # intersection of the tile (in level pixels) with the window and the image
    y0, x0 = max(tr * th, r0, 0), max(tc * tw, c0, 0)
    y1 = min((tr + 1) * th, r1, lvl.height)
    x1 = min((tc + 1) * tw, c1, lvl.width)
    if y1 <= y0 or x1 <= x0:
        return None
    region = slice(y0 - r0, y1 - r0), slice(x0 - c0, x1 - c0)
    dst[region] = tile[y0 - tr * th : y1 - tr * th, x0 - tc * tw : x1 - tc * tw, chan]
    return region


def paste(dst: np.ndarray, rd: SourceRead, tiles: dict[TileKey, np.ndarray]) -> np.ndarray:
    """Copy the decoded tiles of ``rd`` into ``dst`` (shape ``rd.shape``); returns a
    boolean array marking pixels that came from the image (False outside it)."""
    for idx in tiles_in_window(rd.header.levels[rd.level], rd.window, rd.sample):
        paste_tile(dst, rd, idx, tiles[rd.key(idx)])
    return inside_mask(rd)
