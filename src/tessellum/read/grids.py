"""Choosing output grids for geometries: the source pixel grid is the truth."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..geo.crs import crs_to_code, to_crs, transformer
from ..geo.grid import Grid, grid_for_bounds, resolution_pair, transform_bounds
from .engine import BandSource


def reference_source(sources: Sequence[BandSource], target_crs: Any = None) -> BandSource:
    """The source whose grid defines the output: the most common CRS among sources (or
    ``target_crs``), then the finest resolution."""
    if target_crs is not None:
        code = crs_to_code(target_crs)
        same = [s for s in sources if s.grid.crs == code]
        pool = same or list(sources)
    else:
        top = Counter(s.grid.crs for s in sources).most_common(1)[0][0]
        pool = [s for s in sources if s.grid.crs == top]
    return min(pool, key=lambda s: min(s.grid.resolution))


def geometry_bounds(geom: Any, geom_crs: Any, dst_crs: Any) -> tuple[float, float, float, float]:
    """Bounds of a geometry in ``dst_crs`` (densified through its boundary)."""
    import shapely

    if to_crs(geom_crs).equals(to_crs(dst_crs)):
        return tuple(shapely.bounds(geom).tolist())  # type: ignore[return-value]
    seg = _segment_length(geom)
    dense = shapely.segmentize(geom, seg) if seg > 0 else geom
    coords = shapely.get_coordinates(dense)
    xs, ys = transformer(geom_crs, dst_crs).transform(coords[:, 0], coords[:, 1])
    xs, ys = np.asarray(xs), np.asarray(ys)
    ok = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[ok], ys[ok]
    if to_crs(dst_crs).is_geographic:
        xs = unwrap_longitudes(xs)
    return (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))


def unwrap_longitudes(lon: np.ndarray) -> np.ndarray:
    """Longitudes of one geometry that cross the antimeridian (they span more than
    180° with a gap of more than 180° between them), moved past 180 so they stay
    contiguous (179.9 .. 180.1, not -180 .. 180); others as they are. Geographic grids
    may extend past ±180.

    A geometry whose (densified) longitudes fill -180..180 without such a gap, e.g. a
    world box, is left as it is: moving its western half past 180 cut it short (a
    (-180, -60, 180, 60) AOI gave a grid from 0 to 349, without -11..0)."""
    if not len(lon) or lon.max() - lon.min() <= 180:
        return lon
    s = np.unique(lon)
    gaps = np.diff(s)
    k = int(np.argmax(gaps))
    if gaps[k] <= 180:
        return lon
    return np.where(lon <= s[k], lon + 360.0, lon)


def _segment_length(geom: Any) -> float:
    minx, miny, maxx, maxy = geom.bounds
    span = max(maxx - minx, maxy - miny)
    return span / 32 if span > 0 else 0.0


def output_grid(
    geom: Any,
    geom_crs: Any,
    ref: BandSource,
    *,
    target_crs: Any = None,
    resolution: float | tuple[float, float] | None = None,
) -> Grid:
    """The grid covering ``geom``: the reference source's own pixel grid (snapped
    outward, never shifted) unless another CRS or resolution is asked for. A point
    gives the one pixel it falls in, a line the pixels along it."""
    src_grid = ref.grid
    crs = crs_to_code(target_crs) if target_crs is not None else src_grid.crs
    b = geometry_bounds(geom, geom_crs, crs)
    on_source = crs == src_grid.crs and src_grid.is_axis_aligned
    res = resolution_pair(resolution) if resolution is not None else None
    if res is None and not on_source:
        res = _native_resolution(b, crs, src_grid)
    if b[0] == b[2] or b[1] == b[3]:  # points / lines: widen the zero extent by a hair
        rx, ry = res if res is not None else src_grid.resolution
        ex = rx * 1e-3 if b[0] == b[2] else 0.0
        ey = ry * 1e-3 if b[1] == b[3] else 0.0
        b = (b[0] - ex, b[1] - ey, b[2] + ex, b[3] + ey)
    if on_source:
        if res is None:
            return src_grid.covering(b)
        t = src_grid.transform
        return grid_for_bounds(b, res, crs, anchor=(t.c, t.f))
    return grid_for_bounds(b, res, crs)


def _native_resolution(b: tuple[float, float, float, float], crs: Any, src: Grid) -> float:
    """The pixel size in ``crs`` that keeps about the source's pixel count over ``b``;
    for a point or a line (no area), one source pixel's size where it lies."""
    sb = transform_bounds(b, crs, src.crs)
    res_src = min(src.resolution)
    if b[0] < b[2] and b[1] < b[3]:
        w = max(1.0, (sb[2] - sb[0]) / res_src)
        h = max(1.0, (sb[3] - sb[1]) / res_src)
        return min((b[2] - b[0]) / w, (b[3] - b[1]) / h)
    cx, cy = (sb[0] + sb[2]) / 2, (sb[1] + sb[3]) / 2
    half = res_src / 2
    pb = transform_bounds((cx - half, cy - half, cx + half, cy + half), src.crs, crs)
    return min(pb[2] - pb[0], pb[3] - pb[1])


