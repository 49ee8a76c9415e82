"""Headers as Arrow: one band of one file per row, every property a column.

Columns are built with numpy/pyarrow in one pass over the headers (no per-row
``pa.scalar``), so 10,000 rows take a fraction of a second. ``crs_wkt``/``crs_projjson``
repeat per row and compress well when dictionary-encoded (Parquet does so by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import DataFormatError
from .gdalmeta import band_item
from .geokeys import GeoInfo
from .header import ImageLevel, TiffHeader

__all__ = [
    "HEADER_TYPE",
    "LEVEL_TYPE",
    "header_from_arrow",
    "headers_from_arrow",
    "headers_to_arrow",
]

_INTS = pa.list_(pa.int32())
#: LONG tag values (LercParameters, NewSubfileType) reach 2**32 - 1: int64, not int32
_LONGS = pa.list_(pa.int64())
_STRMAP = pa.map_(pa.string(), pa.string())

LEVEL_TYPE = pa.struct(
    [
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("tile_width", pa.int32()),
        ("tile_height", pa.int32()),
        ("tiled", pa.bool_()),
        ("samples_per_pixel", pa.int32()),
        ("bits_per_sample", _INTS),
        ("sample_format", pa.int32()),
        ("dtype", pa.string()),
        ("compression", pa.int32()),
        ("predictor", pa.int32()),
        ("photometric", pa.int32()),
        ("planar_config", pa.int32()),
        ("extra_samples", _INTS),
        ("jpeg_tables", pa.binary()),
        ("lerc_params", _LONGS),
        ("ycbcr_subsampling", _INTS),
        ("subfile_type", pa.int64()),
        ("tile_offsets", pa.large_list(pa.uint64())),
        ("tile_byte_counts", pa.large_list(pa.uint64())),
    ]
)
"""One image level (full resolution, overview or mask) with its tile index."""

GEOKEY_TYPE = pa.struct(
    [
        ("key", pa.uint16()),
        ("int_values", pa.list_(pa.int64())),
        ("double_values", pa.list_(pa.float64())),
        ("ascii", pa.string()),
    ]
)

_SCALAR_LEVEL_FIELDS = (
    "width",
    "height",
    "tile_width",
    "tile_height",
    "tiled",
    "samples_per_pixel",
    "sample_format",
    "dtype",
    "compression",
    "predictor",
    "photometric",
    "planar_config",
)
_LIST_LEVEL_FIELDS = ("bits_per_sample", "extra_samples", "lerc_params", "ycbcr_subsampling")

HEADER_TYPE = pa.struct(
    [
        ("url", pa.string()),
        ("band_index", pa.int32()),
        ("error", pa.string()),
        ("byte_order", pa.string()),
        ("bigtiff", pa.bool_()),
        ("file_size", pa.int64()),
        ("header_bytes_used", pa.int64()),
        # full-resolution properties, repeated from levels[0] for filtering
        *[(name, LEVEL_TYPE.field(name).type) for name in _SCALAR_LEVEL_FIELDS],
        *[(name, LEVEL_TYPE.field(name).type) for name in _LIST_LEVEL_FIELDS],
        ("jpeg_tables", pa.binary()),
        ("transform", pa.list_(pa.float64(), 6)),
        ("raster_type", pa.int8()),
        ("crs_epsg", pa.int32()),
        ("crs_wkt", pa.string()),
        ("crs_projjson", pa.string()),
        ("geokeys", pa.list_(GEOKEY_TYPE)),
        ("nodata", pa.string()),
        ("nodata_float", pa.float64()),
        ("scale", pa.float64()),
        ("offset", pa.float64()),
        ("description", pa.string()),
        ("metadata", _STRMAP),
        ("band_metadata", pa.list_(pa.struct([("band", pa.int32()), ("items", _STRMAP)]))),
        ("levels", pa.list_(LEVEL_TYPE)),
        ("mask_levels", pa.list_(LEVEL_TYPE)),
    ]
)
"""One band of one GeoTIFF. ``levels`` holds full resolution then overviews."""


def _levels_array(groups: Sequence[Sequence[ImageLevel] | None]) -> pa.Array:
    """``list<LEVEL_TYPE>`` with one entry per group (None -> null)."""
    flat = [lv for g in groups if g is not None for lv in g]
    n_tiles = np.fromiter((len(lv.tile_offsets) for lv in flat), np.int64, len(flat))
    tile_offs = np.zeros(len(flat) + 1, np.int64)
    np.cumsum(n_tiles, out=tile_offs[1:])

    def cat(name: str) -> np.ndarray:
        parts = [getattr(lv, name) for lv in flat]
        return (
            np.concatenate(parts).astype(np.uint64, copy=False) if parts else np.zeros(0, np.uint64)
        )

    children = [
        pa.array([getattr(lv, f) for lv in flat], LEVEL_TYPE.field(f).type)
        for f in ("width", "height", "tile_width", "tile_height", "tiled", "samples_per_pixel")
    ]
    children.append(pa.array([lv.bits_per_sample for lv in flat], _INTS))
    children += [
        pa.array([getattr(lv, f) for lv in flat], LEVEL_TYPE.field(f).type)
        for f in (
            "sample_format",
            "dtype",
            "compression",
            "predictor",
            "photometric",
            "planar_config",
        )
    ]
    children.append(pa.array([lv.extra_samples for lv in flat], _INTS))
    children.append(pa.array([lv.jpeg_tables for lv in flat], pa.binary()))
    children.append(pa.array([lv.lerc_params for lv in flat], _LONGS))
    children.append(pa.array([lv.ycbcr_subsampling for lv in flat], _INTS))
    children.append(
        pa.array([lv.subfile_type for lv in flat], LEVEL_TYPE.field("subfile_type").type)
    )
    for name in ("tile_offsets", "tile_byte_counts"):
        children.append(pa.LargeListArray.from_arrays(pa.array(tile_offs), pa.array(cat(name))))
    struct = pa.StructArray.from_arrays(children, fields=list(LEVEL_TYPE))
    counts = [len(g) if g is not None else 0 for g in groups]
    offsets = np.zeros(len(groups) + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    mask = pa.array([g is None for g in groups])
    return pa.ListArray.from_arrays(pa.array(offsets), struct, mask=mask)


def _geokeys_array(dicts: Sequence[Mapping[int, Any] | None]) -> pa.Array:
    """``list<GEOKEY_TYPE>``, built from flat columns (no nested Python objects)."""
    keys: list[int] = []
    ints: list[list[int] | None] = []
    doubles: list[list[float] | None] = []
    asciis: list[str | None] = []
    offsets = [0]
    for d in dicts:
        for key, value in (d or {}).items():
            keys.append(key)
            i = f = a = None
            if isinstance(value, str):
                a = value
            elif isinstance(value, float):
                f = [value]
            elif isinstance(value, int):
                i = [value]
            elif value and isinstance(value[0], float):
                f = list(value)
            else:
                i = list(value)
            ints.append(i)
            doubles.append(f)
            asciis.append(a)
        offsets.append(len(keys))
    struct = pa.StructArray.from_arrays(
        [
            pa.array(keys, pa.uint16()),
            pa.array(ints, pa.list_(pa.int64())),
            pa.array(doubles, pa.list_(pa.float64())),
            pa.array(asciis, pa.string()),
        ],
        fields=list(GEOKEY_TYPE),
    )
    mask = pa.array([d is None for d in dicts])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), struct, mask=mask)


def _nodata_float(h: TiffHeader) -> float | None:
    """The nodata value the pixels hold, as a float: parsed in the file's type (a
    float32 raster's "1e20" is 1.0000000200408773e20, not 1e20)."""
    value = h.nodata_value()
    return None if value is None else float(value)


