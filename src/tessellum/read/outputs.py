"""Output surfaces of the read engine: xarray, numpy, GeoDataFrame and mosaics.

Each public function takes a collection first and has an ``_async`` twin; the
``Collection`` methods of the same names delegate here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from .._interop import require
from ..errors import ValidationError
from ..geo.geometry import is_single_geometry
from .stacks import GeometryStack, collection_fetch_options, read_stacks_into_async

_FILTER_KEYS = ("cloud_cover_lt", "date_range", "bbox", "split")


def _filtered(collection: Any, filters: dict[str, Any]) -> Any:
    bad = sorted(set(filters) - set(_FILTER_KEYS))
    if bad:
        raise ValidationError(f"unknown filter(s) {bad}; use one of {list(_FILTER_KEYS)}")
    return collection.subset(**filters) if filters else collection


async def _stacks(
    collection: Any,
    geometries: Any,
    bands: Sequence[str],
    filters: dict[str, Any],
    *,
    max_concurrent: int | None,
    progress: bool | None,
    equal_size: bool = False,
    chips: bool = False,
    **read: Any,
) -> tuple[list[GeometryStack], np.ndarray | None]:
    """Filter the collection, then plan and read every geometry x record x band at once
    (with ``chips``, into one [N, C, H, W] array, also returned)."""
    coll = _filtered(collection, filters)
    return await read_stacks_into_async(
        coll.table, geometries, bands, equal_size=equal_size, chips=chips,
        opts=collection_fetch_options(coll, max_concurrent, progress=progress), **read,
    )  # fmt: skip


def _spatial_ref(crs: str) -> tuple[Any, dict[str, Any]]:
    from ..geo.crs import to_crs

    c = to_crs(crs)
    attrs = c.to_cf()
    attrs["spatial_ref"] = attrs.get("crs_wkt", c.to_wkt())
    return 0, attrs


def _utc_naive(when: Any) -> Any:
    """A datetime as numpy's naive datetime64 in UTC (``NaT`` for None); an aware
    datetime in another zone is converted, not stripped of its zone."""
    if when is None:
        return np.datetime64("NaT", "ns")
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return np.datetime64(when, "ns")


def stack_to_xarray(st: GeometryStack) -> Any:
    """One geometry's stack as an ``xarray.Dataset`` with dims (time, y, x)."""
    import xarray as xr

    x, y = st.grid.xy_coords()
    # explicit unit: records without a datetime are NaT, and an all-NaT array would
    # otherwise have no unit (which xarray/pandas reject)
    times = np.array([_utc_naive(t) for t in st.datetimes], dtype="datetime64[ns]")
    _, sref = _spatial_ref(st.grid.crs)
    sref["GeoTransform"] = " ".join(str(v) for v in st.grid.transform.to_gdal())
    data_vars = {}
    per_layer: dict[str, Any] = {}
    for band, arr in st.data.items():
        nod = st.nodata[band]
        da = xr.DataArray(arr, dims=("time", "y", "x"))
        da.attrs["grid_mapping"] = "spatial_ref"
        if nod is not None:
            da.attrs["_FillValue"] = nod.item() if hasattr(nod, "item") else nod
            da.attrs["nodata"] = da.attrs["_FillValue"]
        pairs = st.scale_offset.get(band) or []
        if len(set(pairs)) == 1 and pairs[0] != (1.0, 0.0):
            # CF packing attributes (as rioxarray sets them); values stay as stored
            da.attrs["scale_factor"], da.attrs["add_offset"] = pairs[0]
        elif len(set(pairs)) > 1 and len(pairs) == arr.shape[0]:
            # records disagree (a processing baseline changed): one attribute would be
            # wrong for some layers, so each layer's goes along time
            per_layer[f"{band}_scale_factor"] = ("time", np.array([p[0] for p in pairs]))
            per_layer[f"{band}_add_offset"] = ("time", np.array([p[1] for p in pairs]))
        data_vars[band] = da
    ds = xr.Dataset(
        data_vars,
        coords={
            "time": times,
            "id": ("time", np.array(st.record_ids, dtype=object)),
            "y": y,
            "x": x,
            "spatial_ref": xr.DataArray(0, attrs=sref),
            **per_layer,
        },
        attrs={"geometry_id": st.geometry_id, "crs": st.grid.crs},
    )
    return ds


