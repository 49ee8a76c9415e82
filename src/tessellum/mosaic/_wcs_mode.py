"""Raster mode for WCS datasets: GetCoverage, validate, re-declare nodata, write a COG."""

from __future__ import annotations

import asyncio
import math

import numpy as np

from ..geo.crs import crs_to_code, is_geographic
from ..geo.grid import Grid
from ._cog import CogWriter
from ._request import RasterRequest
from ._stac import check_pixels, output_nodata
from .result import RasterResult

__all__ = ["extract_wcs"]


async def extract_wcs(req: RasterRequest, t0: float) -> RasterResult:
    """One GetCoverage at the server's native grid, written like a STAC mosaic.

    The pixels are the server's, unchanged, except that cells equal to the server's
    nodata (or NaN) carry the output's finite nodata (the catalog's when the server
    declares none).
    """
    from .raster import make_result, output_spec
    from .wcs import get_coverage_async

    entry = req.resolved.entry
    settings = req.resolved.settings
    creds = req.resolved.credentials()  # ConfigurationError names unset variables
    auth = tuple(creds[name] for name in entry.credentials_env[:2]) if creds else None
    labels = ("Long", "Lat") if is_geographic(entry.native_crs) else ("E", "N")
    cov = await get_coverage_async(
        req.resolved.wcs_url,
        entry.coverage_id,
        req.bbox.as_tuple(),
        axis_labels=labels,
        auth=auth if auth and len(auth) == 2 else None,
        timeout_s=settings.request_timeout_s,
        retries=settings.retries,
        backoff_s=settings.retry_backoff_s,
    )
    arr, prof = cov.array, cov.profile
    grid = Grid(arr.shape[0], arr.shape[1], prof["transform"], crs_to_code(prof["crs"].to_wkt()))
    check_pixels(grid.width, grid.height, req.max_output_pixels, entry.id)
    nodata, notes = output_nodata(prof.get("nodata"), entry.nodata, arr.dtype)
    server_nodata = prof.get("nodata")
    gaps = np.isnan(arr) if arr.dtype.kind == "f" else np.zeros(arr.shape, bool)
    if server_nodata is not None and not math.isnan(server_nodata):
        gaps |= arr == server_nodata
    if gaps.any():
        arr = arr.copy()
        arr[gaps] = nodata
    provenance = f"WCS 2.0.1 GetCoverage: {entry.coverage_id} from {req.resolved.wcs_url}"
    spec = output_spec(req, grid, arr.dtype, nodata, provenance, notes)
    writer = CogWriter(spec, req.path)
    try:
        await asyncio.to_thread(req.output_dir.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(writer.open_stage)
        await asyncio.to_thread(writer.write_rows, arr, 0)
        await asyncio.to_thread(writer.finish)
        path = writer.commit()
    except BaseException:
        writer.abort()
        raise
    return make_result(req, path, grid, arr.dtype, nodata, provenance, t0, notes=notes)
