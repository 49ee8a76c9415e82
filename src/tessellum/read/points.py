"""Point sampling: points grouped by tile, so 100,000 points cost one fetch per tile."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ValidationError
from ..geo.crs import crs_to_code, to_crs, transformer
from .engine import MaskRead, holds_data
from .fetch import fetch_tiles_async
from .plan import TileKey
from .sources import record_bands
from .stacks import POINT_TESTS, candidate_pairs, collection_fetch_options, mosaic_order


def _pixel_coords(src: Any, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    inv = ~src.grid.transform
    cols = inv.a * xs + inv.b * ys + inv.c
    rows = inv.d * xs + inv.e * ys + inv.f
    return rows, cols


async def sample_points_async(
    collection: Any,
    points: Any,
    bands: Sequence[str],
    *,
    match: str = "all",
    method: str = "nearest",
    geometry_crs: Any = None,
    max_concurrent: int | None = None,
    progress: bool | None = None,
    **filters: Any,
) -> pa.Table:
    """Async form of :meth:`Collection.sample_points`."""
    from ..geo.geometry import coerce_geometries
    from .outputs import _filtered

    if match not in ("all", "latest"):
        raise ValidationError(f"match must be 'all' or 'latest', got {match!r}")
    if method not in ("nearest", "bilinear"):
        raise ValidationError(f"method must be 'nearest' or 'bilinear', got {method!r}")
    if isinstance(bands, str):
        bands = [bands]
    import shapely

    g = coerce_geometries(points, crs=geometry_crs, name="points")
    geoms = np.asarray(g.geoms, dtype=object)
    if (shapely.get_type_id(geoms) != 0).any():
        kinds = {geom.geom_type for geom in g.geoms}
        raise ValidationError(f"points must all be Points, got {sorted(kinds)}")
    coll = _filtered(collection, filters)
    table = coll.table
    xy = shapely.get_coordinates(geoms)
    px, py = xy[:, 0], xy[:, 1]
    recs = {r.row: r for r in record_bands(table, bands)}
    in_crs: dict[Any, tuple[np.ndarray, np.ndarray]] = {}  # every point, per record CRS

    def coords_in(crs: Any) -> tuple[np.ndarray, np.ndarray]:
        # records share few CRSs: compare and transform once per CRS, not per record
        key = crs_to_code(crs)
        if key not in in_crs:
            if to_crs(crs).equals(g.crs):
                in_crs[key] = px, py
            else:
                xs, ys = transformer(g.crs, crs).transform(px, py)
                in_crs[key] = np.asarray(xs), np.asarray(ys)
        return in_crs[key]

    gi, ri = _point_pairs(recs, bands[0], coords_in, table, g)
    if match == "latest" and len(gi):
        # per point, the first record in mosaic order (latest datetime, ties: the
        # smaller id, undated last): the record a mosaic's pixel there comes from
        priority = np.zeros(table.num_rows, np.int64)
        for rank, rec in enumerate(mosaic_order(list(recs.values()))):
            priority[rec.row] = rank
        order = np.lexsort((-priority[ri], gi))
        gi, ri = gi[order], ri[order]
        last = np.r_[gi[1:] != gi[:-1], True]
        gi, ri = gi[last], ri[last]
    # (record row) -> point indexes, grouped without a Python loop over pairs
    order = _stable_order(ri, table.num_rows)
    gi_by_row, ri_sorted = gi[order], ri[order]
    cuts = np.flatnonzero(np.r_[True, ri_sorted[1:] != ri_sorted[:-1], True]) if len(ri) else []
    per_rec = {int(ri_sorted[a]): gi_by_row[a:b] for a, b in itertools.pairwise(cuts)}
    jobs: list[_Job] = []
    # records on one grid (a time series of one tile) place the same points alike: the
    # pixel positions and their grouping by tile are computed once per (grid, points)
    placements: dict[tuple[Any, ...], _Placement] = {}
    for row, idx in per_rec.items():
        rec = recs[row]
        points_key = idx.tobytes()
        for b in bands:
            src = rec.bands[b]
            key = (*_layout_key(src), points_key)
            place = placements.get(key)
            if place is None:
                xs, ys = coords_in(src.grid.crs)
                fr, fc = _pixel_coords(src, xs[idx], ys[idx])
                place = placements[key] = _Placement(src, fr, fc, method)
            jobs.append(_Job(rec, b, idx, src, place))
    if not jobs:
        return _empty(g)
    # every probe's points grouped by tile; each tile is sampled in its decode thread as
    # soon as it is decoded (and then dropped), so sampling overlaps fetching/decoding
    tiles: dict[TileKey, tuple[Any, int]] = {}
    by_tile: dict[TileKey, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for job in jobs:
        for probe in job.probes:
            for key, header, dest, sel, flat in probe.by_tile():
                tiles.setdefault(key, (header, key.level))
                by_tile.setdefault(key, []).append((dest, sel, flat))

    def on_tile(key: TileKey, tile: np.ndarray) -> None:
        values = tile.reshape(-1)
        for dest, sel, flat in by_tile.get(key, ()):
            dest[sel] = values.take(flat)  # 1-D take: faster than 3-D indexing

    await fetch_tiles_async(
        tiles, collection_fetch_options(collection, max_concurrent, progress=progress),
        on_tile=on_tile, keep=lambda _key: False,
    )  # fmt: skip
    # rows ordered by point, then datetime (missing last), then band: jobs in that order,
    # then a stable sort by point index merges their (sorted) point runs
    jobs.sort(key=lambda j: (j.rec.datetime is None, j.rec.datetime or _EPOCH, j.band))
    sampled = [job.values() for job in jobs]
    values = np.concatenate([v for v, _ in sampled])
    valid = np.concatenate([ok for _, ok in sampled])
    pids = np.concatenate([job.idx for job in jobs])
    job_of_row = np.repeat(np.arange(len(jobs)), [len(job.idx) for job in jobs])
    rows = _stable_order(pids, len(px))
    pids, job_of_row, values, valid = pids[rows], job_of_row[rows], values[rows], valid[rows]
    # per-job columns repeated by Arrow's take, not as Python lists of 200,000 objects
    out = pa.table({
        "point_index": pa.array(pids, pa.int64()),
        "x": pa.array(px[pids]), "y": pa.array(py[pids]),
        "record_id": pa.array([j.rec.id for j in jobs], pa.string()).take(job_of_row),
        "datetime": pa.array(
            [j.rec.datetime for j in jobs], pa.timestamp("us", tz="UTC")
        ).take(job_of_row),
        "band": pa.array([j.band for j in jobs], pa.string()).take(job_of_row),
        "value": pa.array(values, mask=~valid),
    })  # fmt: skip
    carried = g.carried_attributes(out.column_names)
    if carried is not None:
        attrs = pa.Table.from_pandas(carried, preserve_index=False).take(out.column("point_index"))
        for name in attrs.column_names:
            out = out.append_column(name, attrs.column(name))
    return out


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _point_pairs(
    recs: dict[int, Any], band: str, coords_in: Any, table: pa.Table, g: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``(point, row)`` pairs whose point lies inside the record's raster, sorted by
    point then row. Tested in each raster's own pixel grid, once per distinct grid (a
    time series shares one): a lon/lat footprint is straight between its vertices and
    cuts inside curved raster edges (points up to pixels inside a polar raster's edge
    found no record). Very large jobs (points x grids) are narrowed by the footprints
    first, then tested the same way."""
    grids: dict[tuple[Any, ...], list[int]] = {}
    for row, rec in recs.items():
        grid = rec.bands[band].grid
        key = (tuple(grid.transform)[:6], crs_to_code(grid.crs), grid.width, grid.height)
        grids.setdefault(key, []).append(row)
    groups = list(grids.values())
    n_points = len(g.geoms)

    def inside(rows: list[int], which: np.ndarray | slice) -> np.ndarray:
        src = recs[rows[0]].bands[band]
        xs, ys = coords_in(src.grid.crs)
        r, c = _pixel_coords(src, xs[which], ys[which])
        return (r >= 0) & (r < src.grid.height) & (c >= 0) & (c < src.grid.width)

    if n_points * len(groups) <= POINT_TESTS:
        hits = np.zeros((n_points, table.num_rows), dtype=bool)
        for rows in groups:
            hits[:, rows] = inside(rows, slice(None))[:, None]
        gi, ri = np.nonzero(hits)  # ordered by point, then row
        return gi.astype(np.int64), ri.astype(np.int64)
    gi, ri = candidate_pairs(table, g.geoms, g.crs)
    group_of_row = np.full(table.num_rows, -1, dtype=np.int64)
    for k, rows in enumerate(groups):
        group_of_row[rows] = k
    group = group_of_row[ri]
    keep = np.zeros(len(gi), dtype=bool)
    order = np.argsort(group, kind="stable")
    cuts = np.flatnonzero(np.r_[True, group[order][1:] != group[order][:-1], True])
    for a, b in itertools.pairwise(cuts):
        at = order[a:b]
        k = group[at[0]]
        if k >= 0:  # rows without the band's source are never paired
            keep[at] = inside(groups[k], gi[at])
    return gi[keep], ri[keep]


