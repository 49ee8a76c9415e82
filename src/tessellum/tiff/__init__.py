"""COG headers and tiles: parse every IFD once from a prefix, describe it as plain data
and Arrow, decode tiles with imagecodecs.

``tessellum.tiff.arrow`` (pyarrow) and ``tessellum.tiff.decode`` (imagecodecs) load on
first use of their names.
"""

from __future__ import annotations

from .._lazy import lazy_getattr
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


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
