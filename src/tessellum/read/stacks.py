"""Read every (geometry, record, band) of a request in one planned pass."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ValidationError
from ..geo.grid import Grid
from ._pool import pooled_empty
from .engine import Target, read_targets_async
from .fetch import FetchOptions
from .grids import (
    align_longitudes,
    geometry_mask,
    output_grid,
    pad_to,
    reference_source,
    wrap_sources,
)
from .sources import RecordBands, record_bands


@dataclass
class GeometryStack:
    """All records over one geometry, on one grid: ``data[band]`` is (T, H, W), one layer
    per record; read as a mosaic, (1, H, W) and ``record_ids`` / ``datetimes`` list the
    records in priority order (:func:`mosaic_order`). ``valid[band]`` marks valid pixels
    (None when the read was asked not to compute it)."""

    geometry_id: int
    geometry: Any
    grid: Any  # Grid
    record_ids: list[str]
    datetimes: list[dt.datetime | None]
    data: dict[str, np.ndarray]
    valid: dict[str, np.ndarray | None]
    nodata: dict[str, Any]
    #: per band, each listed record's ``(scale, offset)`` (GDAL's band SCALE/OFFSET)
    scale_offset: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


def fetch_options(max_concurrent: int | None = None, **kw: Any) -> FetchOptions:
    """Fetch options with a per-call concurrency limit when asked (``progress`` etc. pass
    through to :class:`FetchOptions`)."""
    limiter = None
    if max_concurrent is not None:
        if max_concurrent < 1:
            raise ValidationError(f"max_concurrent must be >= 1, got {max_concurrent}")
        from ..store import Limiter

        limiter = Limiter(max_concurrent)
    return FetchOptions(limiter=limiter, **kw)


def collection_fetch_options(
    collection: Any, max_concurrent: int | None = None, **kw: Any
) -> FetchOptions:
    """:func:`fetch_options` for reading ``collection``'s files the way it was built:
    its ``cloud_config`` (URL rewrites, requester pays, client options) and ``signer``."""
    return fetch_options(
        max_concurrent, cloud_config=getattr(collection, "cloud_config", None),
        signer=getattr(collection, "signer", None), **kw,
    )  # fmt: skip


POINT_TESTS = 20_000_000
"""Largest (points x footprints) matrix tested directly in :func:`candidate_pairs`."""


def candidate_pairs(table: Any, geoms: np.ndarray, geom_crs: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(geometry index, row index)`` pairs whose footprint and geometry intersect
    (STRtree over footprints), sorted by geometry then row."""
    import shapely

    from ..geo.crs import CRS84, to_crs, transformer

    g = np.asarray(geoms, dtype=object)
    lonlat = to_crs(geom_crs).equals(to_crs(CRS84))
    wkb = table.column("geometry").to_numpy(zero_copy_only=False)
    points = shapely.get_type_id(g) == 0
    if points.all() and len(g) * len(wkb) <= POINT_TESTS:
        # points: a vectorized test per footprint beats building and querying a tree
        # (10,000 points x 20 footprints: 4 ms instead of 60), on the coordinates alone
        # (no transformed geometries), once per distinct footprint (the records of a
        # time series share their tile's); nonzero of the (point, footprint) matrix is
        # ordered by point, then footprint
        x, y = shapely.get_coordinates(g).T
        if not lonlat:
            x, y = transformer(geom_crs, CRS84).transform(x, y)
        hits = np.zeros((len(g), len(wkb)), dtype=bool)
        tested: dict[bytes, int] = {}
        for j, w in enumerate(wkb):
            if w is None:
                continue
            if w in tested:
                hits[:, j] = hits[:, tested[w]]
                continue
            tested[w] = j
            fp = shapely.from_wkb(w)
            shapely.prepare(fp)
            hits[:, j] = shapely.intersects_xy(fp, x, y)
        gi, ri = np.nonzero(hits)
        return gi.astype(np.int64), ri.astype(np.int64)
    fps = shapely.from_wkb(wkb)
    if not lonlat:
        from ..geo.geometry import geometries_to_lonlat

        # the ground the geometries cover, in lon/lat: edges densified (a straight edge
        # in a projected CRS is a curve in lon/lat), closed up to a pole they circle,
        # split at ±180 (their vertices alone give a polygon elsewhere)
        g = geometries_to_lonlat(g, geom_crs)
    if len(g) > len(fps):  # index the larger side: 10,000 points vs 20 footprints
        ri, gi = shapely.STRtree(g).query(fps, predicate="intersects")
    else:
        gi, ri = shapely.STRtree(fps).query(g, predicate="intersects")
    order = np.lexsort((ri, gi))
    return gi[order], ri[order]


