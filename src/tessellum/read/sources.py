"""From collection rows to :class:`BandSource` objects (headers decoded from Arrow once
per call and shared by every target that uses them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ..collection.schema import band_column
from ..errors import ValidationError
from .engine import BandSource


@dataclass(frozen=True)
class RecordBands:
    """One record with its bands' sources."""

    id: str
    datetime: dt.datetime | None
    crs: str | None
    bands: dict[str, BandSource]
    row: int


def record_bands(table: pa.Table, bands: Sequence[str]) -> list[RecordBands]:
    """Sources for ``bands`` of every row; rows missing any requested band (or whose
    header failed) are skipped."""
    from ..tiff import header_from_arrow

    missing = [b for b in bands if band_column(b) not in table.column_names]
    if missing:
        avail = [c[: -len("_metadata")] for c in table.column_names if c.endswith("_metadata")]
        raise ValidationError(f"bands {missing} are not in the collection (available: {avail})")
    ids = table.column("id").to_pylist()
    whens = (
        table.column("datetime").to_pylist()
        if "datetime" in table.column_names
        else [None] * len(ids)
    )
    crss = table.column("crs").to_pylist() if "crs" in table.column_names else [None] * len(ids)
    assets = table.column("assets").to_pylist(maps_as_pydicts="strict")
    metas = {b: table.column(band_column(b)).to_pylist() for b in bands}
    cache: dict[tuple[str, str], Any] = {}
    out = []
    for i, rid in enumerate(ids):
        srcs: dict[str, BandSource] = {}
        for b in bands:
            meta, asset = metas[b][i], (assets[i] or {}).get(b)
            if meta is None or asset is None or meta.get("error"):
                break
            key = (asset["href"], b)
            hdr = cache.get(key)
            if hdr is None:
                hdr = cache[key] = header_from_arrow(meta)
            srcs[b] = BandSource(asset["href"], hdr, int(asset.get("band_index") or 0), rid, b)
        else:
            out.append(RecordBands(rid, whens[i], crss[i], srcs, i))
    return out
