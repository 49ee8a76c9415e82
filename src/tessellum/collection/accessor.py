"""``RasterAccessor``: the data-loading handle for one collection record (seed 001)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from .schema import METADATA_SUFFIX


@dataclass(frozen=True)
class RasterInfo:
    """One record's metadata (a row of the collection table, as Python values)."""

    id: str
    datetime: dt.datetime | None
    bbox: tuple[float, float, float, float] | None
    footprint: Any
    crs: str | None
    cloud_cover: float | None
    assets: dict[str, dict[str, Any]]
    band_metadata: dict[str, dict[str, Any]]
    collection: str | None


class RasterAccessor:
    """Data-loading handle for a single record (row) of a Collection.

    Attributes mirror seed 001: ``id, datetime, bbox, footprint (geometry), crs,
    cloud_cover, assets, band_metadata, collection, data_source``.
    """

    def __init__(
        self, info: RasterInfo, data_source: str | None = None, *, collection: Any = None
    ) -> None:
        self.id = info.id
        self.datetime = info.datetime
        self.bbox = info.bbox
        self.footprint = info.footprint
        self.crs = info.crs
        self.cloud_cover = info.cloud_cover
        self.assets = info.assets
        self.band_metadata = info.band_metadata
        self.collection = info.collection
        self.data_source = data_source
        self._parent = collection

    def __repr__(self) -> str:
        return f"RasterAccessor(id={self.id!r}, datetime={self.datetime}, bands={self.available_bands})"

    @property
    def geometry(self) -> Any:
        """Alias for ``footprint`` (a shapely geometry in CRS84)."""
        return self.footprint

    @property
    def available_bands(self) -> list[str]:
        """Band codes with an asset and a header that parsed."""
        return [
            k[: -len(METADATA_SUFFIX)]
            for k, v in self.band_metadata.items()
            if v is not None and not v.get("error") and k[: -len(METADATA_SUFFIX)] in self.assets
        ]

    def try_get_band_cog_metadata(self, band_code: str) -> tuple[Any, str | None, int | None]:
        """``(header, url, band_index)`` for ``band_code``; ``(None, None, None)`` when the
        band, its asset or its header is missing. ``header`` is a ``tessellum.tiff.TiffHeader``."""
        from ..tiff import header_from_arrow

        asset = self.assets.get(band_code)
        meta = self.band_metadata.get(f"{band_code}{METADATA_SUFFIX}")
        if asset is None or meta is None or meta.get("error"):
            return None, None, None
        return header_from_arrow(meta), asset["href"], asset.get("band_index")

    async def load_bands(
        self,
        geometries: Any,
        band_codes: list[str],
        max_concurrent: int = 50,
        for_xarray: bool = True,
        backend: Any = None,
        target_crs: Any = None,
    ) -> Any:
        """Load bands of this record under ``geometries``.

        Args:
            geometries: AOIs (GeoArrow array, shapely, GeoJSON, GeoDataFrame ...).
            band_codes: bands to load.
            max_concurrent: requests in flight.
            for_xarray: ``xarray.Dataset`` (one geometry) / list of them; else a
                GeoDataFrame (one row per geometry and band).
            backend: reserved (seed compatibility).
            target_crs: reproject the result to this CRS.

        Returns:
            Data in the native COG dtype (integer data keeps its dtype and nodata).
        """
        return await _load_bands(
            self, geometries, band_codes, max_concurrent=max_concurrent, for_xarray=for_xarray,
            backend=backend, target_crs=target_crs,
        )  # fmt: skip

    def intersects(self, geometry: Any) -> bool:
        """True if this record's bbox overlaps ``geometry``'s bbox (any CRS; GeoJSON and
        shapely input without a CRS are taken as lon/lat)."""
        import numpy as np
        import shapely

        from ..geo.bbox import bbox_intersects
        from ..geo.crs import CRS84, to_crs, transformer
        from ..geo.geometry import coerce_geometries, lonlat_bbox

        if self.bbox is None:
            return False
        g = coerce_geometries(geometry)
        union = shapely.union_all(g.geoms)
        if not to_crs(g.crs).equals(to_crs(CRS84)):
            t = transformer(g.crs, CRS84)
            union = shapely.transform(
                union, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1]))
            )
        return bbox_intersects(self.bbox, lonlat_bbox(union))


async def _load_bands(
    accessor: RasterAccessor, geometries: Any, band_codes: list[str], **kwargs: Any
) -> Any:
    import pyarrow.compute as pc

    parent = accessor._parent
    if parent is None:
        raise ValueError("this RasterAccessor is not attached to a collection")
    one = parent.where(pc.field("id") == accessor.id)
    for_xarray = kwargs.pop("for_xarray", True)
    kwargs.pop("backend", None)
    if for_xarray:
        return await one.get_xarray_async(geometries, band_codes, **kwargs)
    return await one.get_gdf_async(geometries, band_codes, **kwargs)