def headers_to_arrow(
    headers: Sequence[TiffHeader | None],
    band_index: int | Sequence[int] = 0,
    errors: Sequence[str | None] | None = None,
    urls: Sequence[str | None] | None = None,
) -> pa.StructArray:
    """Build a :data:`HEADER_TYPE` array, one row per (header, band).

    A header Arrow cannot hold (a value beyond its column's type) becomes its row's
    error, naming the URL; the other rows are built as usual.

    Args:
        headers: parsed headers; None for assets that failed (their row keeps only
            ``url``, ``band_index`` and ``error``).
        band_index: the sample of the file each row describes (one int for all rows).
        errors: per-row error messages (null when ok).
        urls: per-row URLs for rows whose header is None.
    """
    n = len(headers)
    bands = [band_index] * n if isinstance(band_index, int) else list(band_index)
    errs = list(errors) if errors is not None else [None] * n
    if len(bands) != n or len(errs) != n:
        raise ValueError("band_index and errors must have one entry per header")
    try:  # one vectorized pass; per row only when it fails
        return _headers_to_arrow(headers, bands, errs, urls)
    except Exception as exc:  # ArrowInvalid (overflow), ValueError, TypeError...
        failed = exc
    hdrs, row_urls = list(headers), list(urls) if urls is not None else [None] * n
    for i, h in enumerate(headers):
        if h is None:
            continue
        try:
            _headers_to_arrow([h], [bands[i]], [errs[i]], None)
        except Exception as exc:
            hdrs[i], row_urls[i] = None, h.url
            errs[i] = f"header cannot be stored: {type(exc).__name__}: {exc} ({h.url})"
    if all(a is b for a, b in zip(hdrs, headers, strict=True)):
        raise failed  # no row fails alone: not one bad header
    return _headers_to_arrow(hdrs, bands, errs, row_urls)


