"""Raster mode: ``extract_raster`` writes one dataset over a bbox as a Cloud-Optimized
GeoTIFF on the source pixel grid, with a finite nodata, license and provenance.

Contract (seed 000): a domain bbox snapped outward by at most one native pixel per edge,
every intersecting STAC item mosaicked (latest datetime first, then item id; the first
valid pixel wins), native resolution unless ``target_resolution`` is given, gaps and
seams left as nodata, dtype preserved. WCS datasets are a GetCoverage passthrough at the
server's grid. No result cache and no scalar QC: failures raise.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._sync import run_sync, same_signature
from ..errors import ExtractionError
from ..geo.grid import Grid
from ._cog import CogWriter, OutputSpec
from ._request import RasterRequest, validate_request
from .result import RasterResult

__all__ = ["extract_raster", "extract_raster_sync"]


async def extract_raster(
    dataset_id: str,
    bbox: Any,
    output_dir: str | Path,
    *,
    target_resolution: float | tuple[float, float] | None = None,
    resampling: str = "nearest",
    time_range: tuple[Any, Any] | None = None,
    filename: str | None = None,
    target_crs: Any = None,
    catalog: Any = None,
    progress: bool | None = False,
) -> RasterResult:
    """Write ``dataset_id`` over ``bbox`` as a GeoTIFF (COG) in ``output_dir``.

    Args:
        dataset_id: exactly one ``provider:variable`` id, e.g. ``"copernicus_dem:elevation"``.
        bbox: ``(min_lon, min_lat, max_lon, max_lat)`` in EPSG:4326, a mapping with
            ``west/south/east/north`` (or ``min_lon``... / ``minx``...) keys, or an object
            with such attributes.
        output_dir: folder of the output (created when missing).
        target_resolution: output pixel size in the output CRS's units (the source CRS
            unless ``target_crs`` is given; degrees for EPSG:4326), one number or
            ``(x, y)``. ``None``: the source's native grid. Not for WCS datasets.
        resampling: ``nearest`` (default), ``bilinear``, ``cubic``, ``average`` or another
            GDAL kernel (``mode``, ``min``, ``max``, ``med``...). Categorical datasets
            accept only ``nearest`` and ``mode``.
        time_range: ``(start, end)`` of item datetimes (dates or ISO strings; an end date
            covers its whole day). Temporal datasets default to the catalog's range.
        filename: the output file name (default ``{provider}_{variable}.tif``).
        target_crs: output CRS (EPSG code, WKT, pyproj CRS...). ``None``: native CRS.
            Reprojection uses ``resampling`` (nearest for categorical data).
        catalog: a :class:`tessellum.catalog.Catalog` (default: the default catalog).
        progress: show progress bars (``None``: on a TTY).

    Returns:
        A :class:`RasterResult` with the path and the raster's grid, nodata, license and
        provenance. The file is written atomically: an existing file at that path is
        replaced only by a complete one, and a failed call leaves no file behind.

    Raises:
        ValidationError: a bad argument (bbox, resolution, resampling, filename, too many
            output pixels), named in the message.
        DatasetNotFoundError: an unknown dataset id.
        RasterUnsupportedError: the dataset has no raster support, or an option its
            protocol cannot honour (``target_resolution`` with WCS).
        ProtocolError: no item intersects the bbox, or the STAC API / WCS failed.
        DataFormatError: the source answered something that is not a readable GeoTIFF
            (a WCS exception report carries the server's message).
        ExtractionError: the per-provider timeout (``settings.provider_timeout_s``) elapsed.

    Sync form: :func:`extract_raster_sync`.
    """
    from ..config import get_settings

    t0 = time.perf_counter()
    settings = get_settings()
    req = validate_request(
        dataset_id,
        bbox,
        output_dir,
        target_resolution=target_resolution,
        resampling=resampling,
        time_range=time_range,
        filename=filename,
        target_crs=target_crs,
        catalog=catalog,
        settings=settings,
    )
    timeout = settings.provider_timeout_s
    try:
        return await asyncio.wait_for(_extract(req, t0, progress), timeout)
    except TimeoutError:
        raise ExtractionError(
            f"{req.resolved.id}: extraction from provider {req.resolved.entry.provider!r} "
            f"exceeded provider_timeout_s={timeout:g} s; no file written"
        ) from None


@same_signature(extract_raster)
def extract_raster_sync(
    dataset_id: str, bbox: Any, output_dir: str | Path, **kwargs: Any
) -> RasterResult:
    """Blocking form of :func:`extract_raster` (same arguments); also works inside a
    running event loop (Jupyter), keeping the caller's settings overrides."""
    ctx = contextvars.copy_context()
    return run_sync(_in_context(ctx, extract_raster(dataset_id, bbox, output_dir, **kwargs)))


async def _in_context(ctx: contextvars.Context, coro: Any) -> Any:
    # run_sync may hop to a background loop; run the work in the caller's context so
    # settings_override() blocks keep applying
    return await asyncio.get_running_loop().create_task(coro, context=ctx)


async def _extract(req: RasterRequest, t0: float, progress: bool | None) -> RasterResult:
    entry = req.resolved.entry
    if entry.protocol == "wcs":
        from ._wcs_mode import extract_wcs

        return await extract_wcs(req, t0)
    from ._stac import plan_mosaic

    plan = await plan_mosaic(req, progress=progress)
    spec = output_spec(req, plan.grid, plan.dtype, plan.nodata, plan.provenance, plan.notes)
    writer = CogWriter(spec, req.path)
    bar = _bar(len(plan.strips()), progress)
    try:
        await asyncio.to_thread(req.output_dir.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(writer.open_stage)
        async for row_off, arr in plan.read_strips():
            await asyncio.to_thread(writer.write_rows, arr, row_off)
            bar.update(1)
        await asyncio.to_thread(writer.finish)
        path = writer.commit()
    except BaseException:  # incl. cancellation by the timeout: leave nothing behind
        writer.abort()
        raise
    finally:
        bar.close()
    return make_result(
        req, path, plan.grid, plan.dtype, plan.nodata, plan.provenance, t0,
        items=plan.item_ids, notes=plan.notes,
    )  # fmt: skip


def _bar(total: int, progress: bool | None) -> Any:
    from .._progress import progress_bar

    return progress_bar(total, "strips", progress, unit="strip")


def output_spec(
    req: RasterRequest,
    grid: Grid,
    dtype: np.dtype,
    nodata: float | int,
    provenance: str,
    notes: list[str],
) -> OutputSpec:
    """The output description, with license and provenance as GDAL metadata tags."""
    entry = req.resolved.entry
    tags = {
        "TESSELLUM_DATASET": entry.id,
        "TESSELLUM_VERSION": entry.version,
        "LICENSE": entry.license,
        "PROVENANCE": provenance,
        "UNITS": entry.units,
        "TITLE": entry.title,
    }
    if entry.license_url:
        tags["LICENSE_URL"] = entry.license_url
    if entry.citation:
        tags["CITATION"] = entry.citation
    if entry.is_categorical:
        tags["CLASSES"] = json.dumps({str(k): v for k, v in entry.classes.items()})
    if req.target_resolution is not None or req.target_crs is not None:
        tags["RESAMPLING"] = req.resampling
    if notes:
        tags["NOTES"] = " | ".join(notes)
    return OutputSpec(
        grid=grid,
        dtype=np.dtype(dtype),
        nodata=nodata,
        categorical=entry.is_categorical,
        tags=tags,
        band_description=entry.variable,
        units=entry.units,
        # the pixels stay as stored; the band says how to get to units (classes: never)
        scale=1.0 if entry.is_categorical else entry.scale,
        offset=0.0 if entry.is_categorical else entry.offset,
    )


def make_result(
    req: RasterRequest,
    path: Path,
    grid: Grid,
    dtype: np.dtype,
    nodata: float | int,
    provenance: str,
    t0: float,
    *,
    items: tuple[str, ...] = (),
    notes: list[str] | tuple[str, ...] = (),
) -> RasterResult:
    """The :class:`RasterResult` of a written file."""
    entry = req.resolved.entry
    return RasterResult(
        dataset_id=entry.id,
        provider=entry.provider,
        variable=entry.variable,
        units=entry.units,
        path=path.resolve(),
        crs=grid.crs,
        transform=grid.transform,
        shape=grid.shape,
        nodata=nodata,
        dtype=np.dtype(dtype).name,
        license=entry.license,
        provenance=provenance,
        elapsed_ms=(time.perf_counter() - t0) * 1e3,
        bounds=grid.bounds,
        resolution=grid.resolution,
        protocol=entry.protocol,
        items=items,
        notes=tuple(notes),
    )