def candidates(table: Any, geoms: np.ndarray, geom_crs: Any) -> list[np.ndarray]:
    """Row indexes whose footprint intersects each geometry."""
    gi, ri = candidate_pairs(table, geoms, geom_crs)
    bounds = np.searchsorted(gi, np.arange(len(geoms) + 1))
    return [ri[bounds[i] : bounds[i + 1]] for i in range(len(geoms))]


def mosaic_order(records: Sequence[RecordBands]) -> list[RecordBands]:
    """Mosaic priority: latest datetime first, then id ascending; undated records last.
    One rule for every mosaic (stacks, zonal statistics, raster mode), so the same
    records over the same area give the same pixels whichever API reads them."""

    def stamp(r: RecordBands) -> float:
        when = _utc(r.datetime)
        return math.inf if when is None else -(when - _FLOOR).total_seconds()

    return sorted(records, key=lambda r: (stamp(r), r.id))


def _time_order(r: RecordBands) -> tuple[bool, dt.datetime, str]:
    """A stack's time axis: oldest first, records without a datetime last, then id."""
    when = _utc(r.datetime)
    return (when is None, when or _FLOOR, r.id)


_FLOOR = dt.datetime.min.replace(tzinfo=dt.UTC)


def _utc(when: dt.datetime | None) -> dt.datetime | None:
    """An aware datetime (a naive one taken as UTC), comparable with any other."""
    return when.replace(tzinfo=dt.UTC) if when is not None and when.tzinfo is None else when


def _stack_nodata(records: Sequence[RecordBands], band: str) -> Any:
    """The nodata value of a band's stack: the first record's that declares one."""
    return next((r.bands[band].nodata for r in records if r.bands[band].nodata is not None), None)


def _scale_offset(src: Any) -> tuple[float, float]:
    """A band source's ``(scale, offset)``: physical value = stored * scale + offset."""
    return src.header.scale(src.sample), src.header.offset(src.sample)


async def read_stacks_async(
    table: Any, geometries: Any, bands: Sequence[str], **options: Any
) -> list[GeometryStack]:
    """Plan and read all geometries x records x bands together (each tile once); the
    options are :func:`read_stacks_into_async`'s.

    With ``mosaic``, each geometry's records are read into one layer, the first valid
    pixel in :func:`mosaic_order` winning: each record fills only its own window, and no
    per-record layer of the whole grid is made.
    """
    stacks, _ = await read_stacks_into_async(table, geometries, bands, **options)
    return stacks