def wrap_sources(sources: Sequence[BandSource], grid: Grid) -> list[BandSource]:
    """``sources`` for reading into ``grid``: a lon/lat raster on the far side of ±180
    from a lon/lat grid that runs past it (e.g. 179.5..180.5) is taken 360° over, so
    its pixels land (-180..-179 is 180..181 there); others as they are."""
    import dataclasses

    if not to_crs(grid.crs).is_geographic:
        return list(sources)
    left, _, right, _ = grid.bounds
    if left >= -180.0 and right <= 180.0:
        return list(sources)
    out = []
    for src in sources:
        b = src.grid.bounds
        if to_crs(src.grid.crs).is_geographic and not (b[0] < right and left < b[2]):
            for shift in (360.0, -360.0):
                if b[0] + shift < right and left < b[2] + shift:
                    src = dataclasses.replace(src, x_shift=src.x_shift + shift)
                    break
        out.append(src)
    return out


def geometry_mask(geom: Any, geom_crs: Any, grid: Grid, *, all_touched: bool = False) -> np.ndarray:
    """True for pixels of ``grid`` inside ``geom`` (rasterized in the grid's CRS)."""
    import shapely
    from rasterio.features import geometry_mask as _gm
    from shapely.affinity import translate

    g = geom
    if not to_crs(geom_crs).equals(to_crs(grid.crs)):
        seg = _segment_length(geom)
        dense = shapely.segmentize(geom, seg) if seg > 0 else geom
        t = transformer(geom_crs, grid.crs)
        g = shapely.transform(dense, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
        if to_crs(grid.crs).is_geographic:  # as geometry_bounds placed the grid
            g = shapely.transform(
                g, lambda xy: np.column_stack([unwrap_longitudes(xy[:, 0]), xy[:, 1]])
            )
            if grid.bounds[2] <= 180 < shapely.bounds(g)[2]:
                g = translate(g, xoff=-360.0)
    parts = shapely.get_parts(g)
    dims = shapely.get_dimensions(parts)
    if g.geom_type == "GeometryCollection" and (dims < 2).any() and (dims == 2).any():
        # a collection's points and lines burn as they do alone (every pixel touched),
        # its polygons by the caller's rule
        areas, others = parts[dims == 2], parts[dims < 2]
        return _gm(
            list(areas), out_shape=grid.shape, transform=grid.transform,
            all_touched=all_touched, invert=True,
        ) | _gm(
            list(others), out_shape=grid.shape, transform=grid.transform,
            all_touched=True, invert=True,
        )  # fmt: skip
    if (dims < 2).all():
        all_touched = True
    return _gm(
        [g], out_shape=grid.shape, transform=grid.transform, all_touched=all_touched, invert=True
    )


def pad_to(grid: Grid, height: int, width: int) -> Grid:
    """Extend a grid right/down to ``height x width`` (equal-size chips)."""
    return Grid(height, width, grid.transform, grid.crs)


def align_longitudes(geom: Any, geom_crs: Any, grid: Grid) -> Any:
    """Shift the parts of a lon/lat geometry by ±360° to where they overlap ``grid``
    (a geographic grid may extend past ±180, e.g. 179.5..180.5): an AOI split at the
    antimeridian then maps to one contiguous window."""
    import shapely
    from shapely.affinity import translate
    from shapely.geometry import box

    crs = to_crs(geom_crs)
    if not (crs.is_geographic and to_crs(grid.crs).is_geographic):
        return geom
    left, bottom, right, top = grid.bounds
    if left >= -180 and right <= 180 and geom.bounds[2] - geom.bounds[0] <= 180:
        return geom
    target = box(left, bottom, right, top)
    parts = list(getattr(geom, "geoms", [geom]))
    shifted = []
    for p in parts:
        best = max(
            (translate(p, xoff=s) for s in (0.0, 360.0, -360.0)),
            key=lambda q: q.intersection(target).area if q.area else q.distance(target) * -1,
        )
        shifted.append(best)
    return shapely.union_all(shifted) if len(shifted) > 1 else shifted[0]
