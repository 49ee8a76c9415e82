"""Mosaics written to disk. Raster mode (seed 000): :func:`extract_raster` writes one
dataset over a bbox as a Cloud-Optimized GeoTIFF on the source pixel grid.

    >>> from tessellum.mosaic import extract_raster_sync
    >>> result = extract_raster_sync("copernicus_dem:elevation",
    ...                              bbox=(-112.05, 41.95, -111.95, 42.05), output_dir="out")

Zarr v3 mosaics (seed 004): :func:`build_mosaic`, :func:`build_gti_mosaic` and
:func:`build_zarr_multiscales`; :func:`open_mosaic` / :func:`mosaic_grid` read them.

Heavy modules load on first use (``import tessellum.mosaic`` stays light).
"""

from __future__ import annotations

from .._lazy import lazy_getattr

__all__ = [
    "RasterResult",
    "build_gti_mosaic",
    "build_gti_mosaic_async",
    "build_mosaic",
    "build_mosaic_async",
    "build_zarr_multiscales",
    "extract_raster",
    "extract_raster_sync",
    "mosaic_grid",
    "open_mosaic",
]

_LAZY = {
    "RasterResult": ".result",
    "extract_raster": ".raster",
    "extract_raster_sync": ".raster",
    "build_mosaic": ".zarr_mosaic",
    "build_mosaic_async": ".zarr_mosaic",
    "build_gti_mosaic": ".zarr_mosaic",
    "build_gti_mosaic_async": ".zarr_mosaic",
    "build_zarr_multiscales": ".multiscales",
    "open_mosaic": ".zarr_store",
    "mosaic_grid": ".zarr_store",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(__all__)
