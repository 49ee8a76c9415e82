"""Mosaics written to disk. Raster mode (seed 000): :func:`extract_raster` writes one
dataset over a bbox as a Cloud-Optimized GeoTIFF on the source pixel grid.

    >>> from tessellum.mosaic import extract_raster_sync
    >>> result = extract_raster_sync("copernicus_dem:elevation",
    ...                              bbox=(-112.05, 41.95, -111.95, 42.05), output_dir="out")

Heavy modules load on first use (``import tessellum.mosaic`` stays light).
"""

from __future__ import annotations

from .._lazy import lazy_getattr

__all__ = ["RasterResult", "extract_raster", "extract_raster_sync"]

_LAZY = {
    "RasterResult": ".result",
    "extract_raster": ".raster",
    "extract_raster_sync": ".raster",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(__all__)
