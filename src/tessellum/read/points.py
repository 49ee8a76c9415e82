"""Point sampling: points grouped by tile, so 100,000 points cost one fetch per tile."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ValidationError
from .engine import is_nan
from .fetch import fetch_tiles_async
from .plan import TileKey
from .sources import record_bands
from .stacks import candidate_pairs, fetch_options


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
    from ..geo.crs import to_crs, transformer
    from ..geo.geometry import coerce_geometries
    from .outputs import _filtered

    if match not in ("all", "latest"):
        raise ValidationError(f"match must be 'all' or 'latest', got {match!r}")
    if method not in ("nearest", "bilinear"):
        raise ValidationError(f"method must be 'nearest' or 'bilinear', got {method!r}")
    if isinstance(bands, str):
        bands = [bands]
    g = coerce_geometries(points, crs=geometry_crs, name="points")
    kinds = {geom.geom_type for geom in g.geoms}
    if kinds != {"Point"}:
        raise ValidationError(f"points must all be Points, got {sorted(kinds)}")
    coll = _filtered(collection, filters)
    table = coll.table
    import shapely

    xy = shapely.get_coordinates(np.asarray(g.geoms, dtype=object))
    px, py = xy[:, 0], xy[:, 1]
    recs = {r.row: r for r in record_bands(table, bands)}
    gi, ri = candidate_pairs(table, g.geoms, g.crs)
    usable = np.zeros(table.num_rows, dtype=bool)
    usable[list(recs)] = True
    keep = usable[ri]
    gi, ri = gi[keep], ri[keep]
    if match == "latest" and len(gi):
        # per point, the row with the latest datetime (ties: the later row)
        stamp = np.full(table.num_rows, -np.inf)
        for row, rec in recs.items():
            if rec.datetime is not None:
                stamp[row] = rec.datetime.timestamp()
        order = np.lexsort((ri, stamp[ri], gi))
        gi, ri = gi[order], ri[order]
        last = np.r_[gi[1:] != gi[:-1], True]
        gi, ri = gi[last], ri[last]
    # (record row) -> point indexes, grouped without a Python loop over pairs
    order = np.argsort(ri, kind="stable")
    gi_by_row, ri_sorted = gi[order], ri[order]
    cuts = np.flatnonzero(np.r_[True, ri_sorted[1:] != ri_sorted[:-1], True]) if len(ri) else []
    per_rec = {int(ri_sorted[a]): gi_by_row[a:b] for a, b in itertools.pairwise(cuts)}
    jobs = []  # (record, band, pids, rows, cols (float), src)
    tiles: dict[TileKey, tuple[Any, int]] = {}
    for row, idx in per_rec.items():
        rec = recs[row]
        for b in bands:
            src = rec.bands[b]
            xs, ys = px[idx], py[idx]
            if not to_crs(src.grid.crs).equals(g.crs):
                xs, ys = transformer(g.crs, src.grid.crs).transform(xs, ys)
            fr, fc = _pixel_coords(src, np.asarray(xs), np.asarray(ys))
            lvl = src.header.levels[0]
            if method == "nearest":
                r_need, c_need = [np.floor(fr).astype(np.int64)], [np.floor(fc).astype(np.int64)]
            else:
                r0, c0 = np.floor(fr - 0.5).astype(np.int64), np.floor(fc - 0.5).astype(np.int64)
                r_need = [r0, r0, r0 + 1, r0 + 1]
                c_need = [c0, c0 + 1, c0, c0 + 1]
            for rr, cc in zip(r_need, c_need, strict=True):
                inside = (rr >= 0) & (rr < lvl.height) & (cc >= 0) & (cc < lvl.width)
                plane = src.sample if lvl.planar_config == 2 else 0
                across = -(-lvl.width // lvl.tile_width)
                down = -(-lvl.height // lvl.tile_height)
                tid = (
                    plane * across * down
                    + (rr[inside] // lvl.tile_height) * across
                    + cc[inside] // lvl.tile_width
                )
                for t in np.unique(tid).tolist():
                    tiles.setdefault(TileKey(src.href, 0, int(t)), (src.header, 0))
            jobs.append((rec, b, idx, fr, fc, src))
    decoded = await fetch_tiles_async(tiles, fetch_options(max_concurrent, progress=progress))
    if not jobs:
        return _empty(g)
    values = np.ma.concatenate([_values(src, fr, fc, decoded, method) for *_, fr, fc, src in jobs])
    pids = np.concatenate([idx for _, _, idx, *_ in jobs])
    # per-job columns repeated by Arrow's take, not as Python lists of 200,000 objects
    job_of_row = np.repeat(np.arange(len(jobs)), [len(idx) for _, _, idx, *_ in jobs])
    out = pa.table({
        "point_index": pa.array(pids, pa.int64()),
        "x": pa.array(px[pids]), "y": pa.array(py[pids]),
        "record_id": pa.array([rec.id for rec, *_ in jobs], pa.string()).take(job_of_row),
        "datetime": pa.array(
            [rec.datetime for rec, *_ in jobs], pa.timestamp("us", tz="UTC")
        ).take(job_of_row),
        "band": pa.array([b for _, b, *_ in jobs], pa.string()).take(job_of_row),
        "value": pa.array(np.ma.getdata(values), mask=np.ma.getmaskarray(values)),
    })  # fmt: skip
    if g.attributes is not None and len(g.attributes.columns):
        attrs = pa.Table.from_pandas(g.attributes, preserve_index=False).take(
            out.column("point_index")
        )
        for name in attrs.column_names:
            if name not in out.column_names:
                out = out.append_column(name, attrs.column(name))
    return out.sort_by(
        [("point_index", "ascending"), ("datetime", "ascending"), ("band", "ascending")]
    )


def _pixel(
    src: Any, rr: np.ndarray, cc: np.ndarray, decoded: dict
) -> tuple[np.ndarray, np.ndarray]:
    """Values and validity at integer pixel positions of level 0."""
    lvl = src.header.levels[0]
    out = np.zeros(len(rr), dtype=np.dtype(lvl.dtype))
    ok = (rr >= 0) & (rr < lvl.height) & (cc >= 0) & (cc < lvl.width)
    across = -(-lvl.width // lvl.tile_width)
    down = -(-lvl.height // lvl.tile_height)
    plane = src.sample if lvl.planar_config == 2 else 0
    chan = 0 if lvl.planar_config == 2 else src.sample
    tid = plane * across * down + (rr // lvl.tile_height) * across + cc // lvl.tile_width
    # group the points by tile with one sort (not one full-length mask per tile)
    at = np.flatnonzero(ok)
    at = at[np.argsort(tid[at], kind="stable")]
    cuts = np.flatnonzero(np.r_[True, tid[at][1:] != tid[at][:-1], True]) if len(at) else []
    for a, b in itertools.pairwise(cuts):
        sel = at[a:b]
        tile = decoded[TileKey(src.href, 0, int(tid[sel[0]]))]
        _, tw, spp = tile.shape
        flat = ((rr[sel] % lvl.tile_height) * tw + cc[sel] % lvl.tile_width) * spp + chan
        out[sel] = tile.reshape(-1).take(flat)  # 1-D take: faster than 3-D fancy indexing
    nod = src.nodata
    if nod is not None:
        ok &= ~np.isnan(out) if is_nan(nod) else out != nod
    return out, ok


def _values(src: Any, fr: np.ndarray, fc: np.ndarray, decoded: dict, method: str) -> np.ndarray:
    """Sampled values; invalid ones are null (masked) in the result."""
    if method == "nearest":
        v, ok = _pixel(src, np.floor(fr).astype(np.int64), np.floor(fc).astype(np.int64), decoded)
        return np.ma.MaskedArray(v, mask=~ok)
    r0, c0 = np.floor(fr - 0.5).astype(np.int64), np.floor(fc - 0.5).astype(np.int64)
    wy, wx = fr - 0.5 - r0, fc - 0.5 - c0
    acc = np.zeros(len(fr))
    wsum = np.zeros(len(fr))
    for dr, dc, w in (
        (0, 0, (1 - wy) * (1 - wx)),
        (0, 1, (1 - wy) * wx),
        (1, 0, wy * (1 - wx)),
        (1, 1, wy * wx),
    ):
        v, ok = _pixel(src, r0 + dr, c0 + dc, decoded)
        acc += np.where(ok, v.astype(float) * w, 0)
        wsum += np.where(ok, w, 0)
    good = wsum > 1e-12
    return np.ma.MaskedArray(np.where(good, acc / np.where(good, wsum, 1), np.nan), mask=~good)


def _empty(g: Any) -> pa.Table:
    return pa.table({
        "point_index": pa.array([], pa.int64()), "x": pa.array([], pa.float64()), "y": pa.array([], pa.float64()),
        "record_id": pa.array([], pa.string()), "datetime": pa.array([], pa.timestamp("us", tz="UTC")),
        "band": pa.array([], pa.string()), "value": pa.array([], pa.float64()),
    })  # fmt: skip