def _headers_to_arrow(
    headers: Sequence[TiffHeader | None],
    bands: list[Any],
    errs: list[str | None],
    urls: Sequence[str | None] | None,
) -> pa.StructArray:
    n = len(headers)
    ok = [h for h in headers if h is not None]
    valid = np.array([h is not None for h in headers])

    def col(values: list[Any], typ: pa.DataType) -> pa.Array:
        # expand the values of valid rows to all rows (nulls for failed ones)
        if len(values) == n:
            return pa.array(values, typ)
        it = iter(values)
        return pa.array([next(it) if v else None for v in valid], typ)

    firsts = [h.levels[0] for h in ok]
    url_col = [
        h.url if h is not None else (urls[i] if urls is not None else None)
        for i, h in enumerate(headers)
    ]
    # the sample each row describes: a band without an index is the file's first sample
    okb = [b or 0 for h, b in zip(headers, bands, strict=True) if h is not None]
    columns: dict[str, pa.Array] = {
        "url": pa.array(url_col, pa.string()),
        "band_index": pa.array(bands, pa.int32()),
        "error": pa.array(errs, pa.string()),
        "byte_order": col([h.byte_order for h in ok], pa.string()),
        "bigtiff": col([h.bigtiff for h in ok], pa.bool_()),
        "file_size": col([h.file_size for h in ok], pa.int64()),
        "header_bytes_used": col([h.header_bytes_used for h in ok], pa.int64()),
    }
    for name in (*_SCALAR_LEVEL_FIELDS, *_LIST_LEVEL_FIELDS):
        columns[name] = col([getattr(lv, name) for lv in firsts], HEADER_TYPE.field(name).type)
    columns["jpeg_tables"] = col([lv.jpeg_tables for lv in firsts], pa.binary())
    transforms = [h.geo.transform for h in ok]
    columns["transform"] = col(transforms, HEADER_TYPE.field("transform").type)
    columns["raster_type"] = col([h.geo.raster_type for h in ok], pa.int8())
    columns["crs_epsg"] = col([h.geo.crs_epsg for h in ok], pa.int32())
    columns["crs_wkt"] = col([h.geo.crs_wkt for h in ok], pa.string())
    columns["crs_projjson"] = col([h.geo.crs_projjson for h in ok], pa.string())
    columns["geokeys"] = _geokeys_array([h.geo.geokeys if h is not None else None for h in headers])
    columns["nodata"] = col([h.nodata_raw for h in ok], pa.string())
    columns["nodata_float"] = col([_nodata_float(h) for h in ok], pa.float64())
    columns["scale"] = col([h.scale(b) for h, b in zip(ok, okb, strict=True)], pa.float64())
    columns["offset"] = col([h.offset(b) for h, b in zip(ok, okb, strict=True)], pa.float64())
    columns["description"] = col(
        [band_item(h.gdal_metadata, b, "DESCRIPTION") for h, b in zip(ok, okb, strict=True)],
        pa.string(),
    )
    columns["metadata"] = col(
        [list(h.gdal_metadata.get("dataset", {}).items()) for h in ok], _STRMAP
    )
    columns["band_metadata"] = col(
        [
            [
                {"band": k, "items": list(v.items())}
                for k, v in h.gdal_metadata.get("bands", {}).items()
            ]
            for h in ok
        ],
        HEADER_TYPE.field("band_metadata").type,
    )
    columns["levels"] = _levels_array([h.levels if h is not None else None for h in headers])
    columns["mask_levels"] = _levels_array(
        [h.mask_levels if h is not None else None for h in headers]
    )
    return pa.StructArray.from_arrays(
        [columns[f.name] for f in HEADER_TYPE], fields=list(HEADER_TYPE)
    )


