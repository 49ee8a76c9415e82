"""The Zarr v3 mosaic store layout shared by the flow layer (builders and consumers).

A mosaic is a Zarr v3 store that ``xarray.open_zarr`` opens as a Dataset with one
variable per band, dims ``(time, y, x)``, chunked ``(1, chunk, chunk)``, ``_FillValue`` =
nodata (also ``attrs["nodata"]``), ``grid_mapping = "spatial_ref"``; coordinates ``time``
(datetime64[ns], one NaT slice when ungrouped), pixel-centre ``y``/``x`` (unless skipped)
and a scalar CF ``spatial_ref`` (as :func:`tessellum.read.outputs.stack_to_xarray` writes
it); Dataset attrs ``crs``, ``transform`` (rasterio Affine order a b c d e f) and
``tessellum_mosaic = 1``.

Writes are atomic: a store is built under a temporary name beside its target and renamed
into place (:func:`publish`), so a failure never leaves a half-written store.

Every function takes a local path or an object-store URL (``s3://bucket/dir/a.zarr``;
``http(s)://`` for reading): URLs are opened through :mod:`tessellum.store` (its
environment and credentials conventions) as a ``zarr.storage.ObjectStore`` rooted at
the store's prefix, and published by server-side copies (:mod:`._remote`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ValidationError
from ..geo.grid import Grid
from ._remote import (
    OURS,
    ROOT,
    check_replaceable,
    is_ours,
    is_url,
    join_url,
    local_path,
    publish_prefix,
    remove_prefix,
    store_errors,
    temp_url,
    zarr_store,
)

MOSAIC_ATTR = "tessellum_mosaic"


def open_mosaic(path: str | os.PathLike, group: str | None = None) -> Any:
    """Open a mosaic store as an ``xarray.Dataset`` (lazy, dask-backed); ``group``
    opens one level of a multiscale store (``"0"``, ``"1"``, ...).

    Bands keep their stored dtype (``mask_and_scale=False``: an integer band is not
    turned into float with NaN); ``attrs["nodata"]`` on each band says which value is
    no data. A ``ValidationError`` when ``path`` is not a tessellum mosaic; for a URL,
    a missing store is a :class:`~tessellum.errors.NotFoundError` and a store failure
    (403, unreachable endpoint) the :mod:`tessellum.store` error for it.
    """
    import xarray as xr

    if not isinstance(path, str | os.PathLike):
        raise ValidationError(f"path must be a mosaic store path or URL, got {path!r}")
    if group is not None and not isinstance(group, str):
        raise ValidationError(f"group must be a level name such as '1', got {group!r}")
    p = os.fspath(path)
    p = p if is_url(p) else local_path(p)
    consolidated: bool | None = False
    if is_url(p):
        from ..store import read_url

        # the group must be there (a named NotFoundError, not zarr's own); its
        # consolidated metadata is used: an http(s) server cannot list a store
        meta_url = join_url(p, f"{group.strip('/')}/{ROOT}" if group else ROOT)
        try:
            meta = json.loads(read_url(meta_url))
        except ValueError as exc:
            raise ValidationError(f"{p!r} is not a Zarr v3 mosaic store: {exc}") from exc
        if not isinstance(meta, dict):
            raise ValidationError(f"{p!r} is not a Zarr v3 mosaic store (bad {meta_url})")
        consolidated = bool(meta.get("consolidated_metadata"))
    elif not Path(p).exists():
        raise ValidationError(f"mosaic store {p!r} does not exist")
    try:
        with store_errors(p, "reading the store"):
            ds = xr.open_zarr(
                zarr_store(p, read_only=True), group=group, consolidated=consolidated,
                mask_and_scale=False, zarr_format=3,
            )  # fmt: skip
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise ValidationError(f"{p!r} is not a Zarr v3 mosaic store: {exc}") from exc
    if "transform" not in ds.attrs or "crs" not in ds.attrs:
        raise ValidationError(f"{p!r} is not a tessellum mosaic (no crs/transform attrs)")
    return ds


def mosaic_grid(ds: Any) -> Grid:
    """The pixel :class:`~tessellum.geo.grid.Grid` of a mosaic Dataset (from its attrs)."""
    from affine import Affine

    from ..geo.crs import crs_to_code

    if not hasattr(ds, "attrs") or not hasattr(ds, "sizes"):
        raise ValidationError(f"mosaic_grid takes a mosaic xarray.Dataset, got {ds!r}")
    try:
        t = Affine(*[float(v) for v in list(ds.attrs["transform"])[:6]])
        crs = crs_to_code(ds.attrs["crs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError(f"not a tessellum mosaic: bad crs/transform attrs ({exc})") from exc
    if "y" not in ds.sizes or "x" not in ds.sizes:
        hint = " (a multiscale store: open a level, group='0')" if "multiscales" in ds.attrs else ""
        raise ValidationError(f"not a tessellum mosaic: no y/x dimensions{hint}")
    return Grid(int(ds.sizes["y"]), int(ds.sizes["x"]), t, crs)


def footprint_lonlat(grid: Grid) -> Any:
    """The grid's outline as a shapely polygon in EPSG:4326 (edges densified)."""
    import shapely

    from ..geo.crs import to_crs, transformer

    left, bottom, right, top = grid.bounds
    ring = shapely.segmentize(shapely.box(left, bottom, right, top), max(grid.resolution) * 64)
    if to_crs(grid.crs).equals(to_crs(4326)):
        return ring
    t = transformer(grid.crs, 4326)
    return shapely.transform(ring, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))


