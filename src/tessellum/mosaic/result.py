"""``RasterResult``: what raster mode hands back — a path and its description, never bytes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from affine import Affine

__all__ = ["RasterResult"]


@dataclass(frozen=True, slots=True)
class RasterResult:
    """A GeoTIFF written by :func:`tessellum.mosaic.extract_raster`.

    The file at :attr:`path` belongs to the caller; tessellum keeps nothing.
    """

    dataset_id: str
    """``provider:variable`` that was extracted."""
    provider: str
    """Provider slug."""
    variable: str
    """Variable slug."""
    units: str
    """Physical units of the values (``m``, ``class`` ...)."""
    path: Path
    """The GeoTIFF (a Cloud-Optimized GeoTIFF) on disk."""
    crs: str
    """CRS of the raster, ``EPSG:<code>`` when it has one, else WKT2."""
    transform: Affine
    """Affine pixel-to-CRS transform (rasterio order), pixel corners (area convention)."""
    shape: tuple[int, int]
    """``(rows, cols)``."""
    nodata: float | int
    """The declared nodata value (always finite): gaps, holes and seams carry it."""
    dtype: str
    """Sample type (numpy name), the source's own."""
    license: str
    """The provider's license string; honour it downstream."""
    provenance: str
    """Where the pixels came from, e.g. ``"STAC mosaic: cop-dem-glo-30 (4 items: ...)"``."""
    elapsed_ms: float
    """Wall time of the call."""
    bounds: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    """``(left, bottom, right, top)`` of the raster in :attr:`crs` (the snapped bbox)."""
    resolution: tuple[float, float] = (0.0, 0.0)
    """``(x, y)`` pixel size in :attr:`crs` units, both positive."""
    protocol: str = "stac_cog"
    """``stac_cog`` or ``wcs``."""
    items: tuple[str, ...] = ()
    """Ids of the STAC items mosaicked, in priority order (the first valid pixel wins)."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    """Adjustments made on the caller's behalf (e.g. a source NaN nodata replaced)."""

    @property
    def width(self) -> int:
        """Number of columns."""
        return self.shape[1]

    @property
    def height(self) -> int:
        """Number of rows."""
        return self.shape[0]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (path as text, transform as its 6 coefficients)."""
        return {
            "dataset_id": self.dataset_id,
            "provider": self.provider,
            "variable": self.variable,
            "units": self.units,
            "path": str(self.path),
            "crs": self.crs,
            "transform": list(self.transform)[:6],
            "shape": list(self.shape),
            "nodata": self.nodata,
            "dtype": self.dtype,
            "license": self.license,
            "provenance": self.provenance,
            "elapsed_ms": self.elapsed_ms,
            "bounds": list(self.bounds),
            "resolution": list(self.resolution),
            "protocol": self.protocol,
            "items": list(self.items),
            "notes": list(self.notes),
        }
