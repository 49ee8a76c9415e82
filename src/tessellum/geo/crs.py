"""CRS parsing with caching. Any CRS pyproj understands works, not only EPSG codes."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ..errors import CRSError

CRS84 = "OGC:CRS84"


@lru_cache(maxsize=512)
def _parse(text: str):
    from pyproj import CRS
    from pyproj.exceptions import CRSError as PyprojCRSError

    try:
        return CRS.from_user_input(text)
    except PyprojCRSError as exc:
        raise CRSError(f"cannot parse CRS {text!r}: {exc}") from None


def to_crs(value: Any):
    """Return a ``pyproj.CRS`` for an EPSG int, ``"EPSG:xxxx"``, WKT, PROJJSON, PROJ string,
    a pyproj/rasterio CRS or anything with ``to_wkt()``.

    Raises:
        CRSError: naming the value when it cannot be parsed.
    """
    from pyproj import CRS

    if value is None:
        raise CRSError("CRS is None")
    if isinstance(value, CRS):
        return value
    if isinstance(value, int):
        return _parse(f"EPSG:{value}")
    if isinstance(value, str):
        return _parse(value.strip())
    if isinstance(value, dict):
        import json

        return _parse(json.dumps(value))
    if hasattr(value, "to_wkt"):
        return _parse(value.to_wkt())
    raise CRSError(f"cannot interpret {value!r} as a CRS")


@lru_cache(maxsize=512)
def _epsg_of_wkt(wkt: str) -> int | None:
    return _parse(wkt).to_epsg(min_confidence=100)


def crs_epsg(value: Any) -> int | None:
    """The EPSG code of a CRS when it has an exact one, else None (user-defined CRSs)."""
    crs = to_crs(value)
    return _epsg_of_wkt(crs.to_wkt())


def crs_to_code(value: Any) -> str:
    """A short, lossless string for a CRS: ``"EPSG:32612"`` when it has an EPSG code,
    ``"OGC:CRS84"`` for CRS84, else its WKT2 (user-defined CRSs keep their definition)."""
    if isinstance(value, str | int):
        return _code_of_text(value)
    return _code_of(to_crs(value))


@lru_cache(maxsize=1024)
def _code_of_text(value: str | int) -> str:
    if isinstance(value, str) and value.startswith("EPSG:") and value[5:].isdigit():
        return value  # already canonical: skip the WKT round trip on hot paths
    return _code_of(to_crs(value))


def _code_of(crs: Any) -> str:
    epsg = _epsg_of_wkt(crs.to_wkt())
    if epsg is not None:
        return f"EPSG:{epsg}"
    auth = crs.to_authority(min_confidence=100)
    if auth is not None:
        return f"{auth[0]}:{auth[1]}"
    return crs.to_wkt()


def is_geographic(value: Any) -> bool:
    """True for a geographic (lon/lat) CRS."""
    return bool(to_crs(value).is_geographic)


@lru_cache(maxsize=256)
def _transformer(src_wkt: str, dst_wkt: str):
    from pyproj import Transformer

    return Transformer.from_crs(_parse(src_wkt), _parse(dst_wkt), always_xy=True)


def transformer(src: Any, dst: Any):
    """A cached always-xy ``pyproj.Transformer`` between two CRSs."""
    return _transformer(to_crs(src).to_wkt(), to_crs(dst).to_wkt())