@dataclass(frozen=True)
class BandSpec:
    """One band of a store to write: name, dtype and nodata value."""

    name: str
    dtype: np.dtype
    nodata: Any


def shard_shape(
    shape: tuple[int, int], chunk_size: int, shard_size: int, itemsize: int
) -> tuple[int, int]:
    """(rows, cols) of a shard holding about ``shard_size`` bytes: a square of whole
    chunks (at least one), no larger than the image rounded up to whole chunks."""
    side = int(math.sqrt(max(shard_size, 1) / itemsize)) // chunk_size * chunk_size
    side = max(side, chunk_size)
    h = min(side, math.ceil(shape[0] / chunk_size) * chunk_size)
    w = min(side, math.ceil(shape[1] / chunk_size) * chunk_size)
    return h, w


def create_store(
    path: str | os.PathLike,
    grid: Grid,
    times: Sequence[Any],
    bands: Sequence[BandSpec],
    *,
    chunk_size: int,
    shard: tuple[int, int],
    skip_xy_coords: bool = False,
    attrs: dict[str, Any] | None = None,
    group: str | None = None,
) -> None:
    """Write an empty mosaic store (metadata + coordinates; every chunk reads as its
    band's nodata until written with :func:`write_region`)."""
    import dask.array as da
    import xarray as xr

    from ..read.outputs import _spatial_ref

    _, sref = _spatial_ref(grid.crs)
    sref["GeoTransform"] = " ".join(str(v) for v in grid.transform.to_gdal())
    tvals = np.array(list(times), dtype="datetime64[ns]")
    shape = (len(tvals), grid.height, grid.width)
    chunks = (1, *shard)  # dask chunks = shards: xarray checks writers never share one
    data_vars = {}
    encoding: dict[str, Any] = {}
    for b in bands:
        arr = da.full(shape, b.nodata, dtype=b.dtype, chunks=chunks)
        data_vars[b.name] = xr.DataArray(
            arr, dims=("time", "y", "x"), attrs={"grid_mapping": "spatial_ref", "nodata": b.nodata}
        )
        encoding[b.name] = {
            "chunks": (1, chunk_size, chunk_size),
            "shards": (1, *shard),
            "_FillValue": b.nodata,
            # zarr's own fill value too: xarray keeps _FillValue as an attribute only,
            # and a chunk never written (no record touches its shard) must read nodata
            "fill_value": b.nodata,
        }
    coords: dict[str, Any] = {"time": tvals, "spatial_ref": xr.DataArray(0, attrs=sref)}
    if not skip_xy_coords:
        x, y = grid.xy_coords()
        coords["x"], coords["y"] = x, y
    ds = xr.Dataset(
        data_vars,
        coords=coords,
        attrs={
            "crs": grid.crs,
            "transform": [float(v) for v in tuple(grid.transform)[:6]],
            MOSAIC_ATTR: 1,
            **(attrs or {}),
        },
    )
    # NaT times: keep the ns unit explicit so an all-NaT axis round-trips
    encoding["time"] = {"units": "nanoseconds since 1970-01-01", "dtype": "int64"}
    with store_errors(os.fspath(path), "writing the store"):
        ds.to_zarr(
            zarr_store(path), group=group, mode="w", compute=False, encoding=encoding,
            zarr_format=3, consolidated=False,
        )  # fmt: skip


