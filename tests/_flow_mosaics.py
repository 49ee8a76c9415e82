"""Mosaics for the flow tests, written with plain xarray in the layout of docs/flow.md
(a private copy of the few lines ``tessellum.mosaic.zarr_store`` writes)."""

from __future__ import annotations

import warnings

import numpy as np
from affine import Affine

UTM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0)


def make_mosaic(
    path,
    bands: dict[str, np.ndarray],
    *,
    transform: Affine = UTM,
    crs: str = "EPSG:32612",
    nodata: dict | None = None,
    chunk: int = 8,
    times=None,
    skip_xy_coords: bool = False,
) -> str:
    """Write ``bands`` (each [time, y, x]) as a mosaic store at ``path``."""
    import xarray as xr

    from tessellum.read.outputs import _spatial_ref

    n_time, height, width = next(iter(bands.values())).shape
    time = np.array(times if times is not None else ["NaT"] * n_time, dtype="datetime64[ns]")
    _, sref = _spatial_ref(crs)
    sref["GeoTransform"] = " ".join(str(v) for v in transform.to_gdal())
    coords = {"time": time, "spatial_ref": xr.DataArray(0, attrs=sref)}
    if not skip_xy_coords:
        coords["x"] = transform.c + (np.arange(width) + 0.5) * transform.a
        coords["y"] = transform.f + (np.arange(height) + 0.5) * transform.e
    data, encoding = {}, {}
    for name, arr in bands.items():
        attrs = {"grid_mapping": "spatial_ref"}
        encoding[name] = {"chunks": (1, chunk, chunk)}
        nod = (nodata or {}).get(name)
        if nod is not None:
            attrs["nodata"] = nod
            encoding[name]["_FillValue"] = nod
        data[name] = xr.DataArray(arr, dims=("time", "y", "x"), attrs=attrs)
    ds = xr.Dataset(
        data,
        coords=coords,
        attrs={"crs": crs, "transform": list(transform)[:6], "tessellum_mosaic": 1},
    )
    with warnings.catch_warnings():  # consolidated metadata is not in the v3 spec yet
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        ds.to_zarr(path, mode="w", zarr_format=3, encoding=encoding, consolidated=True)
    return str(path)
