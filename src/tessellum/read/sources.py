"""From collection rows to :class:`BandSource` objects: headers decoded from Arrow once
per collection lineage (a collection and everything filtered from it), shared by every
call and every target that uses them."""

from __future__ import annotations

import datetime as dt
import threading
import weakref
from collections import OrderedDict
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


UNKNOWN = object()
"""What :meth:`SourceLineage.get` returns for a row it has not seen."""


class SourceLineage:
    """Band sources decoded for the tables of one collection and of every collection
    filtered from it (a filter keeps rows as they are, so a row's sources stay valid),
    at most ``max_entries`` of them, least recently used dropped first."""

    def __init__(self, max_entries: int = 8192) -> None:
        self.max_entries = max_entries
        self._sources: OrderedDict[tuple[Any, ...], BandSource | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Any:
        """The source (None: the row has no usable header), or :data:`UNKNOWN`."""
        with self._lock:
            if key not in self._sources:
                return UNKNOWN
            self._sources.move_to_end(key)
            return self._sources[key]

    def put(self, key: tuple[Any, ...], src: BandSource | None) -> None:
        with self._lock:
            self._sources[key] = src
            while len(self._sources) > self.max_entries:
                self._sources.popitem(last=False)


_lineages: dict[int, SourceLineage] = {}  # id(table) -> lineage, while the table lives
_lineages_lock = threading.Lock()


def track_lineage(table: pa.Table, parent: pa.Table | None = None) -> None:
    """Cache the band sources decoded for ``table`` across calls; with ``parent`` (whose
    rows ``table`` selects), share the parent's cache."""
    with _lineages_lock:
        lineage = _lineages.get(id(parent)) if parent is not None else None
        if lineage is None:
            lineage = _lineages.get(id(table)) or SourceLineage()
        if id(table) not in _lineages:
            weakref.finalize(table, _forget, id(table)).atexit = False
        _lineages[id(table)] = lineage


def _forget(key: int) -> None:
    with _lineages_lock:
        _lineages.pop(key, None)


def record_bands(table: pa.Table, bands: Sequence[str]) -> list[RecordBands]:
    """Sources for ``bands`` of every row; rows missing any requested band (or whose
    header failed) are skipped. Headers are decoded once per collection lineage
    (:func:`track_lineage`), else once per call."""
    from ..tiff import header_from_arrow

    if isinstance(bands, str):
        bands = [bands]
    if not bands or not all(isinstance(b, str) for b in bands):
        raise ValidationError(f"bands must be a list of one or more band names, got {bands!r}")
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
    lineage = _lineages.get(id(table)) or SourceLineage()
    keys = {
        b: [_source_key(rid, b, (a or {}).get(b)) for rid, a in zip(ids, assets, strict=True)]
        for b in bands
    }
    known = {b: [lineage.get(k) for k in keys[b]] for b in bands}
    headers: dict[tuple[str, str], Any] = {}  # (href, band) -> header, within this call
    for b in bands:
        unknown = [i for i, src in enumerate(known[b]) if src is UNKNOWN]
        if not unknown:
            continue
        col = table.column(band_column(b))
        metas = (
            col.take(pa.array(unknown)).to_pylist() if len(unknown) < len(ids) else col.to_pylist()
        )
        for i, meta in zip(unknown, metas, strict=True):
            asset = (assets[i] or {}).get(b)
            src = None
            if meta is not None and asset is not None and not meta.get("error"):
                hdr = headers.get((asset["href"], b))
                if hdr is None:
                    hdr = headers[asset["href"], b] = header_from_arrow(meta)
                src = BandSource(asset["href"], hdr, int(asset.get("band_index") or 0), ids[i], b)
            lineage.put(keys[b][i], src)
            known[b][i] = src
    out = []
    for i, rid in enumerate(ids):
        srcs = {b: known[b][i] for b in bands}
        if all(s is not None for s in srcs.values()):
            out.append(RecordBands(rid, whens[i], crss[i], srcs, i))  # type: ignore[arg-type]
    return out


def _source_key(rid: str, band: str, asset: dict[str, Any] | None) -> tuple[Any, ...]:
    if asset is None:
        return (rid, band, None, None)
    return (rid, band, asset.get("href"), asset.get("band_index"))
