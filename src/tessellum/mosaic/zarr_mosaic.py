"""Zarr v3 mosaics of a collection over an AOI (seed 004: ``build_mosaic``,
``build_gti_mosaic``), read chunk by chunk through the read engine.

The work unit is one shard of one time slice: its chunks are read (several in flight,
through :func:`tessellum.read.engine.read_targets_async`) into a shard buffer that is
written to the store at once, so two writers never touch one shard. Locally the shards
run one after another on this process's event loop; with ``client=`` (a
``distributed.Client``) every shard is a task on the cluster. Memory: about one shard
(``shard_size`` bytes; bands are read one after another) per shard in progress, which
zarr's sharding codec needs anyway to encode a shard.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._args import int_arg
from .._sync import run_sync, same_signature
from ..errors import ValidationError
from ..geo.grid import Grid
from .zarr_store import BandSpec

__all__ = [
    "build_gti_mosaic",
    "build_gti_mosaic_async",
    "build_mosaic",
    "build_mosaic_async",
]

_CHUNKS_IN_FLIGHT = 16  # chunk targets read together by one shard task
_NAT = np.datetime64("NaT", "ns")


@dataclass(frozen=True)
class _Job:
    """Everything a shard task needs (picklable: it travels to dask workers)."""

    collection: Any
    store: str
    grid: Grid
    bands: tuple[BandSpec, ...]
    slices: tuple[tuple[str, ...], ...]  # record ids per time slice, priority order
    chunk_size: int
    resampling: str


def _check_nodata(nodata: Any, dtype: np.dtype, band: str) -> Any:
    """``nodata`` as a value of ``dtype``; a ValidationError when it does not fit."""
    if isinstance(nodata, bool) or not isinstance(nodata, int | float | np.number):
        raise ValidationError(f"nodata must be a number, got {nodata!r}")
    if dtype.kind == "f":
        return float(nodata)
    if not float(nodata).is_integer():
        raise ValidationError(f"nodata {nodata!r} is not an integer, band {band!r} is {dtype}")
    info = np.iinfo(dtype)
    if not info.min <= int(nodata) <= info.max:
        raise ValidationError(f"nodata {nodata!r} does not fit band {band!r} ({dtype})")
    return int(nodata)


def _band_list(bands: Any) -> list[str]:
    """``bands`` (one name or a sequence of names) as a list; a ValidationError naming
    anything else (None was a TypeError from ``list(None)``)."""
    if isinstance(bands, str):
        bands = [bands]
    if not isinstance(bands, Sequence) or not bands or not all(isinstance(b, str) for b in bands):
        raise ValidationError(f"bands must be a list of one or more band names, got {bands!r}")
    return list(bands)


def _aoi_geometries(aoi: Any) -> Any:
    """The AOI as :class:`Geometries`: anything ``coerce_geometries`` takes, or a path or
    URL of a vector file (GeoParquet by suffix, else what GeoPandas reads)."""
    from ..collection.sources import read_vector_table
    from ..geo.geometry import coerce_geometries

    if isinstance(aoi, str | os.PathLike) and not isinstance(aoi, bytes):
        return coerce_geometries(read_vector_table(aoi, what="aoi"), name="aoi")
    return coerce_geometries(aoi, name="aoi")


def _time_value(v: Any) -> np.datetime64:
    """A ``time_column`` value as datetime64[ns]: datetimes/dates as they are, an
    integer (or a whole float: 2021.0) as that year's 1 January, NaN/None as NaT, a
    string parsed as an ISO date."""
    import pandas as pd

    if v is None:
        return _NAT
    if isinstance(v, float | np.floating):
        # a year column with a missing value is float (2021.0, NaN) in pandas; pandas
        # took 2021.0 as nanoseconds since 1970, so every year was 1970-01-01
        if np.isnan(v):
            return _NAT
        if not float(v).is_integer():
            raise ValidationError(f"time_column value {v!r} is not a date or a year")
        v = int(v)
    if isinstance(v, int | np.integer) and not isinstance(v, bool):
        if not 1678 <= int(v) <= 2261:  # the years datetime64[ns] holds
            raise ValidationError(f"time_column value {v!r} is not a year (1678..2261)")
        return np.datetime64(dt.datetime(int(v), 1, 1), "ns")
    try:
        ts = pd.Timestamp(v)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"time_column value {v!r} is not a date or a year") from exc
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return np.datetime64(ts.to_datetime64(), "ns")


def _slices(
    coll: Any,
    recs: list[Any],
    time_column: str | None,
    sort_column: str | None,
    sort_ascending: bool = True,
):
    """``(times, [record ids per slice in priority order])``."""
    from ..read.stacks import mosaic_order

    table = coll.table
    for col, name in ((time_column, "time_column"), (sort_column, "sort_column")):
        if col is not None and col not in table.column_names:
            raise ValidationError(
                f"{name} {col!r} is not a column of the collection (columns: {table.column_names})"
            )
    groups: dict[Any, list[Any]] = {}
    if time_column is None:
        groups[_NAT] = list(recs)
    else:
        values = table.column(time_column).to_pylist()
        for r in recs:
            groups.setdefault(_time_value(values[r.row]), []).append(r)
    keys = sorted(groups, key=lambda k: (np.isnat(k), k))
    out = []
    for k in keys:
        members = groups[k]
        if sort_column is None:
            ordered = mosaic_order(members)
        else:
            # GDAL's GTI draws in SORT_FIELD order, ascending unless SORT_FIELD_ASC=NO,
            # so the last drawn (highest, or lowest) is on top (ties: the later
            # feature); first wins here, so the reverse order, later row first
            vals = table.column(sort_column).to_pylist()
            present = [r for r in members if vals[r.row] is not None]
            missing = [r for r in members if vals[r.row] is None]
            if sort_ascending:
                ordered = sorted(present, key=lambda r: (vals[r.row], r.row), reverse=True)
            else:
                ordered = sorted(present, key=lambda r: (vals[r.row], -r.row))
            ordered += sorted(missing, key=lambda r: r.row, reverse=True)
        out.append(tuple(r.id for r in ordered))
    return keys, out


async def _fill_shard_async(job: _Job, t: int, window: tuple[int, int, int, int]) -> None:
    """Read one shard of time slice ``t`` chunk by chunk and write it to the store."""
    from ..geo.grid import transform_bounds
    from ..read.engine import Target, read_targets_async
    from ..read.grids import wrap_sources
    from ..read.sources import record_bands
    from ..read.stacks import collection_fetch_options
    from .zarr_store import write_region

    r0, c0, h, w = window
    names = [b.name for b in job.bands]
    by_id = {r.id: r for r in record_bands(job.collection.table, names)}
    shard_grid = job.grid.window(r0, c0, h, w)
    sl, sb, sr, st = shard_grid.bounds

    def touches(rec: Any) -> bool:
        src = rec.bands[names[0]]
        try:
            b = transform_bounds(src.grid.bounds, src.grid.crs, job.grid.crs)
        except ValidationError:
            return True  # cannot tell cheaply: let the engine decide
        return b[0] < sr and sl < b[2] and b[1] < st and sb < b[3]

    members = [by_id[i] for i in job.slices[t] if i in by_id and touches(by_id[i])]
    if not members:
        return  # every pixel is nodata: the store's fill value already says so
    cs = job.chunk_size
    chunks = [(r, c) for r in range(0, h, cs) for c in range(0, w, cs)]
    opts = collection_fetch_options(job.collection, progress=False)
    for b in job.bands:  # one band at a time: memory is one shard buffer + chunks read
        buf = np.full((h, w), b.nodata, dtype=b.dtype)
        for k in range(0, len(chunks), _CHUNKS_IN_FLIGHT):
            batch = chunks[k : k + _CHUNKS_IN_FLIGHT]
            targets = []
            for r, c in batch:
                cg = shard_grid.window(r, c, min(cs, h - r), min(cs, w - c))
                targets.append(Target(
                    cg, wrap_sources([m.bands[b.name] for m in members], cg),
                    resampling=job.resampling, dtype=b.dtype, nodata=b.nodata,
                    want_valid=False,
                ))  # fmt: skip
            results = await read_targets_async(targets, opts)
            for (r, c), (arr, _) in zip(batch, results, strict=True):
                buf[r : r + arr.shape[0], c : c + arr.shape[1]] = arr
        await asyncio.to_thread(write_region, job.store, b.name, t, r0, c0, buf)


def _fill_shard(job: _Job, t: int, window: tuple[int, int, int, int]) -> None:
    """Sync form of :func:`_fill_shard_async` (a dask task)."""
    run_sync(_fill_shard_async(job, t, window))


def _shards(grid: Grid, shard: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    sh, sw = shard
    return [
        (r, c, min(sh, grid.height - r), min(sw, grid.width - c))
        for r in range(0, grid.height, sh)
        for c in range(0, grid.width, sw)
    ]


async def _run_jobs(
    job: _Job, tasks: list[tuple[int, tuple[int, int, int, int]]], client: Any, progress: Any
) -> None:
    from .._progress import progress_bar

    bar = progress_bar(len(tasks), "mosaic shards", progress, unit="shard")
    try:
        if client is None:
            for t, win in tasks:
                await _fill_shard_async(job, t, win)
                bar.update()
            return
        futures = client.map(
            _fill_shard, [job] * len(tasks), [t for t, _ in tasks], [w for _, w in tasks],
            pure=False,
        )  # fmt: skip
        try:
            for fut in futures:
                await asyncio.to_thread(fut.result)
                bar.update()
        except BaseException:
            client.cancel(futures)  # none goes on writing into a store being removed
            raise
    finally:
        bar.close()


async def _dataset_collection(
    dataset_id: str, bands: list[str], geom: Any, geom_crs: Any, start: Any, end: Any
) -> tuple[Any, Any]:
    """The collection of a catalog dataset's items over the AOI and dates (found with
    its STAC API, as raster mode finds them), and the catalog's nodata for it."""
    from ..catalog import default_catalog
    from ..collection.build import build_from_stac_async
    from ..config import get_settings
    from ..read.grids import geometry_bounds

    resolved = default_catalog().resolve(dataset_id, get_settings())
    entry = resolved.entry
    if bands != [entry.variable]:
        raise ValidationError(
            f"bands {bands!r}: dataset {dataset_id!r} gives one band, [{entry.variable!r}]"
        )
    if len(entry.collections) != 1:
        raise ValidationError(
            f"dataset {dataset_id!r} spans STAC collections {list(entry.collections)}: "
            "build a Collection of them and pass it instead"
        )
    if resolved.stac_api is None:
        raise ValidationError(f"dataset {dataset_id!r} has no STAC API to find its items")
    bbox = geometry_bounds(geom, geom_crs, "OGC:CRS84")
    coll = await build_from_stac_async(
        name=f"mosaic:{entry.id}",
        stac_api=resolved.stac_api,
        collection=entry.collections[0],
        band_map={entry.variable: entry.asset},
        band_index_map={entry.variable: entry.band_index - 1} if entry.band_index else None,
        bbox=bbox,
        date_range=(start, end) if start is not None or end is not None else None,
        workspace_dir=None,
        signer=resolved.signer(),
        progress=False,
    )
    return coll, entry.nodata


