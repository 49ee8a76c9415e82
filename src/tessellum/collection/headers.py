"""Read every asset's COG header once (one speculative prefix read, rarely a second) and
assemble records + headers into the collection table."""

from __future__ import annotations

import asyncio
import functools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from .._progress import progress_bar
from ..errors import DataFormatError, TessellumError, TessellumWarning, ValidationError
from .records import Record
from .schema import ASSETS_TYPE, BBOX_TYPE, DATETIME_TYPE, METADATA_SUFFIX, band_column

DEFAULT_PREFIX = 65536


async def read_headers_async(
    hrefs: Sequence[str],
    *,
    prefix_size: int = DEFAULT_PREFIX,
    max_concurrent: int = 50,
    cloud_config: Any = None,
    signer: Any = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Parse the header of every distinct href; failures are returned as exceptions.

    Each href costs one prefix GET (a second one only when IFDs or tag arrays lie
    beyond the prefix); at most ``max_concurrent`` headers are in flight at once.
    """
    import dataclasses

    from ..store import open_store, read_prefix_async, read_range_async
    from ..tiff import read_header_async

    unique = list(dict.fromkeys(hrefs))
    sem = asyncio.Semaphore(max_concurrent)
    bar = progress_bar(len(unique), "headers", progress, unit="asset")
    out: dict[str, Any] = {}

    async def one(href: str) -> None:
        async with sem:
            try:
                url = await signer.sign(href) if signer is not None else href
                store, path = open_store(url, cloud_config=cloud_config)

                size: list[int] = []

                async def fetch(start: int, end: int) -> bytes:
                    if start == 0 and not size:  # the prefix: its response tells the size
                        data, total = await read_prefix_async(store, path, end, url=href)
                        size.append(total)
                        return data
                    return await read_range_async(store, path, start, end, url=href, clip=True)

                hdr = await read_header_async(
                    fetch,
                    href,
                    prefix_size=prefix_size,
                    object_size=lambda: size[0] if size else None,
                )
                if hdr.file_size is None and size:
                    hdr = dataclasses.replace(hdr, file_size=size[0])
                _check_not_truncated(hdr, href)
                _check_georeferenced(hdr, href)
                out[href] = hdr
            except TessellumError as exc:
                out[href] = exc
            except Exception as exc:  # a bad asset is recorded per row, never aborts a build
                out[href] = TessellumError(f"{href}: {type(exc).__name__}: {exc}")
            finally:
                bar.update(1)

    try:
        await asyncio.gather(*(one(h) for h in unique))
    finally:
        bar.close()
    return out


def _check_not_truncated(hdr: Any, href: str) -> None:
    """Raise ``DataFormatError`` when tile data lies beyond the end of the file (a
    truncated upload parses fine but fails at read time)."""
    if not hdr.file_size:
        return
    for lv in (*hdr.levels, *hdr.mask_levels):
        if len(lv.tile_offsets):
            end = int((lv.tile_offsets + lv.tile_byte_counts).max())
            if end > hdr.file_size:
                raise DataFormatError(
                    f"truncated file: tile data ends at byte {end}, the file has "
                    f"{hdr.file_size} bytes ({href})",
                    url=href,
                    offset=hdr.file_size,
                )


def _check_georeferenced(hdr: Any, href: str) -> None:
    """Raise ``DataFormatError`` when the file has no geotransform or no CRS: no read
    could place its pixels, so it is a row error, not a row that fails every read."""
    if hdr.geo.transform is None and hdr.geo.gcp_count:
        raise DataFormatError(
            f"georeferenced by {hdr.geo.gcp_count} ground control points (GCPs) only, "
            f"without a geotransform: not supported (warp it onto a grid first, e.g. "
            f"gdalwarp) ({href})",
            url=href,
        )
    if hdr.geo.transform is None:
        raise DataFormatError(
            f"not georeferenced: no geotransform (ModelTiepoint/ModelPixelScale or "
            f"ModelTransformation) ({href})",
            url=href,
        )
    if not (hdr.geo.crs_epsg or hdr.geo.crs_wkt):
        raise DataFormatError(f"not georeferenced: no CRS in its GeoKeys ({href})", url=href)


def records_to_table(
    records: Sequence[Record],
    headers: dict[str, Any],
    *,
    warn: bool = True,
    extra: pa.Table | None = None,
) -> pa.Table:
    """Assemble the collection table from records and their parsed headers.

    ``extra`` holds property columns with their own Arrow types, one row per record (a
    record table's other columns); records' ``properties`` are typed by inference. A
    property named like a column the collection owns (``crs``, ``collection``, a band's
    ``*_metadata`` ...) is kept under that name plus :data:`USER_SUFFIX`; ``year`` and
    ``month`` are derived from ``datetime`` only when no property has that name.
    """
    import shapely

    from ..geo.crs import crs_epsg, crs_to_code
    from ..geo.geometry import lonlat_bbox
    from ..tiff import headers_to_arrow

    bands = list(dict.fromkeys(b for r in records for b in r.assets))
    n = len(records)
    epsg_of = functools.lru_cache(maxsize=None)(
        lambda code: int(code[5:]) if code.startswith("EPSG:") else crs_epsg(code)
    )
    geoms: list[Any] = []
    crs_codes: list[str | None] = []
    epsgs: list[int | None] = []
    pending: dict[str, list[tuple[int, Any]]] = {}  # CRS -> (row, header) needing a footprint
    for i, r in enumerate(records):
        hdr = _first_header(r, headers)
        code = None
        if hdr is not None and (hdr.geo.crs_epsg or hdr.geo.crs_wkt):
            code = f"EPSG:{hdr.geo.crs_epsg}" if hdr.geo.crs_epsg else crs_to_code(hdr.geo.crs_wkt)
        elif r.proj_code:
            code = crs_to_code(r.proj_code)
        crs_codes.append(code)
        epsgs.append(epsg_of(code) if code else None)
        geoms.append(r.geometry)
        if r.geometry is None and hdr is not None and code is not None:
            pending.setdefault(code, []).append((i, hdr))
    headers = dict(headers)  # a file whose footprint fails becomes an error below
    for code, rows in pending.items():  # one vectorized transform per CRS
        for (i, _), fp in zip(rows, _footprints(rows, code, headers), strict=True):
            geoms[i] = fp

    bbox_rows = [lonlat_bbox(g) if g is not None else (None,) * 4 for g in geoms]
    wkb = [shapely.to_wkb(g) if g is not None else None for g in geoms]
    when = [r.datetime for r in records]
    cols: dict[str, pa.Array] = {
        "id": pa.array([r.id for r in records], pa.string()),
        "datetime": pa.array(when, DATETIME_TYPE),
        "collection": pa.array([r.collection for r in records], pa.string()),
        "geometry": pa.array(wkb, pa.binary()),
        "bbox": pa.array(
            [
                None
                if b[0] is None
                else dict(zip(("xmin", "ymin", "xmax", "ymax"), b, strict=True))
                for b in bbox_rows
            ],
            BBOX_TYPE,
        ),
        "assets": pa.array(
            [
                [
                    (
                        k,
                        {
                            "href": a.href,
                            "asset_key": a.asset_key,
                            "band_index": a.band_index,
                            "type": a.type,
                        },
                    )
                    for k, a in r.assets.items()
                ]
                for r in records
            ],
            ASSETS_TYPE,
        ),
        "proj:epsg": pa.array(epsgs, pa.int32()),
        "proj:code": pa.array([f"EPSG:{e}" if e else None for e in epsgs], pa.string()),
        "crs": pa.array(crs_codes, pa.string()),
    }
    owned = set(cols) | {band_column(b) for b in bands}
    for key in _property_keys(records):
        values = [r.properties.get(key) for r in records]
        try:
            arr = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            arr = pa.array([None if v is None else str(v) for v in values], pa.string())
        cols[_property_name(key, owned, cols)] = arr
    if extra is not None:
        if extra.num_rows != n:
            raise ValueError(f"extra has {extra.num_rows} rows for {n} records")
        for key, column in zip(extra.column_names, extra.columns, strict=True):
            cols[_property_name(key, owned, cols)] = column
    failures: list[tuple[str, str, str]] = []
    for band in bands:
        hdrs, idx, errs = [], [], []
        # a sample beyond a file's samples is a band that record lacks (a 3-band NAIP
        # tile has no N), as a missing asset is; in no record at all, a bad index
        outside: list[tuple[str, str, str]] = []
        for r in records:
            ref = r.assets.get(band)
            res = headers.get(ref.href) if ref else None
            if ref is None:
                hdrs.append(None), idx.append(None), errs.append(f"band {band!r} missing in record")
            elif isinstance(res, BaseException) or res is None:
                msg = str(res) if res is not None else "header not read"
                hdrs.append(None), idx.append(ref.band_index), errs.append(msg)
                failures.append((r.id, band, msg))
            elif (msg := _sample_error(ref.band_index, res)) is not None:
                hdrs.append(None), idx.append(ref.band_index), errs.append(msg)
                outside.append((r.id, band, msg))
            else:
                hdrs.append(res), idx.append(ref.band_index), errs.append(None)
        if outside and all(h is None for h in hdrs):
            failures.extend(outside)
        cols[band_column(band)] = headers_to_arrow(hdrs, band_index=idx, errors=errs)
    # partition helpers, derived unless a property has the name (its values are kept)
    if "year" not in cols:
        cols["year"] = pa.array([w.year if w else None for w in when], pa.int16())
    if "month" not in cols:
        cols["month"] = pa.array([w.month if w else None for w in when], pa.int8())
    table = pa.table(cols)
    if warn and failures:
        shown = "; ".join(f"{i}/{b}: {m}" for i, b, m in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        warnings.warn(
            f"{len(failures)} of {n * max(len(bands), 1)} band assets failed: {shown}{more}. "
            "They are kept with an error in their header column; drop them with Collection.valid().",
            TessellumWarning,
            stacklevel=3,
        )
    return table


def _footprints(rows: list[tuple[int, Any]], code: str, headers: dict[str, Any]) -> list[Any]:
    """The lon/lat footprints of ``rows`` (same CRS ``code``) in one transform; when one
    cannot be transformed, that file's header becomes its error (None footprint) and
    the others are kept."""
    from ..geo.geometry import footprints_lonlat

    def fps(hs: list[Any]) -> list[Any]:
        widths, heights = [h.levels[0].width for h in hs], [h.levels[0].height for h in hs]
        return footprints_lonlat([h.geo.transform for h in hs], widths, heights, code)

    try:
        return fps([h for _, h in rows])
    except ValidationError:
        out = []
        for _, h in rows:
            try:
                out += fps([h])
            except ValidationError as exc:
                href = next(k for k, v in headers.items() if v is h)
                headers[href] = DataFormatError(f"{exc} ({code}; {href})", url=href)
                out.append(None)
        return out


def _sample_error(band_index: int | None, header: Any) -> str | None:
    """Why ``band_index`` cannot be read from ``header``'s file (None: it can)."""
    samples = header.levels[0].samples_per_pixel
    i = band_index or 0
    if 0 <= i < samples:
        return None
    return f"band index {i} is outside the file's {samples} sample(s) (0-{samples - 1})"


def _first_header(r: Record, headers: dict[str, Any]):
    for ref in r.assets.values():
        h = headers.get(ref.href)
        if h is not None and not isinstance(h, BaseException):
            return h
    return None


USER_SUFFIX = "_user"


def _property_name(key: str, owned: set[str], taken: Mapping[str, Any]) -> str:
    """``key``, or ``key`` + USER_SUFFIX (repeated until free) when the collection owns
    that name or it ends like a band column (it would read as a band)."""
    name = key
    while name in owned or name in taken or name.endswith(METADATA_SUFFIX):
        name += USER_SUFFIX
    return name


def _property_keys(records: Sequence[Record]) -> list[str]:
    return list(dict.fromkeys(k for r in records for k in r.properties))
