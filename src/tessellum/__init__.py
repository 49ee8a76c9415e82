"""tessellum: an index-first raster engine for Cloud-Optimized GeoTIFFs.

``import tessellum`` is light: heavy modules (GDAL, xarray, torch, FastAPI) load only
when the feature that needs them is used. Public names are resolved lazily.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
_LAZY: dict[str, str] = {}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tessellum' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    pass
