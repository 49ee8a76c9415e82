"""The collection table's columns and GeoParquet 1.1 metadata.

A collection is an Arrow table, one row per raster record:

- ``id`` (string), ``datetime`` (timestamp[us, UTC]), ``collection`` (string)
- ``geometry`` (WKB footprint in OGC:CRS84, split at the antimeridian) and ``bbox``
  (struct xmin/ymin/xmax/ymax, the GeoParquet 1.1 covering; xmin > xmax crosses ±180)
- ``assets``: map band code -> struct(href, asset_key, band_index, type)
- ``proj:epsg`` (int32, null for user-defined CRSs), ``proj:code``, ``crs`` (EPSG code or WKT2)
- flattened scalar STAC properties (``eo:cloud_cover``, ``platform``, ...)
- ``{band}_metadata``: one parsed COG header struct per band (see ``tessellum.tiff.arrow``)
- ``year``, ``month``: partition columns on disk, derived from ``datetime`` unless a
  record table brings its own (then kept, and the export is not partitioned)
"""

from __future__ import annotations

import json

import pyarrow as pa

SCHEMA_VERSION = "1"
METADATA_SUFFIX = "_metadata"
CORE_COLUMNS = (
    "id",
    "datetime",
    "collection",
    "geometry",
    "bbox",
    "assets",
    "proj:epsg",
    "proj:code",
    "crs",
)
PARTITION_COLUMNS = ("year", "month")

BBOX_TYPE = pa.struct(
    [("xmin", pa.float64()), ("ymin", pa.float64()), ("xmax", pa.float64()), ("ymax", pa.float64())]
)
ASSET_TYPE = pa.struct(
    [
        ("href", pa.string()),
        ("asset_key", pa.string()),
        ("band_index", pa.int32()),
        ("type", pa.string()),
    ]
)
ASSETS_TYPE = pa.map_(pa.string(), ASSET_TYPE)
DATETIME_TYPE = pa.timestamp("us", tz="UTC")


def band_column(band: str) -> str:
    """Column holding the COG header struct of ``band``."""
    return f"{band}{METADATA_SUFFIX}"


def band_names(schema: pa.Schema) -> list[str]:
    """Band codes present in a collection schema, in column order."""
    return [n[: -len(METADATA_SUFFIX)] for n in schema.names if n.endswith(METADATA_SUFFIX)]


def geoparquet_metadata(table: pa.Table) -> bytes:
    """GeoParquet 1.1 ``geo`` metadata for the footprint column with its bbox covering."""
    import numpy as np
    import shapely

    types: list[str] = []
    bbox = [-180.0, -90.0, 180.0, 90.0]
    if table.num_rows:
        geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
        types = sorted({t for t in shapely.get_type_id(geoms).tolist() if t >= 0})
        names = {
            3: "Polygon",
            6: "MultiPolygon",
            0: "Point",
            1: "LineString",
            5: "MultiLineString",
            4: "MultiPoint",
        }
        types = [names.get(t, "GeometryCollection") for t in types]
        b = shapely.total_bounds(geoms)
        if np.all(np.isfinite(b)):
            bbox = [float(v) for v in b]
    meta = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {
            "geometry": {
                "encoding": "WKB",
                "geometry_types": types,
                "crs": _crs84_projjson(),
                "bbox": bbox,
                "covering": {
                    "bbox": {
                        "xmin": ["bbox", "xmin"],
                        "ymin": ["bbox", "ymin"],
                        "xmax": ["bbox", "xmax"],
                        "ymax": ["bbox", "ymax"],
                    }
                },
            }
        },
    }
    return json.dumps(meta).encode()


def _crs84_projjson() -> dict:
    from ..geo.crs import to_crs

    return json.loads(to_crs("OGC:CRS84").to_json())