def _result_frame(store: Any, grid: Grid, extra: dict[str, Any]) -> Any:
    import geopandas as gpd

    from .zarr_store import footprint_lonlat

    return gpd.GeoDataFrame(
        {"location": [str(store)], **{k: [v] for k, v in extra.items()}},
        geometry=[footprint_lonlat(grid)],
        crs="EPSG:4326",
    )


async def build_mosaic_async(
    collection: Any,
    aoi: Any,
    start_date: Any = None,
    end_date: Any = None,
    *,
    bands: Sequence[str],
    output_dir: str | os.PathLike,
    crs: Any = 3857,
    resolution: float | tuple[float, float] | None = None,
    chunk_size: int = 512,
    shard_size: int = 3_500_000_000,
    skip_xy_coords: bool = False,
    time_column: str | None = None,
    sort_column: str | None = None,
    sort_ascending: bool = True,
    resampling: str = "nearest",
    nodata: float | int | None = None,
    client: Any = None,
    progress: bool | None = None,
    name: str = "mosaic",
) -> Any:
    """Async form of :func:`build_mosaic`."""
    from ..collection import Collection
    from ..geo.crs import crs_to_code
    from ..read.engine import RESAMPLING
    from ..read.grids import output_grid, reference_source
    from ..read.sources import record_bands
    from ..read.stacks import _stack_nodata
    from ._remote import MAX_COPY_BYTES, is_url, join_url, local_path, writable
    from .zarr_store import (
        check_target,
        consolidate,
        create_store,
        publish,
        remove,
        shard_shape,
        temp_path,
    )

    bands = _band_list(bands)
    if not isinstance(collection, Collection | str):
        raise ValidationError(
            "collection must be a tessellum Collection or a catalog dataset id, got "
            f"{type(collection).__name__}"
        )
    from ..flow._common import check_client

    check_client(client)  # before any work: a wrong client was an AttributeError at the end
    chunk_size = int_arg(chunk_size, "chunk_size", 1)
    shard_size = int_arg(shard_size, "shard_size", 1)
    if resampling not in RESAMPLING:
        raise ValidationError(f"resampling must be one of {RESAMPLING}, got {resampling!r}")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ValidationError(f"name must be a plain file name, got {name!r}")
    if crs is not None:
        try:
            crs = crs_to_code(crs)
        except Exception as exc:  # pyproj's many error types
            raise ValidationError(f"crs {crs!r} is not a coordinate reference system") from exc
    if not isinstance(output_dir, str | os.PathLike):
        raise ValidationError(f"output_dir must be a folder path or URL, got {output_dir!r}")
    remote = is_url(os.fspath(output_dir))
    if remote:
        out_url = writable(os.fspath(output_dir), "output_dir")
        store: Any = join_url(out_url, f"{name}.zarr")
        table_path: Any = join_url(out_url, f"{name}.parquet")
        if shard_size > MAX_COPY_BYTES:
            raise ValidationError(
                f"shard_size {shard_size} is larger than {MAX_COPY_BYTES} bytes, the largest "
                "object S3 copies in one request (a store at a URL is published by copies)"
            )
    else:
        out_dir = Path(local_path(output_dir))
        store = (out_dir / f"{name}.zarr").resolve()
        table_path = out_dir / f"{name}.parquet"
    # before any work: a foreign folder/prefix (or a missing bucket) fails here
    check_target(store, "a tessellum store")
    geoms = _aoi_geometries(aoi)
    if not len(geoms):
        raise ValidationError("aoi holds no geometry")
    import shapely

    geom = shapely.union_all(geoms.geoms)
    entry_nodata = None
    if isinstance(collection, str):
        collection, entry_nodata = await _dataset_collection(
            collection, bands, geom, geoms.crs, start_date, end_date
        )
    coll = collection
    if start_date is not None or end_date is not None:
        coll = coll.subset(date_range=(start_date, end_date))
    coll = coll.subset(geometries=geoms)
    recs = record_bands(coll.table, bands)
    if not recs:
        raise ValidationError(
            f"no record of the collection with bands {bands} intersects the aoi "
            f"between {start_date!r} and {end_date!r}"
        )
    ref = reference_source([r.bands[b] for r in recs for b in bands], crs)
    grid = output_grid(geom, geoms.crs, ref, target_crs=crs, resolution=resolution)
    specs = []
    for b in bands:
        dtype = np.result_type(*[r.bands[b].dtype for r in recs])
        nod = nodata if nodata is not None else _stack_nodata(recs, b)
        nod = entry_nodata if nod is None else nod
        if nod is None:
            raise ValidationError(f"band {b!r} has no nodata value in its records: pass nodata=")
        specs.append(BandSpec(b, np.dtype(dtype), _check_nodata(nod, np.dtype(dtype), b)))
    times, slices = _slices(coll, recs, time_column, sort_column, bool(sort_ascending))
    itemsize = max(s.dtype.itemsize for s in specs)
    shard = shard_shape(grid.shape, chunk_size, shard_size, itemsize)

    if not remote:
        out_dir.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(store)
    try:
        create_store(
            tmp, grid, times, specs, chunk_size=chunk_size, shard=shard,
            skip_xy_coords=skip_xy_coords,
            attrs={"bands": bands, "resampling": resampling},
        )  # fmt: skip
        job = _Job(coll, str(tmp), grid, tuple(specs), tuple(slices), chunk_size, resampling)
        tasks = [(t, win) for t in range(len(times)) for win in _shards(grid, shard)]
        await _run_jobs(job, tasks, client, progress)
        consolidate(tmp)
        publish(tmp, store)
    except BaseException:
        remove(tmp)
        raise
    frame = _result_frame(store, grid, {
        "start_date": None if start_date is None else str(start_date),
        "end_date": None if end_date is None else str(end_date),
        "bands": ",".join(bands),
        "crs": str(grid.crs),
        "n_time": len(times),
    })  # fmt: skip
    write_frame(frame, table_path)
    return frame