def _stable_order(keys: np.ndarray, bound: int) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` of non-negative keys below ``bound``; keys
    that fit 16 bits (row and point indexes usually do) are radix-sorted by numpy."""
    return np.argsort(keys.astype(np.uint16) if bound <= 1 << 16 else keys, kind="stable")


def _layout_key(src: Any) -> tuple[Any, ...]:
    """What decides where points fall in a band's tiles: its grid and tile layout (and
    its internal mask's)."""

    def layout(lvl: Any) -> tuple[Any, ...]:
        return (lvl.width, lvl.height, lvl.tile_width, lvl.tile_height, lvl.planar_config,
                lvl.tile_shape())  # fmt: skip

    m = _full_resolution_mask(src)
    return (
        tuple(src.grid.transform)[:6], crs_to_code(src.grid.crs),
        layout(src.header.levels[0]), src.sample,
        (layout(m.header.levels[m.level]), m.sample, m.ifd) if m is not None else None,
    )  # fmt: skip


def _full_resolution_mask(src: Any) -> MaskRead | None:
    """Where the full resolution's mask is read from (internal mask or alpha; None)."""
    level, mask = src.read_level(None)
    return mask if level == 0 else None


class _Positions:
    """Integer pixel positions in one level of a file (an image level, or a mask level
    of the same size), grouped by tile."""

    def __init__(self, lvl: Any, sample: int, rr: np.ndarray, cc: np.ndarray) -> None:
        self.inside = (rr >= 0) & (rr < lvl.height) & (cc >= 0) & (cc < lvl.width)
        across = -(-lvl.width // lvl.tile_width)
        down = -(-lvl.height // lvl.tile_height)
        plane = sample if lvl.planar_config == 2 else 0
        chan = 0 if lvl.planar_config == 2 else sample
        _, tw, spp = lvl.tile_shape()  # the decoded tile's layout
        tid = plane * across * down + (rr // lvl.tile_height) * across + cc // lvl.tile_width
        at = np.flatnonzero(self.inside)
        at = at[_stable_order(tid[at], (plane + 1) * across * down)]
        tid_at = tid[at]
        cuts = np.flatnonzero(np.r_[True, tid_at[1:] != tid_at[:-1], True]) if len(at) else []
        flat = ((rr[at] % lvl.tile_height) * tw + cc[at] % lvl.tile_width) * spp + chan
        #: ``(tile index, positions in the probe, flat offsets in the decoded tile)``
        self.groups = [(int(tid_at[a]), at[a:b], flat[a:b]) for a, b in itertools.pairwise(cuts)]


class _Placement:
    """Where one set of points falls in a band's grid: one position set (nearest) or
    four (bilinear neighbours) and the bilinear weights, each with its positions in the
    file's internal mask (None: no mask). Shared by records on one grid."""

    def __init__(self, src: Any, fr: np.ndarray, fc: np.ndarray, method: str) -> None:
        self.method = method
        if method == "nearest":
            r0, c0 = np.floor(fr).astype(np.int64), np.floor(fc).astype(np.int64)
            offsets = [(0, 0)]
        else:
            r0, c0 = np.floor(fr - 0.5).astype(np.int64), np.floor(fc - 0.5).astype(np.int64)
            self.wy, self.wx = fr - 0.5 - r0, fc - 0.5 - c0
            offsets = [(dr, dc) for dr in (0, 1) for dc in (0, 1)]
        image = src.header.levels[0]
        m = self.mask = _full_resolution_mask(src)
        self.positions = [_Positions(image, src.sample, r0 + dr, c0 + dc) for dr, dc in offsets]
        self.mask_positions: list[_Positions | None] = [
            _Positions(m.header.levels[m.level], m.sample, r0 + dr, c0 + dc)
            if m is not None else None
            for dr, dc in offsets
        ]  # fmt: skip


class _Probe:
    """Values of one band at one position set, filled tile by tile (:meth:`by_tile`);
    with the file's internal mask at the same positions when it has one."""

    def __init__(self, src: Any, positions: _Positions, mask: _Positions | None,
                 mask_from: MaskRead | None) -> None:  # fmt: skip
        self.src, self.positions = src, positions
        self.values = np.zeros(len(positions.inside), np.dtype(src.header.levels[0].dtype))
        self.mask, self.mask_from = mask, mask_from
        self.kept = None
        if mask is not None and mask_from is not None:
            lvl = mask_from.header.levels[mask_from.level]
            self.kept = np.zeros(len(positions.inside), np.dtype(lvl.dtype))

    def by_tile(self) -> list[tuple[TileKey, Any, np.ndarray, np.ndarray, np.ndarray]]:
        """``(tile, header, destination, positions in it, flat offsets in the decoded
        tile)`` for every tile (of the image, and of its mask) holding a point."""
        href, header = self.src.href, self.src.header
        out = [
            (TileKey(href, 0, tid), header, self.values, sel, flat)
            for tid, sel, flat in self.positions.groups
        ]
        if self.mask is not None and self.mask_from is not None:
            m = self.mask_from
            out += [
                (TileKey(href, m.level, tid, mask=m.ifd), m.header, self.kept, sel, flat)
                for tid, sel, flat in self.mask.groups
            ]
        return out

    def valid(self) -> np.ndarray:
        """Inside the image, not nodata and not masked by the file's internal mask."""
        ok = self.positions.inside & holds_data(self.values, self.src.nodata)
        if self.kept is not None:
            ok &= self.kept != 0
        return ok


class _Job:
    """One (record, band): its points, where they fall and the probes reading them."""

    def __init__(self, rec: Any, band: str, idx: np.ndarray, src: Any, place: _Placement) -> None:
        self.rec, self.band, self.idx, self.place = rec, band, idx, place
        self.probes = [
            _Probe(src, pos, mask, place.mask)
            for pos, mask in zip(place.positions, place.mask_positions, strict=True)
        ]

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        """Sampled values and which are valid (the others are null in the result)."""
        if self.place.method == "nearest":
            (probe,) = self.probes
            return probe.values, probe.valid()
        wy, wx = self.place.wy, self.place.wx
        acc = np.zeros(len(wy))
        wsum = np.zeros(len(wy))
        weights = ((1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx)
        for probe, w in zip(self.probes, weights, strict=True):
            ok = probe.valid()
            acc += np.where(ok, probe.values.astype(float) * w, 0)
            wsum += np.where(ok, w, 0)
        good = wsum > 1e-12
        return np.where(good, acc / np.where(good, wsum, 1), np.nan), good


def _empty(g: Any) -> pa.Table:
    return pa.table({
        "point_index": pa.array([], pa.int64()), "x": pa.array([], pa.float64()), "y": pa.array([], pa.float64()),
        "record_id": pa.array([], pa.string()), "datetime": pa.array([], pa.timestamp("us", tz="UTC")),
        "band": pa.array([], pa.string()), "value": pa.array([], pa.float64()),
    })  # fmt: skip
