"""Bounding boxes in lon/lat, including boxes that cross the antimeridian (west > east)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ValidationError


@dataclass(frozen=True, slots=True)
class BBox:
    """A (west, south, east, north) box. In geographic CRSs ``west > east`` means the box
    crosses the antimeridian (RFC 7946)."""

    west: float
    south: float
    east: float
    north: float

    @property
    def crosses_antimeridian(self) -> bool:
        return self.west > self.east

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.west, self.south, self.east, self.north)

    def split(self) -> list[BBox]:
        """Parts that do not cross the antimeridian (one part unless it crosses)."""
        if not self.crosses_antimeridian:
            return [self]
        return [
            BBox(self.west, self.south, 180.0, self.north),
            BBox(-180.0, self.south, self.east, self.north),
        ]

    def to_polygon(self):
        """A shapely (Multi)Polygon, split at the antimeridian when it crosses."""
        from shapely.geometry import MultiPolygon, box

        parts = [box(*p.as_tuple()) for p in self.split()]
        return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def as_bbox(value: Any, *, geographic: bool = True, name: str = "bbox") -> BBox:
    """Coerce a 4-sequence, a mapping (west/south/east/north or min_lon/min_lat/...
    or minx/miny/maxx/maxy) or an object with such attributes into a validated BBox.

    Args:
        value: the box.
        geographic: validate lon/lat ranges and allow antimeridian boxes (west > east).
        name: the argument name used in error messages.

    Raises:
        ValidationError: naming the bad value (wrong length, NaN, south > north,
            out-of-range latitude/longitude, zero-area box).
    """
    if isinstance(value, BBox):
        vals = value.as_tuple()
    elif isinstance(value, Mapping):
        vals = _from_keys(value, name)
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        if len(value) != 4:
            raise ValidationError(
                f"{name} must have 4 numbers (west, south, east, north), got {value!r}"
            )
        vals = tuple(value)
    else:
        # An object with any of the key sets as attributes (the same sets a mapping may use).
        keys = next((ks for ks in _KEYSETS if all(hasattr(value, k) for k in ks)), None)
        if keys is None:
            raise ValidationError(
                f"cannot interpret {value!r} as a {name}: expected 4 numbers, or a mapping "
                f"or object with {' / '.join(map(str, _KEYSETS))}"
            )
        vals = tuple(getattr(value, k) for k in keys)
    try:
        w, s, e, n = (float(v) for v in vals)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} values must be numbers, got {vals!r}") from None
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise ValidationError(f"{name} values must be finite, got {vals!r}")
    if s >= n:
        raise ValidationError(f"{name} south ({s}) must be less than north ({n})")
    if geographic:
        if not (-90 <= s <= 90 and -90 <= n <= 90):
            raise ValidationError(f"{name} latitudes must lie in [-90, 90], got {vals!r}")
        if not (-180 <= w <= 180 and -180 <= e <= 180):
            raise ValidationError(f"{name} longitudes must lie in [-180, 180], got {vals!r}")
        if w == e:
            raise ValidationError(f"{name} west and east are equal ({w}): zero-width box")
    elif w >= e:
        raise ValidationError(f"{name} west ({w}) must be less than east ({e})")
    return BBox(w, s, e, n)


_KEYSETS = (
    ("west", "south", "east", "north"),
    ("min_lon", "min_lat", "max_lon", "max_lat"),
    ("minx", "miny", "maxx", "maxy"),
    ("xmin", "ymin", "xmax", "ymax"),
)


def _from_keys(value: Mapping, name: str) -> tuple:
    for keys in _KEYSETS:
        if all(k in value for k in keys):
            return tuple(value[k] for k in keys)
    raise ValidationError(
        f"{name} mapping needs keys {' / '.join(map(str, _KEYSETS))}, got {sorted(value)}"
    )


def _intervals(w: float, e: float) -> list[tuple[float, float]]:
    return [(w, 180.0), (-180.0, e)] if w > e else [(w, e)]


def bbox_intersects(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two lon/lat boxes (west, south, east, north) intersect, antimeridian-aware."""
    if a[1] > b[3] or b[1] > a[3]:
        return False
    return any(
        x0 <= y1 and y0 <= x1
        for x0, x1 in _intervals(a[0], a[2])
        for y0, y1 in _intervals(b[0], b[2])
    )


def lon_extent(xmin: Any, xmax: Any) -> tuple[float, float]:
    """(west, east) of longitude intervals (``xmin > xmax`` crosses ±180): the smallest
    arc covering them all, found as the complement of the largest uncovered gap; it
    crosses the antimeridian (west > east) when that is tighter."""
    import numpy as np

    lo, hi = np.asarray(xmin, dtype=float), np.asarray(xmax, dtype=float)
    wraps = lo > hi
    # no early answer without crossing rows: tiles on both sides of ±180 (Fiji) are
    # covered tighter by an arc across it than by one around the globe
    starts = np.concatenate([lo[~wraps], lo[wraps], np.full(wraps.sum(), -180.0)])
    ends = np.concatenate([hi[~wraps], np.full(wraps.sum(), 180.0), hi[wraps]])
    order = np.argsort(starts)
    starts, ends = starts[order], np.maximum.accumulate(ends[order])
    gaps = starts[1:] - ends[:-1]  # gaps between merged intervals (<= 0: overlap)
    wrap_gap = starts[0] + 360.0 - ends[-1]
    i = int(np.argmax(gaps)) if len(gaps) else 0
    if not len(gaps) or wrap_gap >= gaps[i]:
        return float(starts[0]), float(ends[-1])
    return float(starts[i + 1]), float(ends[i])
