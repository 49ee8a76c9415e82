"""Raster mode over STAC/COG: search, one header read per asset, a mosaic on the source
pixel grid, read in row strips so memory stays bounded whatever the output size.

Priority where items overlap: the item with the **latest datetime** wins, ties broken by
**item id** (ascending); items without a datetime come last. Within that order the first
*valid* pixel wins, so a hole (nodata) in a preferred item is filled from the next one.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataFormatError, ProtocolError, ValidationError
from ..geo.crs import crs_to_code, is_geographic, to_crs
from ..geo.grid import Grid, grid_for_bounds, transform_bounds
from ..read.engine import BandSource, Target, read_targets_async
from ..read.fetch import FetchOptions
from ..read.sources import RecordBands, record_bands
from ..read.stacks import mosaic_order
from ._request import RasterRequest

__all__ = ["MosaicPlan", "output_grid", "plan_mosaic"]

# Pixels read per strip: bounds memory (a strip + its decoded tiles) for huge outputs.
STRIP_PIXELS = 16 * 1024 * 1024
_STRIP_ALIGN = 512  # strips start on output block rows
_MAX_LISTED = 10  # item ids named in the provenance string


@dataclass
class MosaicPlan:
    """Everything known before pixels are read: the sources in priority order, the
    output grid, dtype and nodata."""

    grid: Grid
    sources: list[BandSource]
    records: list[RecordBands]
    dtype: np.dtype
    nodata: float | int
    resampling: str
    provenance: str
    fetch: FetchOptions
    notes: list[str] = field(default_factory=list)

    @property
    def item_ids(self) -> tuple[str, ...]:
        """Ids of the mosaicked items, in priority order."""
        return tuple(r.id for r in self.records)

    def strips(self) -> list[tuple[int, int]]:
        """``(row_off, height)`` of the row strips the grid is read in."""
        g = self.grid
        rows = max(_STRIP_ALIGN, (STRIP_PIXELS // max(g.width, 1)) // _STRIP_ALIGN * _STRIP_ALIGN)
        return [(r, min(rows, g.height - r)) for r in range(0, g.height, rows)]

    async def read_strips(self) -> AsyncIterator[tuple[int, np.ndarray]]:
        """Yield ``(row_off, array)`` strip after strip; gaps carry :attr:`nodata`."""
        for row_off, height in self.strips():
            grid = self.grid.window(row_off, 0, height, self.grid.width)
            target = Target(
                grid, self.sources, resampling=self.resampling, dtype=self.dtype, nodata=self.nodata
            )
            ((arr, valid),) = await read_targets_async([target], self.fetch)
            # NaN is never a declared nodata here: whatever slipped through becomes nodata
            bad = ~valid
            if arr.dtype.kind == "f":
                bad |= np.isnan(arr)
            if bad.any():
                arr[bad] = self.nodata
            yield row_off, arr


def output_grid(
    ref: BandSource,
    bbox: tuple[float, float, float, float],
    *,
    target_crs: str | None,
    resolution: tuple[float, float] | None,
) -> Grid:
    """The output grid over a lon/lat ``bbox``.

    In the source CRS: the reference source's own pixel grid, snapped outward by at most
    one pixel per edge (never shifted); with ``resolution``, a grid of that pixel size
    anchored on the source grid's origin. In another CRS: a grid on that CRS's lattice
    at ``resolution`` (default: the source pixel size carried over, square pixels).
    """
    src = ref.grid
    crs = crs_to_code(target_crs) if target_crs is not None else src.crs
    bounds = transform_bounds(bbox, "EPSG:4326", crs)
    same = crs == src.crs or to_crs(crs).equals(to_crs(src.crs))
    if same and src.is_axis_aligned:
        if resolution is None:
            return src.covering(bounds)
        t = src.transform
        return grid_for_bounds(bounds, resolution, src.crs, anchor=(t.c, t.f))
    if resolution is None:
        resolution = _carried_resolution(src, bbox, crs)
    if is_geographic(crs) and is_geographic(src.crs):
        # datum change only (e.g. NAD83 -> WGS84): stay on the source's lattice
        t = src.transform
        return grid_for_bounds(bounds, resolution, crs, anchor=(t.c, t.f))
    return grid_for_bounds(bounds, resolution, crs)


def _carried_resolution(
    src: Grid, bbox: tuple[float, float, float, float], crs: str
) -> tuple[float, float]:
    """The source pixel size expressed in ``crs`` at the bbox centre (square pixels)."""
    from rasterio.warp import calculate_default_transform

    from ._cog import rasterio_crs

    sb = transform_bounds(bbox, "EPSG:4326", src.crs)
    rx, ry = src.resolution
    w = max(1, round((sb[2] - sb[0]) / rx))
    h = max(1, round((sb[3] - sb[1]) / ry))
    transform, _, _ = calculate_default_transform(
        rasterio_crs(src.crs), rasterio_crs(crs), w, h, *sb
    )
    res = min(abs(transform.a), abs(transform.e))
    return (res, res)


def output_nodata(
    src_nodata: Any, catalog_nodata: Any, dtype: np.dtype
) -> tuple[float | int, list[str]]:
    """A finite nodata for the output: the source's, else the catalog's, else a dtype
    default. NaN is never used: raster consumers drop pixels equal to the declared
    nodata, and a NaN compares unequal to itself."""
    notes: list[str] = []
    for value, origin in ((src_nodata, "source"), (catalog_nodata, "catalog")):
        if value is None:
            continue
        v = float(value)
        if not math.isfinite(v):
            notes.append(f"{origin} nodata {value!r} is not finite; not used")
            continue
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            if v != int(v) or not info.min <= int(v) <= info.max:
                notes.append(f"{origin} nodata {value!r} does not fit {dtype.name}; not used")
                continue
            out: float | int = int(v)
        else:
            out = float(np.asarray(v, dtype=dtype))
        if origin == "catalog":
            notes.append(f"the source declares no usable nodata; using the catalog's ({out})")
        return out, notes
    if dtype.kind == "f":
        fallback: float | int = -9999.0
    elif dtype.kind == "u":
        fallback = int(np.iinfo(dtype).max)
    else:
        fallback = int(np.iinfo(dtype).min)
    notes.append(f"no nodata declared by the source or the catalog; using {fallback}")
    return fallback, notes


async def plan_mosaic(req: RasterRequest, *, progress: bool | None = None) -> MosaicPlan:
    """Search every collection of the dataset, read the headers and fix the output grid.

    Raises:
        ProtocolError: the search failed or found no item intersecting the bbox.
        DataFormatError: items were found but none of their assets could be read.
        ValidationError: the output would exceed ``max_output_pixels``.
    """
    from ..collection.build import build_from_stac_async

    entry = req.resolved.entry
    variable = entry.variable
    signer = req.resolved.signer()
    band_index_map = {variable: entry.band_index - 1} if entry.band_index else None
    builds = await asyncio.gather(
        *(
            build_from_stac_async(
                name=f"raster:{entry.id}:{coll}",
                stac_api=req.resolved.stac_api,
                collection=coll,
                band_map={variable: entry.asset},
                band_index_map=band_index_map,
                bbox=req.bbox.as_tuple(),
                date_range=req.time_range,
                workspace_dir=None,
                signer=signer,
                progress=progress,
            )
            for coll in entry.collections
        )
    )
    records: list[RecordBands] = []
    failures: list[str] = []
    for coll in builds:
        if len(coll):
            records += record_bands(coll.table, [variable])
            failures += [f"{e}" for e in _errors(coll)]
    where = f"bbox {req.bbox.as_tuple()}" + (
        f", time_range {req.time_range}" if req.time_range else ""
    )
    if not records and failures:
        raise DataFormatError(
            f"{entry.id}: {len(failures)} item(s) intersect {where} but no asset could be read: "
            + "; ".join(failures[:3])
        )
    if not records:
        raise ProtocolError(
            f"{entry.id}: no item of {', '.join(entry.collections)} intersects {where} "
            f"(STAC API {req.resolved.stac_api})",
            url=req.resolved.stac_api,
        )
    records = mosaic_order(records)
    sources = [r.bands[variable] for r in records]
    from ..read.grids import reference_source

    ref = reference_source(sources, req.target_crs)
    grid = output_grid(
        ref, req.bbox.as_tuple(), target_crs=req.target_crs, resolution=req.target_resolution
    )
    check_pixels(grid.width, grid.height, req.max_output_pixels, entry.id)
    dtype = ref.dtype
    nodata, notes = output_nodata(ref.nodata, entry.nodata, dtype)
    if failures:
        notes.append(f"{len(failures)} asset(s) unreadable and skipped: {failures[0]}")
    resampling = req.resampling
    return MosaicPlan(
        grid=grid,
        sources=sources,
        records=records,
        dtype=dtype,
        nodata=nodata,
        resampling=resampling,
        provenance=_provenance(entry.collections, records, req.resolved.stac_api),
        fetch=FetchOptions(signer=signer, cache=False),  # no cache: every call re-reads
        notes=notes,
    )


def check_pixels(
    width: int, height: int, limit: int, dataset_id: str, *, estimate: str = ""
) -> None:
    """Refuse outputs larger than ``limit`` pixels with a message saying what to change.

    Raises:
        ValidationError: ``width * height > limit``.
    """
    if width * height > limit:
        raise ValidationError(
            f"{dataset_id}: the output would be {width} x {height} = {width * height:,} pixels"
            f"{estimate}, "
            f"more than max_output_pixels={limit:,}; use a smaller bbox, a coarser "
            f"target_resolution, or raise the limit (TESSELLUM_MAX_OUTPUT_PIXELS)"
        )


def _errors(coll: Any) -> list[str]:
    """``"<item id>: <error>"`` for every asset whose header failed."""
    errs = coll.errors()
    return [
        f"{i}: {e}"
        for i, e in zip(
            errs.column("id").to_pylist(), errs.column("error").to_pylist(), strict=True
        )
    ]


def _provenance(collections: Sequence[str], records: Sequence[RecordBands], api: Any) -> str:
    ids = [r.id for r in records]
    listed = ", ".join(ids[:_MAX_LISTED])
    if len(ids) > _MAX_LISTED:
        listed += f", ... {len(ids) - _MAX_LISTED} more"
    noun = "item" if len(ids) == 1 else "items"
    return f"STAC mosaic: {', '.join(collections)} ({len(ids)} {noun}: {listed}) via {api}"
