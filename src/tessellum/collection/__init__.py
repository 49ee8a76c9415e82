"""Collections: raster records with cached COG headers, as GeoParquet tables."""

from .accessor import RasterAccessor, RasterInfo
from .build import (
    build_from_files,
    build_from_files_async,
    build_from_gti,
    build_from_gti_async,
    build_from_records_async,
    build_from_stac,
    build_from_stac_async,
    build_from_table,
    build_from_table_async,
)
from .core import Collection, load
from .records import AssetRef, Record

__all__ = [
    "AssetRef",
    "Collection",
    "RasterAccessor",
    "RasterInfo",
    "Record",
    "build_from_files",
    "build_from_files_async",
    "build_from_gti",
    "build_from_gti_async",
    "build_from_records_async",
    "build_from_stac",
    "build_from_stac_async",
    "build_from_table",
    "build_from_table_async",
    "load",
]