def _level_from_py(d: Mapping[str, Any]) -> ImageLevel:
    def tup(v: Any) -> tuple[int, ...] | None:
        return None if v is None else tuple(int(x) for x in v)

    return ImageLevel(
        width=d["width"],
        height=d["height"],
        tile_width=d["tile_width"],
        tile_height=d["tile_height"],
        tiled=d["tiled"],
        samples_per_pixel=d["samples_per_pixel"],
        bits_per_sample=tup(d["bits_per_sample"]) or (),
        sample_format=d["sample_format"],
        dtype=d["dtype"],
        compression=d["compression"],
        predictor=d["predictor"],
        photometric=d["photometric"],
        planar_config=d["planar_config"],
        extra_samples=tup(d["extra_samples"]) or (),
        jpeg_tables=d["jpeg_tables"],
        lerc_params=tup(d["lerc_params"]),
        ycbcr_subsampling=tup(d["ycbcr_subsampling"]),
        tile_offsets=np.asarray(d["tile_offsets"], dtype=np.uint64),
        tile_byte_counts=np.asarray(d["tile_byte_counts"], dtype=np.uint64),
        subfile_type=d["subfile_type"],
    )


def _geokeys_from_py(rows: Sequence[Mapping[str, Any]] | None) -> dict[int, Any]:
    keys: dict[int, Any] = {}
    for r in rows or ():
        if r["ascii"] is not None:
            keys[r["key"]] = r["ascii"]
        elif r["double_values"] is not None:
            v = r["double_values"]
            keys[r["key"]] = v[0] if len(v) == 1 else tuple(v)
        elif r["int_values"] is not None:
            v = r["int_values"]
            keys[r["key"]] = v[0] if len(v) == 1 else tuple(v)
    return keys


def header_from_arrow(row: pa.StructScalar | Mapping[str, Any]) -> TiffHeader:
    """Rebuild the :class:`TiffHeader` stored in one :data:`HEADER_TYPE` row.

    Raises:
        DataFormatError: the row records a failed header (its ``error`` column is set).
    """
    d = row.as_py() if isinstance(row, pa.Scalar) else dict(row)
    if d.get("error") is not None or d.get("levels") is None:
        raise DataFormatError(f"no header: {d.get('error')}", url=d.get("url"))
    transform = d["transform"]
    geo = GeoInfo(
        transform=tuple(transform) if transform is not None else None,
        raster_type=d["raster_type"],
        crs_epsg=d["crs_epsg"],
        crs_wkt=d["crs_wkt"],
        crs_projjson=d["crs_projjson"],
        geokeys=_geokeys_from_py(d["geokeys"]),
    )
    meta = {
        "dataset": dict(d["metadata"] or []),
        "bands": {b["band"]: dict(b["items"] or []) for b in d["band_metadata"] or []},
    }
    return TiffHeader(
        url=d["url"],
        byte_order=d["byte_order"],
        bigtiff=d["bigtiff"],
        file_size=d["file_size"],
        levels=tuple(_level_from_py(lv) for lv in d["levels"]),
        mask_levels=tuple(_level_from_py(lv) for lv in d["mask_levels"] or []),
        geo=geo,
        gdal_metadata=meta,
        nodata_raw=d["nodata"],
        header_bytes_used=d["header_bytes_used"],
    )


def headers_from_arrow(array: pa.StructArray | pa.ChunkedArray) -> list[TiffHeader | None]:
    """Rebuild every row's header (None for rows with an error)."""
    out: list[TiffHeader | None] = []
    for row in array:
        if not row.is_valid or row["error"].is_valid:
            out.append(None)
        else:
            out.append(header_from_arrow(row))
    return out