async def read_stacks_into_async(
    table: Any,
    geometries: Any,
    bands: Sequence[str],
    *,
    geometry_crs: Any = None,
    target_crs: Any = None,
    resolution: Any = None,
    resampling: str = "nearest",
    all_touched: bool = False,
    mask: bool = True,
    equal_size: bool = False,
    mosaic: bool = False,
    chips: bool = False,
    valid: bool = True,
    nan_fill: bool = False,
    opts: FetchOptions | None = None,
) -> tuple[list[GeometryStack], np.ndarray | None]:
    """:func:`read_stacks_async`, also returning, with ``chips`` (needs ``equal_size``,
    not ``mosaic``), the one ``[N, C, H, W]`` array every layer was read into, N running
    over geometries then their records, C over ``bands`` (the stacks' ``data`` are views
    of it; None without ``chips``). Every layer is read into its final place, never
    copied after the read. With ``valid=False`` the stacks' ``valid`` masks are not
    computed (left None) where the pixels do not depend on them. With ``nan_fill``, an
    integer band without a nodata value whose pixels a geometry masks out is read as
    float (float32 up to 16-bit integers, else float64) with NaN there: nothing else
    could mark them."""
    from ..geo.geometry import coerce_geometries

    if isinstance(bands, str):
        bands = [bands]
    if not bands:
        raise ValidationError("bands must name at least one band")
    if chips and (mosaic or not equal_size):
        raise ValidationError("chips=True needs equal_size=True and mosaic=False")
    g = coerce_geometries(geometries, crs=geometry_crs)
    recs = record_bands(table, bands)
    by_row = {r.row: r for r in recs}
    cand = candidates(table, g.geoms, g.crs)
    geoms = g.geoms.copy()
    plans: list[tuple[int, list[RecordBands], Any]] = []
    for gid, rows in enumerate(cand):
        rs = sorted((by_row[i] for i in rows if i in by_row), key=_time_order)
        if not rs:
            plans.append((gid, [], None))
            continue
        ref = reference_source([s for r in rs for s in r.bands.values()], target_crs)
        geoms[gid] = align_longitudes(geoms[gid], g.crs, ref.grid)
        plans.append(
            (
                gid,
                rs,
                output_grid(geoms[gid], g.crs, ref, target_crs=target_crs, resolution=resolution),
            )
        )
    own_shape = {gid: grid.shape for gid, _, grid in plans if grid is not None}
    if equal_size:
        shapes = [p[2].shape for p in plans if p[2] is not None]
        if shapes:
            h, w = max(s[0] for s in shapes), max(s[1] for s in shapes)
            plans = [
                (gid, rs, pad_to(grid, h, w) if grid is not None else None)
                for gid, rs, grid in plans
            ]
    stacks = {}
    for gid, rs, grid in plans:
        listed = mosaic_order(rs) if mosaic else rs
        stacks[gid] = GeometryStack(
            gid, g.geoms[gid], grid, [r.id for r in listed], [r.datetime for r in listed],
            {b: None for b in bands}, {b: None for b in bands},
            {b: _stack_nodata(rs, b) for b in bands},
            {b: [_scale_offset(r.bands[b]) for r in listed] for b in bands},
        )  # fmt: skip
    keeps = {
        gid: _kept_pixels(geoms[gid] if mask else None, g.crs, grid, own_shape[gid], all_touched)
        for gid, _, grid in plans
        if grid is not None
    }
    floats = _nan_filled(plans, bands, stacks, keeps) if nan_fill and not mosaic else {}
    block = _allocate_layers(plans, bands, stacks, chips, valid, floats) if not mosaic else None
    targets: list[Target] = []
    index: list[tuple[int, str]] = []
    for gid, rs, grid in plans:
        if grid is None:
            continue
        keep = keeps[gid]
        st = stacks[gid]
        layers = [mosaic_order(rs)] if mosaic else [[r] for r in rs]
        for k, records in enumerate(layers):
            for b in bands:
                srcs = wrap_sources([r.bands[b] for r in records], grid)
                # every layer of a stack holds the stack's one nodata (a record with
                # another nodata must not leave its own in the pixels)
                layer: dict[str, Any] = {"want_valid": valid, "nodata": st.nodata[b]}
                if not mosaic:
                    layer["out"] = st.data[b][k]
                    layer["valid_out"] = st.valid[b][k] if valid else None
                targets.append(Target(grid, srcs, resampling=resampling, mask=keep, **layer))
                index.append((gid, b))
    results = await read_targets_async(targets, opts)
    if mosaic:  # the one layer of each geometry as it was read: no copy
        for (gid, b), (arr, ok) in zip(index, results, strict=True):
            stacks[gid].data[b] = arr[None]
            stacks[gid].valid[b] = ok[None] if ok is not None else None
    return [stacks[i] for i in range(len(g.geoms))], block


