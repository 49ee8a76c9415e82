"""tessellum: an index-first raster engine for Cloud-Optimized GeoTIFFs.

``import tessellum`` is light: heavy modules (GDAL, xarray, torch, FastAPI) load only
when the feature that needs them is used. Public names are resolved lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_getattr
from .errors import (
    DataFormatError,
    ExtractionError,
    ProtocolError,
    RasterUnsupportedError,
    TessellumError,
    ValidationError,
)

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    **dict.fromkeys(["configure", "get_settings", "settings_override"], ".config"),
    **dict.fromkeys(
        [
            "Catalog",
            "DatasetEntry",
            "default_catalog",
            "get_dataset",
            "list_datasets",
            "list_providers",
            "register_dataset",
        ],
        ".catalog",
    ),
    **dict.fromkeys(
        [
            "Collection",
            "RasterAccessor",
            "build_from_stac",
            "build_from_stac_async",
            "build_from_table",
            "build_from_table_async",
            "build_from_files",
            "build_from_files_async",
            "build_from_gti",
            "build_from_gti_async",
            "load",
        ],
        ".collection",
    ),
    **dict.fromkeys(
        ["extract", "extract_sync", "batch_extract", "batch_extract_sync"], ".attributes"
    ),
    **dict.fromkeys(
        [
            "extract_raster",
            "extract_raster_sync",
            "RasterResult",
            "build_mosaic",
            "build_mosaic_async",
            "build_gti_mosaic",
            "build_gti_mosaic_async",
            "build_zarr_multiscales",
            "open_mosaic",
            "mosaic_grid",
        ],
        ".mosaic",
    ),
    **dict.fromkeys(
        [
            "predict_mosaic",
            "vectorize_mosaic",
            "ModelRecipes",
            "build_and_predict_mosaic_recipe",
            "build_and_predict_mosaic_recipe_async",
        ],
        ".flow",
    ),
}

__all__ = [
    "DataFormatError",
    "ExtractionError",
    "ProtocolError",
    "RasterUnsupportedError",
    "TessellumError",
    "ValidationError",
    "__version__",
    *_LAZY,
]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    pass