async def get_xarray_async(
    collection: Any,
    geometries: Any,
    bands: Sequence[str],
    *,
    target_crs: Any = None,
    resolution: Any = None,
    resampling: str = "nearest",
    all_touched: bool = False,
    max_concurrent: int | None = None,
    progress: bool | None = None,
    geometry_crs: Any = None,
    **filters: Any,
) -> Any:
    """Async form of :meth:`Collection.get_xarray`."""
    require("xarray", "xarray")
    stacks, _ = await _stacks(
        collection, geometries, bands, filters, max_concurrent=max_concurrent, progress=progress,
        geometry_crs=geometry_crs, target_crs=target_crs, resolution=resolution,
        resampling=resampling, all_touched=all_touched, valid=False, nan_fill=True,
    )  # fmt: skip
    out = [stack_to_xarray(st) if st.grid is not None else None for st in stacks]
    if not is_single_geometry(geometries):
        return out  # positional: None where no record intersects that geometry
    if out[0] is None:
        raise ValidationError("no record of the collection intersects the geometry")
    return out[0]


class NumpyResult(NamedTuple):
    """Chips ``data`` [N, C, H, W] and ``labels`` (geometry_id, record_id, datetime) per N."""

    data: np.ndarray
    labels: pa.Table


async def get_numpy_async(
    collection: Any,
    geometries: Any,
    bands: Sequence[str],
    *,
    target_crs: Any = None,
    resolution: Any = None,
    resampling: str = "nearest",
    all_touched: bool = False,
    max_concurrent: int | None = None,
    progress: bool | None = None,
    geometry_crs: Any = None,
    **filters: Any,
) -> NumpyResult:
    """Async form of :meth:`Collection.get_numpy`."""
    if isinstance(bands, str):
        bands = [bands]
    stacks, data = await _stacks(
        collection, geometries, bands, filters, max_concurrent=max_concurrent, progress=progress,
        equal_size=True, chips=True, valid=False, geometry_crs=geometry_crs,
        target_crs=target_crs, resolution=resolution, resampling=resampling,
        all_touched=all_touched,
    )  # fmt: skip
    if data is None:
        raise ValidationError("no record of the collection intersects the geometries")
    # the chips' order in data: geometries, then their records
    gids, rids, whens = [], [], []
    for st in stacks:
        if st.grid is not None:
            gids += [st.geometry_id] * len(st.record_ids)
            rids += st.record_ids
            whens += st.datetimes
    labels = pa.table({
        "geometry_id": pa.array(gids, pa.int64()),
        "record_id": pa.array(rids, pa.string()),
        "datetime": pa.array(whens, pa.timestamp("us", tz="UTC")),
    })  # fmt: skip
    return NumpyResult(data, labels)


async def get_gdf_async(
    collection: Any,
    geometries: Any,
    bands: Sequence[str],
    *,
    target_crs: Any = None,
    resolution: Any = None,
    resampling: str = "nearest",
    all_touched: bool = False,
    max_concurrent: int | None = None,
    progress: bool | None = None,
    geometry_crs: Any = None,
    **filters: Any,
) -> Any:
    """Async form of :meth:`Collection.get_gdf`: one row per (geometry, record, band)
    with the pixel array, its transform and CRS, keeping the AOI table's columns."""
    require("geopandas", "xarray")
    import geopandas as gpd

    from ..geo.geometry import coerce_geometries

    if isinstance(bands, str):
        bands = [bands]
    g = coerce_geometries(geometries, crs=geometry_crs)  # once: an iterator is read once
    stacks, _ = await _stacks(
        collection, g, bands, filters, max_concurrent=max_concurrent, progress=progress,
        target_crs=target_crs, resolution=resolution, resampling=resampling,
        all_touched=all_touched, nan_fill=True,
    )  # fmt: skip
    rows: dict[str, list[Any]] = {name: [] for name in _GDF_COLUMNS}
    for st in stacks:
        if st.grid is None:
            continue
        transform = tuple(st.grid.transform)[:6]
        for k, rid in enumerate(st.record_ids):
            for b in bands:
                for name, value in zip(_GDF_COLUMNS, (
                    st.geometry_id, rid, st.datetimes[k], b, st.data[b][k], st.valid[b][k],
                    st.nodata[b], transform, st.grid.crs, st.geometry,
                ), strict=True):  # fmt: skip
                    rows[name].append(value)
    import pandas as pd

    frame = pd.DataFrame(rows)
    attrs = g.carried_attributes(frame.columns)
    if attrs is not None:  # the AOI table's columns, in their own types, first
        taken = attrs.iloc[np.asarray(rows["geometry_id"], dtype=np.int64)]
        frame = pd.concat([taken.reset_index(drop=True), frame], axis=1)
    return gpd.GeoDataFrame(frame, geometry="geometry", crs=g.crs)


_GDF_COLUMNS = (
    "geometry_id", "record_id", "datetime", "band", "data", "valid", "nodata", "transform",
    "crs", "geometry",
)  # fmt: skip