def _kept_pixels(
    geom: Any, geom_crs: Any, grid: Grid, own_shape: tuple[int, int], all_touched: bool
) -> np.ndarray | None:
    """The pixels of ``grid`` a geometry's layer keeps (None: all): those under the
    geometry (every kind: a point or line keeps the pixels under it only), within its
    own shape (equal_size padding holds nodata, never pixels)."""
    keep = None if geom is None else geometry_mask(geom, geom_crs, grid, all_touched=all_touched)
    if own_shape != grid.shape:
        own = np.zeros(grid.shape, dtype=bool)
        own[: own_shape[0], : own_shape[1]] = True
        keep = own if keep is None else keep & own
    if keep is not None and keep.all():  # e.g. a box on the grid: nothing to mask out
        keep = None
    return keep


def _nan_filled(
    plans: list[tuple[int, list[RecordBands], Any]],
    bands: Sequence[str],
    stacks: dict[int, GeometryStack],
    keeps: dict[int, np.ndarray | None],
) -> dict[str, np.dtype]:
    """Bands read as float with NaN where masked: integer bands whose masked-out pixels
    no nodata value could mark (their stacks' nodata becomes NaN). Band -> float type."""
    out: dict[str, np.dtype] = {}
    for b in bands:
        unmarked = [
            gid for gid, rs, grid in plans if grid is not None and stacks[gid].nodata[b] is None
        ]
        if not any(keeps[gid] is not None for gid in unmarked):
            continue
        common = np.result_type(
            *[r.bands[b].dtype for _, rs, grid in plans if grid is not None for r in rs]
        )
        if common.kind not in "iub":
            continue
        out[b] = np.dtype("float32" if common.itemsize <= 2 else "float64")
        for gid in unmarked:
            stacks[gid].nodata[b] = np.nan
    return out


def _allocate_layers(
    plans: list[tuple[int, list[RecordBands], Any]],
    bands: Sequence[str],
    stacks: dict[int, GeometryStack],
    chips: bool,
    valid: bool,
    floats: dict[str, np.dtype] | None = None,
) -> np.ndarray | None:
    """Give every stack its (T, H, W) ``data`` (and ``valid``, when wanted) per band,
    each band in the common type of its records (no silent narrowing when records
    differ); with ``chips``, as views of one [N, C, H, W] array (returned) in the bands'
    common type."""
    live = [(gid, rs, grid) for gid, rs, grid in plans if grid is not None]
    if not live:
        return None
    dtypes = {
        b: np.result_type(*[r.bands[b].dtype for _, rs, _ in live for r in rs]) for b in bands
    }
    dtypes.update(floats or {})
    if not chips:
        for gid, rs, grid in live:
            st = stacks[gid]
            for b in bands:
                st.data[b] = pooled_empty((len(rs), *grid.shape), dtypes[b])
                if valid:
                    st.valid[b] = pooled_empty((len(rs), *grid.shape), bool)
        return None
    n = sum(len(rs) for _, rs, _ in live)
    shape = live[0][2].shape
    dtype = np.result_type(*dtypes.values())
    data = pooled_empty((n, len(bands), *shape), dtype)
    masks = pooled_empty((n, len(bands), *shape), bool) if valid else None
    start = 0
    for gid, rs, _ in live:
        st = stacks[gid]
        for c, b in enumerate(bands):
            st.data[b] = data[start : start + len(rs), c]
            if masks is not None:
                st.valid[b] = masks[start : start + len(rs), c]
        start += len(rs)
    return data
