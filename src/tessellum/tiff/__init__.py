"""COG headers and tiles: parse every IFD once from a prefix, describe it as plain data
and Arrow, decode tiles with imagecodecs.

``tessellum.tiff.arrow`` (pyarrow) and ``tessellum.tiff.decode`` (imagecodecs) load on
first use of their names.
"""

from __future__ import annotations

import importlib
from typing import Any

from .gdalmeta import parse_nodata
from .geokeys import GeoInfo
from .header import ImageLevel, TiffHeader, parse_header, read_header_async, sample_dtype
from .source import BytesSource, NeedBytes

_LAZY = {
    "HEADER_TYPE": ".arrow",
    "header_from_arrow": ".arrow",
    "headers_from_arrow": ".arrow",
    "headers_to_arrow": ".arrow",
    "decode_tile": ".decode",
}

__all__ = [
    "BytesSource",
    "GeoInfo",
    "ImageLevel",
    "NeedBytes",
    "TiffHeader",
    "parse_header",
    "parse_nodata",
    "read_header_async",
    "sample_dtype",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tessellum.tiff' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