def write_region(
    path: str | os.PathLike, band: str, t: int, row: int, col: int, data: np.ndarray
) -> None:  # band may be "group/band" (a multiscale level)
    """Write ``data`` (H, W) of ``band`` at time index ``t``, pixel (row, col). Callers
    write whole shards (or the image's edge part of one): two writers never share one."""
    import zarr

    with store_errors(os.fspath(path), "writing the store"):
        arr = zarr.open_array(zarr_store(path), path=band, mode="r+", zarr_format=3)
        arr[t, row : row + data.shape[0], col : col + data.shape[1]] = data


def consolidate(path: str | os.PathLike, group: str | None = None) -> None:
    """Write consolidated metadata once a store (or its ``group``) is complete, so a plain
    ``xarray.open_zarr(path)`` opens it without its fallback warning, and a store served
    over http(s) (which cannot be listed) opens at all (zarr warns that consolidated
    metadata is not yet part of the v3 spec: expected, silenced)."""
    import warnings

    import zarr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with store_errors(os.fspath(path), "writing the store"):
            zarr.consolidate_metadata(zarr_store(path), path=group, zarr_format=3)


def is_tessellum_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` (a folder or URL prefix) holds a store tessellum wrote: a Zarr
    group whose root attrs carry ``tessellum_mosaic`` or ``tessellum_multiscales``."""
    text = os.fspath(path)
    if is_url(text):
        return is_ours(text)
    try:
        meta = json.loads((Path(local_path(text)) / ROOT).read_text())
    except (OSError, ValueError):
        return False
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    return (
        meta.get("node_type") == "group"
        and isinstance(attrs, dict)
        and any(k in attrs for k in OURS)
    )


def check_target(target: str | os.PathLike, what: str = "a tessellum store") -> None:
    """Refuse an output that exists and is not a tessellum store (a user's folder, file
    or prefix is never replaced); for a URL this also reaches the bucket, so a missing
    one or a 403 fails here, before any work, as a tessellum error."""
    text = os.fspath(target)
    if is_url(text):
        check_replaceable(text, what)
        return
    p = Path(local_path(text))
    if p.exists() and not is_tessellum_store(p):
        raise ValidationError(
            f"output {str(p)!r} exists and is not {what}: choose another path or remove it"
        )


def temp_path(target: str | os.PathLike) -> Any:
    """A fresh temporary name beside ``target`` (same folder, so renaming is atomic; for a
    URL, a prefix in the same bucket, so publishing copies server-side)."""
    if is_url(os.fspath(target)):
        return temp_url(os.fspath(target))
    t = Path(target)
    return t.with_name(f".{t.name}.tmp-{uuid.uuid4().hex[:12]}")


def publish(tmp: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move a finished ``tmp`` file or store onto ``target``, replacing an old one; the
    old one is moved aside first and removed only once the new one is in place.

    For URLs (stores only): :func:`._remote.publish_prefix` — a reader sees the old
    store, no store, or the whole new one; a failure leaves no store at ``target``."""
    if is_url(os.fspath(target)):
        publish_prefix(os.fspath(tmp), os.fspath(target))
        return
    tmp, target = Path(tmp), Path(target)
    old = None
    if target.exists():
        old = temp_path(target)
        target.replace(old)
    try:
        tmp.replace(target)
    except OSError:
        if old is not None:
            old.replace(target)
        raise
    if old is not None:
        remove(old)


def remove(path: str | os.PathLike) -> None:
    """Remove a store (folder) or file if present (for a URL: every object under it)."""
    if is_url(os.fspath(path)):
        remove_prefix(os.fspath(path))
        return
    p = Path(path)
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists():
        p.unlink()
