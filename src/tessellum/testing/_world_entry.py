"""Building blocks of the world spec: per-file defaults and GDAL/MGRS grid helpers."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["cog_overview_factors", "entry", "mgrs_square"]

_DEFAULTS: dict[str, Any] = {
    "driver": "COG",
    "count": 1,
    "blocksize": 512,
    "compression": "DEFLATE",
    "predictor": 1,
    "photometric": "MINISBLACK",
    "interleave": "BAND",
    "nodata": None,
    "overviews": [],
    "resampling": "NEAREST",
    "bigtiff": False,
    "byteorder": "<",
    "sparse": False,
    "nbits": None,
    "corrupt": False,
    "area_or_point": "Area",
    "mask": False,
    "scale": None,
    "offset": None,
    "quality": None,
    "rows_per_strip": None,
}


def cog_overview_factors(width: int, height: int, blocksize: int) -> list[int]:
    """Overview factors GDAL's COG driver makes by default: halve until within one block."""
    factors: list[int] = []
    w, h, f = width, height, 1
    while w > blocksize or h > blocksize:
        f *= 2
        w, h = math.ceil(width / f), math.ceil(height / f)
        factors.append(f)
    return factors


def mgrs_square(zone: int, easting: float, northing: float, band: str = "T") -> str:
    """MGRS 100 km grid-square id (e.g. ``"12TTM"``) of a northern-hemisphere UTM point."""
    zset = zone % 6 or 6
    cols = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")[(zset - 1) % 3]
    rows = "ABCDEFGHJKLMNPQRSTUV"
    col = cols[int(easting // 100_000) - 1]
    row = rows[(int(northing // 100_000) + (5 if zset % 2 == 0 else 0)) % 20]
    return f"{zone}{band}{col}{row}"


def entry(
    key: str,
    relpath: str,
    dataset: str,
    item_id: str | None,
    asset_key: str,
    content: dict[str, Any],
    **spec: Any,
) -> dict[str, Any]:
    """One file entry: identity, content recipe and full layout (defaults filled in)."""
    full = dict(_DEFAULTS)
    full.update(spec)
    if full["driver"] == "COG" and "overviews" not in spec:
        full["overviews"] = cog_overview_factors(full["width"], full["height"], full["blocksize"])
    full["transform"] = [float(v) for v in full["transform"]]
    return {
        "key": key,
        "relpath": relpath,
        "dataset": dataset,
        "item_id": item_id,
        "asset_key": asset_key,
        "content": content,
        "spec": full,
    }
