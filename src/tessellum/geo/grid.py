"""``Grid``: an immutable pixel grid (shape + affine + CRS), odc-geo style.

Transforms are ``affine.Affine`` (rasterio order: a, b, c, d, e, f). The source pixel
grid is the truth: grids derived from it are snapped outward by at most one pixel per
edge and never shifted by a fraction of a pixel.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine

from ..errors import ValidationError
from .crs import crs_to_code, to_crs, transformer

_EPS = 1e-6  # pixel fraction tolerated as float noise when snapping


@dataclass(frozen=True, slots=True)
class Grid:
    """A north-up or rotated pixel grid: ``height x width`` pixels of ``transform`` in ``crs``."""

    height: int
    width: int
    transform: Affine
    crs: str  # EPSG code or WKT2 (see geo.crs.crs_to_code)

    @classmethod
    def from_gdal(cls, gt: tuple[float, ...], width: int, height: int, crs: Any) -> Grid:
        """From a GDAL geotransform (x0, dx, rx, y0, ry, dy)."""
        return cls(int(height), int(width), Affine.from_gdal(*gt), crs_to_code(crs))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def resolution(self) -> tuple[float, float]:
        """(x, y) pixel size, both positive."""
        t = self.transform
        return (math.hypot(t.a, t.d), math.hypot(t.b, t.e))

    @property
    def is_axis_aligned(self) -> bool:
        return self.transform.b == 0 and self.transform.d == 0

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid's CRS."""
        xs, ys = self.corners()
        return (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))

    def corners(self) -> tuple[np.ndarray, np.ndarray]:
        cols = np.array([0, self.width, self.width, 0], dtype=float)
        rows = np.array([0, 0, self.height, self.height], dtype=float)
        t = self.transform
        return t.a * cols + t.b * rows + t.c, t.d * cols + t.e * rows + t.f

    def window(self, row_off: int, col_off: int, height: int, width: int) -> Grid:
        """The sub-grid starting at (row_off, col_off) (may extend beyond this grid)."""
        return Grid(height, width, self.transform @ Affine.translation(col_off, row_off), self.crs)

    def zoom_out(self, factor_x: float, factor_y: float | None = None) -> Grid:
        """A coarser grid with the same origin (overview levels: sizes rounded up)."""
        fy = factor_x if factor_y is None else factor_y
        return Grid(
            max(1, math.ceil(self.height / fy)),
            max(1, math.ceil(self.width / factor_x)),
            self.transform @ Affine.scale(factor_x, fy),
            self.crs,
        )

    def same_pixels(self, other: Grid, tol: float = 1e-6) -> bool:
        """Same CRS, same pixel size and pixel edges aligned (integer offset apart)."""
        if not (self.is_axis_aligned and other.is_axis_aligned):
            return False
        if self.crs != other.crs and not to_crs(self.crs).equals(to_crs(other.crs)):
            return False
        a, b = self.transform, other.transform
        if not (math.isclose(a.a, b.a, rel_tol=tol) and math.isclose(a.e, b.e, rel_tol=tol)):
            return False
        dc = (b.c - a.c) / a.a
        dr = (b.f - a.f) / a.e
        return abs(dc - round(dc)) < 1e-4 and abs(dr - round(dr)) < 1e-4

    def offset_of(self, other: Grid) -> tuple[int, int]:
        """(row, col) of ``other``'s origin in this grid (grids must share pixels)."""
        a, b = self.transform, other.transform
        return (round((b.f - a.f) / a.e), round((b.c - a.c) / a.a))

    def snap_bounds(self, bounds: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        """Pixel window (row0, col0, row1, col1) covering ``bounds`` (this grid's CRS),
        snapped outward to whole pixels (float noise below 1e-6 px is ignored).
        On a rotated or skewed grid, the window of pixels whose rows and columns span
        the four corners of ``bounds``. The window is not clipped to the grid."""
        left, bottom, right, top = bounds
        inv = ~self.transform
        cols, rows = inv * (
            np.array([left, right, right, left]),
            np.array([top, top, bottom, bottom]),
        )
        c0, c1 = float(cols.min()), float(cols.max())
        r0, r1 = float(rows.min()), float(rows.max())
        return (
            math.floor(r0 + _EPS),
            math.floor(c0 + _EPS),
            math.ceil(r1 - _EPS),
            math.ceil(c1 - _EPS),
        )

    def covering(self, bounds: tuple[float, float, float, float]) -> Grid:
        """The sub-grid of this grid's pixels covering ``bounds`` (snapped outward)."""
        r0, c0, r1, c1 = self.snap_bounds(bounds)
        if r1 <= r0 or c1 <= c0:
            raise ValidationError(f"bounds {bounds} cover no pixel of this grid")
        return self.window(r0, c0, r1 - r0, c1 - c0)

    def xy_coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates (x of columns, y of rows) of an axis-aligned grid."""
        t = self.transform
        x = t.c + (np.arange(self.width) + 0.5) * t.a
        y = t.f + (np.arange(self.height) + 0.5) * t.e
        return x, y


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def resolution_pair(resolution: Any, name: str = "resolution") -> tuple[float, float]:
    """``(x, y)`` pixel sizes from a number or a pair of numbers (numpy scalars too),
    each finite and > 0; a ``ValidationError`` naming ``resolution`` otherwise."""
    if _is_real(resolution):
        pair = (resolution, resolution)
    elif (
        isinstance(resolution, Sequence | np.ndarray)
        and not isinstance(resolution, str)
        and len(resolution) == 2
        and all(_is_real(v) for v in resolution)
    ):
        pair = tuple(resolution)
    else:
        raise ValidationError(f"{name} must be a number or an (x, y) pair, got {resolution!r}")
    rx, ry = float(pair[0]), float(pair[1])
    if not (math.isfinite(rx) and math.isfinite(ry) and rx > 0 and ry > 0):
        raise ValidationError(f"{name} must be finite and > 0, got {resolution!r}")
    return rx, ry


def check_bounds(bounds: Any, name: str = "bounds") -> tuple[float, float, float, float]:
    """``(left, bottom, right, top)`` as floats: four finite numbers, bottom < top; left
    may exceed right only as a lon/lat box across the antimeridian (the caller decides)."""
    if (
        isinstance(bounds, str)
        or not isinstance(bounds, Sequence | np.ndarray)
        or len(bounds) != 4
        or not all(_is_real(v) for v in bounds)
    ):
        raise ValidationError(
            f"{name} must be four numbers (left, bottom, right, top), got {bounds!r}"
        )
    b = tuple(float(v) for v in bounds)
    if not all(math.isfinite(v) for v in b):
        raise ValidationError(f"{name} must be finite, got {bounds!r}")
    if b[1] >= b[3] or b[0] == b[2]:
        raise ValidationError(
            f"{name} {bounds!r} enclose no area (need bottom < top, left != right)"
        )
    return b  # type: ignore[return-value]


def grid_for_bounds(
    bounds: tuple[float, float, float, float],
    resolution: float | tuple[float, float],
    crs: Any,
    *,
    anchor: tuple[float, float] = (0.0, 0.0),
) -> Grid:
    """A north-up grid at ``resolution`` covering ``bounds``, its pixel edges on the
    lattice through ``anchor`` (default the CRS origin), snapped outward."""
    rx, ry = resolution_pair(resolution)
    ax, ay = anchor
    left, bottom, right, top = bounds
    c0 = math.floor((left - ax) / rx + _EPS)
    c1 = math.ceil((right - ax) / rx - _EPS)
    r0 = math.floor((ay - top) / ry + _EPS)
    r1 = math.ceil((ay - bottom) / ry - _EPS)
    t = Affine(rx, 0, ax + c0 * rx, 0, -ry, ay - r0 * ry)
    return Grid(max(1, r1 - r0), max(1, c1 - c0), t, crs_to_code(crs))


def transform_bounds(
    bounds: tuple[float, float, float, float], src: Any, dst: Any, *, densify: int = 21
) -> tuple[float, float, float, float]:
    """Bounds of a box after reprojection, with densified edges (pyproj)."""
    if to_crs(src).equals(to_crs(dst)):
        return bounds
    t = transformer(src, dst)
    out = t.transform_bounds(*bounds, densify_pts=densify)
    if not all(math.isfinite(v) for v in out):
        raise ValidationError(f"bounds {bounds} cannot be transformed from {src} to {dst}")
    return out