def write_frame(frame: Any, target: Any) -> None:
    """Write a GeoDataFrame as GeoParquet at a local path (atomically: a temporary file
    renamed into place) or a URL (one PUT: readers see the old object or the new one)."""
    from ._remote import is_url, put_object
    from .zarr_store import publish, remove, temp_path

    if is_url(os.fspath(target)):
        import io

        buf = io.BytesIO()
        frame.to_parquet(buf)
        put_object(os.fspath(target), buf.getvalue())
        return
    tmp = temp_path(target)
    try:
        frame.to_parquet(tmp)
        publish(tmp, target)
    except BaseException:
        remove(tmp)
        raise


@same_signature(build_mosaic_async)
def build_mosaic(collection: Any, aoi: Any, *args: Any, **kwargs: Any) -> Any:
    """Build a Zarr v3 mosaic of ``collection`` over ``aoi`` (seed 004's ``build_mosaic``).

    Args:
        collection: a :class:`tessellum.Collection` (its records are the seed's dataset
            items), or a catalog dataset id (``"copernicus_dem:elevation"``): its items
            over the AOI and dates are found with its STAC API, as raster mode finds
            them (one STAC collection per dataset; ``bands`` = its one variable).
        aoi: anything :func:`tessellum.geo.geometry.coerce_geometries` takes (shapely,
            GeoJSON, GeoDataFrame, bbox tuple in lon/lat) or a path or URL (``s3://``,
            ``http(s)://``) of a file GeoPandas reads (GeoParquet, GeoPackage, GeoJSON).
        start_date, end_date: keep records in this inclusive date range (either open).
        bands: band names (each one variable of the store).
        output_dir: folder for ``<name>.zarr`` (the store) and ``<name>.parquet`` (the
            returned table as GeoParquet); existing ones are replaced atomically (a
            ``<name>.zarr`` that is not a tessellum store is refused). A URL
            (``s3://bucket/dir``, ``gs://``, ``az://``) writes there through
            :mod:`tessellum.store` (its credentials/environment): a reader of the store
            sees the old store, no store or the whole new one, a failure leaves no store,
            and a prefix holding anything but a tessellum store is refused (``shard_size``
            at most 5 GB there: S3 copies objects up to that size).
        crs: output CRS (default EPSG:3857; None: the records' most common CRS).
        resolution: pixel size in ``crs`` units (default: the records' native one).
        chunk_size: chunk side in pixels; shard_size: bytes per shard (and per task).
        skip_xy_coords: omit the ``x``/``y`` coordinate arrays.
        time_column: collection column grouping records into time slices (dates, or
            integers as years); None: one NaT slice.
        sort_column: priority within a slice: highest value on top (as GDAL's GTI
            ``SORT_FIELD``); default :func:`tessellum.read.stacks.mosaic_order`
            (latest datetime first).
        sort_ascending: with ``sort_column``: True, the highest value on top; False,
            the lowest (GDAL's ``SORT_FIELD_ASC=NO``).
        resampling: warp kernel ("nearest", "bilinear", "average", "mode", ...).
        nodata: output nodata; default the records' own (a ValidationError if none).
        client: a ``distributed.Client``: shards run as tasks on it.
        progress: a progress bar over shards (None: on a TTY).
        name: the store's file name stem.

    Returns:
        A GeoDataFrame with one row: ``location`` (the store's path or URL), the mosaic's
        footprint in EPSG:4326 as geometry, and the request's dates, bands, crs and
        number of time slices.
    """
    return run_sync(build_mosaic_async(collection, aoi, *args, **kwargs))


