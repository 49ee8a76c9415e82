"""``RasterAccessor``: the data-loading handle for one collection record (seed 001)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from ..errors import ValidationError
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
        """``(header, url, band_index)`` for a band code or its STAC asset key (seed 001:
        ``"B02"`` or ``"blue"``); ``(None, None, None)`` when the band, its asset or its
        header is missing. ``header`` is a ``tessellum.tiff.TiffHeader``.

        Raises:
            ValidationError: an asset key several bands read (samples of one
                multi-band file, e.g. NAIP's ``image``): name the band instead.
        """
        from ..tiff import header_from_arrow

        band_code = self._band_of(band_code)
        asset = self.assets.get(band_code)
        meta = self.band_metadata.get(f"{band_code}{METADATA_SUFFIX}")
        if asset is None or meta is None or meta.get("error"):
            return None, None, None
        return header_from_arrow(meta), asset["href"], asset.get("band_index")

    def _band_of(self, name: str) -> str:
        """The band code ``name`` refers to: itself when it is one, else the band whose
        asset key it is (this record's assets, then the built-in band map of
        ``data_source``/``collection`` in either direction)."""
        if name in self.assets:
            return name
        by_key = [b for b, a in self.assets.items() if (a or {}).get("asset_key") == name]
        if len(by_key) > 1:
            raise ValidationError(
                f"asset key {name!r} holds bands {by_key} of record {self.id!r}; "
                f"ask for one of them"
            )
        if by_key:
            return by_key[0]
        from .bandmaps import builtin_band_map

        known = builtin_band_map(self.collection, self.data_source) or {}
        forward = known.get(name)  # B02 -> blue, for records keyed by asset key
        if forward in self.assets:
            return forward
        back = [code for code, key in known.items() if key == name and code in self.assets]
        return back[0] if len(back) == 1 else name

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
        import shapely

        from ..geo.bbox import bbox_intersects
        from ..geo.geometry import coerce_geometries, geometries_to_lonlat, lonlat_bbox

        if self.bbox is None:
            return False
        g = coerce_geometries(geometry)
        union = shapely.union_all(geometries_to_lonlat(g.geoms, g.crs))
        return bbox_intersects(self.bbox, lonlat_bbox(union))


async def _load_bands(
    accessor: RasterAccessor, geometries: Any, band_codes: list[str], **kwargs: Any
) -> Any:
    import pyarrow.compute as pc

    parent = accessor._parent
    if parent is None:
        # made with RasterAccessor(info, data_source) (seed 001): its record is in `info`
        accessor._parent = parent = _one_row_collection(accessor)
    one = parent.where(pc.field("id") == accessor.id)
    for_xarray = kwargs.pop("for_xarray", True)
    kwargs.pop("backend", None)
    if for_xarray:
        return await one.get_xarray_async(geometries, band_codes, **kwargs)
    return await one.get_gdf_async(geometries, band_codes, **kwargs)


def _one_row_collection(accessor: RasterAccessor) -> Any:
    """A one-record Collection from an accessor's own metadata (what a read needs:
    a footprint or bbox, assets with hrefs and parsed headers)."""
    import pyarrow as pa
    import shapely

    from ..geo.bbox import BBox
    from ..geo.geometry import lonlat_bbox
    from ..tiff.arrow import HEADER_TYPE
    from .core import Collection
    from .schema import ASSETS_TYPE, BBOX_TYPE, DATETIME_TYPE

    how = (
        "RasterAccessor(info, data_source) needs info.id, info.footprint or info.bbox, "
        "info.assets (band -> {'href', ...}) and info.band_metadata ('{band}_metadata' -> "
        "header row) to load; an accessor from Collection.iterate_rasters() always has them"
    )
    geom = accessor.footprint
    if geom is None and accessor.bbox is not None:
        geom = BBox(*accessor.bbox).to_polygon()
    bands = [b for b in accessor.assets if f"{b}{METADATA_SUFFIX}" in accessor.band_metadata]
    if not accessor.id or geom is None or not bands:
        raise ValidationError(f"record {accessor.id!r} cannot be read: {how}")
    box = accessor.bbox if accessor.bbox is not None else lonlat_bbox(geom)
    crs = accessor.crs
    epsg = int(crs[5:]) if isinstance(crs, str) and crs.upper().startswith("EPSG:") else None
    try:
        cols: dict[str, pa.Array] = {
            "id": pa.array([accessor.id], pa.string()),
            "datetime": pa.array([accessor.datetime], DATETIME_TYPE),
            "collection": pa.array([accessor.collection], pa.string()),
            "geometry": pa.array([shapely.to_wkb(geom)], pa.binary()),
            "bbox": pa.array(
                [dict(zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True))], BBOX_TYPE
            ),
            "assets": pa.array([{b: accessor.assets[b] for b in bands}], ASSETS_TYPE),
            "proj:epsg": pa.array([epsg], pa.int32()),
            "proj:code": pa.array([f"EPSG:{epsg}" if epsg else None], pa.string()),
            "crs": pa.array([crs], pa.string()),
            "eo:cloud_cover": pa.array([accessor.cloud_cover], pa.float64()),
        }
        for b in bands:
            meta = accessor.band_metadata[f"{b}{METADATA_SUFFIX}"]
            cols[f"{b}{METADATA_SUFFIX}"] = pa.array([meta], HEADER_TYPE)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError, TypeError, ValueError) as exc:
        raise ValidationError(f"record {accessor.id!r} cannot be read ({exc}): {how}") from None
    return Collection(pa.table(cols), name=accessor.id, data_source=accessor.data_source)