async def build_gti_mosaic_async(
    gti: Any,
    aoi: Any,
    bands: Sequence[str],
    location_column: str = "location",
    crs: Any = 3857,
    time_column: str | None = None,
    skip_xy_coords: bool = False,
    chunk_size: int = 512,
    shard_size: int = 3_500_000_000,
    query: str | None = None,
    requester_pays: bool = False,
    sort_column: str | None = None,
    resampling: str = "nearest",
    resolution: float | tuple[float, float] | None = None,
    nodata: float | int | None = None,
    *,
    output_dir: str | os.PathLike,
    client: Any = None,
    progress: bool | None = None,
    name: str = "mosaic",
    sort_ascending: bool | None = None,
) -> Any:
    """Async form of :func:`build_gti_mosaic`."""
    from ..collection.build import build_from_gti_async, gti_metadata
    from ..store import CloudConfig

    bands = _band_list(bands)
    if len(bands) != 1:
        raise ValidationError(
            f"bands {bands!r}: a GTI tile gives one band here; pass one band name"
        )
    extra: dict[str, Any] = {}
    if requester_pays:
        extra["cloud_config"] = CloudConfig(requester_pays=True)
    coll = await build_from_gti_async(
        gti, name=name, location_column=location_column, band=bands[0], query=query,
        progress=False, **extra,
    )  # fmt: skip
    # the index's own compositing rule, as GDAL's GTI driver applies it
    meta = gti_metadata(coll)
    if sort_column is None and meta.get("SORT_FIELD"):
        sort_column = meta["SORT_FIELD"]
    if sort_ascending is None:  # GDAL's CPLTestBool
        asc = meta.get("SORT_FIELD_ASC", "YES").strip().upper()
        sort_ascending = asc not in ("NO", "FALSE", "OFF", "0")
    return await build_mosaic_async(
        coll, aoi, bands=bands, output_dir=output_dir, crs=crs, resolution=resolution,
        chunk_size=chunk_size, shard_size=shard_size, skip_xy_coords=skip_xy_coords,
        time_column=time_column, sort_column=sort_column, sort_ascending=sort_ascending,
        resampling=resampling,
        nodata=nodata, client=client, progress=progress, name=name,
    )  # fmt: skip


@same_signature(build_gti_mosaic_async)
def build_gti_mosaic(gti: Any, aoi: Any, bands: Sequence[str], *args: Any, **kwargs: Any) -> Any:
    """Build a Zarr v3 mosaic from a GDAL GTI tile index (seed 004's ``build_gti_mosaic``).

    ``gti`` (a path GeoPandas reads, or a GeoDataFrame) goes through
    :func:`tessellum.build_from_gti` (``location_column``, ``query``), then
    :func:`build_mosaic` with the other arguments. ``time_column`` and ``sort_column``
    name columns of the index. Priority where tiles overlap: with ``sort_column``, as
    GDAL's GTI driver with ``SORT_FIELD`` (highest value on top, ties: the later
    feature; the lowest with ``sort_ascending=False``). Without them, the index
    layer's own ``SORT_FIELD`` / ``SORT_FIELD_ASC`` metadata items apply, as GDAL
    applies them; an index with neither gets tessellum's
    :func:`~tessellum.read.stacks.mosaic_order` (latest datetime first, then id) —
    GDAL instead draws the last feature on top.
    ``bands`` names the one band each tile gives. ``requester_pays`` reads the tiles
    with requester-pays requests. Returns the same GeoDataFrame as :func:`build_mosaic`.
    """
    return run_sync(build_gti_mosaic_async(gti, aoi, bands, *args, **kwargs))
