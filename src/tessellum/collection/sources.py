"""Turn record tables, file listings and tile indexes into :class:`Record` objects."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import TessellumError, ValidationError
from .dates import parse_datetime
from .records import AssetRef, Record


def to_arrow(table: Any):
    import pyarrow as pa

    if isinstance(table, str | os.PathLike):
        text = os.fspath(table)
        if isinstance(text, str) and "://" in text and not text.startswith("file://"):
            return _remote_table(text)
        p = Path(text.removeprefix("file://") if isinstance(text, str) else text)
        if not p.exists():
            raise ValidationError(f"no record table at {str(table)!r}")
        if p.suffix.lower() in (".parquet", ".geoparquet") or p.is_dir():
            import pyarrow.parquet as pq

            return _geoparquet_to_lonlat(_geoarrow_to_wkb(pq.read_table(p)))
        return to_arrow(read_vector_table(p))
    if isinstance(table, pa.Table):
        return _geoparquet_to_lonlat(_geoarrow_to_wkb(table))
    if hasattr(table, "geometry") and hasattr(table, "to_wkb"):  # GeoDataFrame
        if table.crs is not None and table.crs.to_string() not in ("OGC:CRS84", "EPSG:4326"):
            table = table.to_crs("OGC:CRS84")  # footprints are stored in lon/lat
        df = _named_index_as_columns(table.to_wkb())
        return pa.Table.from_pandas(df, preserve_index=False)
    if hasattr(table, "columns") and hasattr(table, "to_dict"):  # pandas
        try:
            return pa.Table.from_pandas(_named_index_as_columns(table), preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # e.g. a column of mixed types
            raise ValidationError(f"cannot read the record table: {exc}") from None
    if hasattr(table, "__arrow_c_stream__"):
        return _geoparquet_to_lonlat(_geoarrow_to_wkb(pa.table(table)))
    raise ValidationError(f"cannot read a record table from {type(table).__name__}")


def _remote_table(url: str) -> Any:
    """A Parquet/GeoParquet record table at a URL (``https://``, ``s3://`` ...), read
    whole through the store layer (``Path`` would make ``s3:/b/k`` of it).

    Raises:
        ValidationError: for a URL that does not name a Parquet file.
        TessellumError: naming the URL when it cannot be read.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..store import read_url

    if not url.split("?")[0].lower().endswith((".parquet", ".geoparquet")):
        raise ValidationError(
            f"a record table at a URL must be a Parquet or GeoParquet file, got {url!r}"
        )
    data = read_url(url)
    try:
        table = pq.read_table(pa.BufferReader(bytes(data)))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValidationError(f"cannot read the record table at {url}: {exc}") from None
    return _geoparquet_to_lonlat(_geoarrow_to_wkb(table))


def _named_index_as_columns(df: Any) -> Any:
    """A DataFrame whose named index levels (``df.set_index("id")``) are columns again:
    they are data (ids, dates), not row numbers."""
    names = [n for n in getattr(df.index, "names", []) if n is not None]
    if not names:
        return df
    clash = [n for n in names if n in df.columns]
    if clash:
        raise ValidationError(f"the record table has {clash} both as index and as columns")
    return df.reset_index(level=names)


def _geoarrow_to_wkb(table: Any) -> Any:
    """``table`` with its GeoArrow geometry columns (``geoarrow.wkb``, ``geoarrow.polygon``
    ..., e.g. ``GeoDataFrame.to_arrow()``) as plain WKB in lon/lat: their CRS (the
    extension metadata's) is applied as a GeoDataFrame's is."""
    import json

    import pyarrow as pa

    def geoarrow(field: Any) -> bool:
        name = getattr(field.type, "extension_name", None) or (field.metadata or {}).get(
            b"ARROW:extension:name", b""
        ).decode(errors="replace")
        return str(name).startswith("geoarrow.")

    if not any(geoarrow(f) for f in table.schema):
        return table
    import geoarrow.pyarrow as ga

    # through the C stream again: the registered GeoArrow types replace plain fields
    # that only carry the extension's name in their metadata
    table = pa.RecordBatchReader.from_stream(table).read_all()
    for i, field in enumerate(table.schema):
        if not geoarrow(field):
            continue
        wkb = ga.as_wkb(table.column(field.name))
        crs = getattr(wkb.type, "crs", None)
        crs_json = json.loads(crs.to_json()) if crs is not None else None
        values = wkb.combine_chunks().storage.to_numpy(zero_copy_only=False)
        column = pa.array(values, pa.binary())
        table = table.set_column(i, pa.field(field.name, pa.binary()), column)
        if crs_json is not None:  # as GeoParquet metadata: transformed to lon/lat below
            geo = json.loads((table.schema.metadata or {}).get(b"geo", b"{}") or b"{}")
            geo.setdefault("columns", {})[field.name] = {"encoding": "WKB", "crs": crs_json}
            meta = {**(table.schema.metadata or {}), b"geo": json.dumps(geo).encode()}
            table = table.replace_schema_metadata(meta)
    return table


def _geoparquet_to_lonlat(table: Any) -> Any:
    """``table`` with its WKB geometry columns in lon/lat: a column whose GeoParquet
    ``geo`` metadata gives another CRS (a GeoParquet file in UTM) is transformed, as a
    GeoDataFrame in that CRS is (footprints are stored in OGC:CRS84)."""
    import json

    import numpy as np
    import pyarrow as pa
    import shapely

    from ..geo.crs import CRS84, crs_epsg, to_crs, transformer

    raw = (table.schema.metadata or {}).get(b"geo")
    try:
        geo = json.loads(raw) if raw else {}
        columns = geo.get("columns") or {}
    except (ValueError, AttributeError):
        return table
    changed = False
    for name, spec in columns.items():
        # no "crs" key means OGC:CRS84, a null one an unknown CRS (left as it is)
        if name not in table.column_names or not isinstance(spec, dict):
            continue
        crs = spec.get("crs")
        if crs is None or str(spec.get("encoding", "WKB")).upper() != "WKB":
            continue
        try:
            if to_crs(crs).equals(to_crs(CRS84)) or crs_epsg(crs) == 4326:
                continue
            t = transformer(crs, CRS84)
        except TessellumError as exc:
            raise ValidationError(f"GeoParquet column {name!r}: {exc}") from None
        geoms = shapely.from_wkb(table.column(name).to_numpy(zero_copy_only=False))
        xs, ys = t.transform(*shapely.get_coordinates(geoms).T)
        lonlat = shapely.set_coordinates(geoms.copy(), np.column_stack([xs, ys]))
        column = pa.array(shapely.to_wkb(lonlat), pa.binary())
        table = table.set_column(table.column_names.index(name), name, column)
        # the metadata now says CRS84 (no "crs" key), so a second read does not transform
        spec.pop("crs"), spec.pop("bbox", None)
        changed = True
    if changed:
        meta = {**table.schema.metadata, b"geo": json.dumps(geo).encode()}
        table = table.replace_schema_metadata(meta)
    return table


# the builders' default column names: used when the table has them, else ignored
_OPTIONAL_COLUMNS = {
    "id_column": "id",
    "datetime_column": "datetime",
    "geometry_column": "geometry",
}


def records_from_table(
    table: Any,
    *,
    href_column: str | None,
    assets_column: str | None,
    id_column: str | None,
    datetime_column: str | None,
    geometry_column: str | None,
    band: str,
    band_index_map: Mapping[str, int] | None,
    collection: str | None,
    properties: bool = True,
) -> list[Record]:
    """Records from a table with an href column (one raster per row) or an assets column,
    one per row in row order. With ``properties=False`` the other columns are left out
    of the records (the caller carries them with their Arrow types, see
    :func:`property_columns`)."""
    import shapely

    t = to_arrow(table)
    cols = t.column_names
    if assets_column is None and (href_column is None or href_column not in cols):
        raise ValidationError(
            f"record table needs an href column ({href_column!r}) or assets_column; columns: {cols}"
        )
    if assets_column is not None and assets_column not in cols:
        raise ValidationError(
            f"record table has no assets column {assets_column!r}; columns: {cols}"
        )
    named = {"id_column": id_column, "datetime_column": datetime_column,
             "geometry_column": geometry_column}  # fmt: skip
    for arg, column in named.items():
        # a default name ("id", ...) is optional; a column the caller named must exist
        if column is not None and column not in cols and column != _OPTIONAL_COLUMNS[arg]:
            raise ValidationError(f"record table has no {arg} {column!r}; columns: {cols}")
    rows = t.to_pylist(maps_as_pydicts="strict") if hasattr(t, "to_pylist") else list(t)
    skip = _consumed(href_column, assets_column, id_column, datetime_column, geometry_column,
                     collection)  # fmt: skip
    out = []
    for i, row in enumerate(rows):
        rid = (
            str(row[id_column])
            if id_column and id_column in row and row[id_column] is not None
            else str(i)
        )
        if assets_column is not None:
            assets = {}
            value = row[assets_column] or {}
            if not isinstance(value, Mapping):
                raise ValidationError(
                    f"row {rid!r}: {assets_column!r} must map bands to hrefs or asset dicts "
                    f"(with an 'href'), got {type(value).__name__}"
                )
            for b, a in value.items():
                if isinstance(a, str):
                    assets[b] = AssetRef(a, b)
                elif isinstance(a, Mapping) and isinstance(a.get("href"), str):
                    assets[b] = AssetRef(
                        a["href"], a.get("asset_key") or b, a.get("band_index"), a.get("type")
                    )
                else:
                    raise ValidationError(
                        f"row {rid!r}: asset {b!r} of {assets_column!r} must be an href or a "
                        f"dict with an 'href', got {a!r}"
                    )
        else:
            href = row[href_column]
            if not href or not isinstance(href, str):
                raise ValidationError(
                    f"row {rid!r}: {href_column!r} must be a non-empty path or URL, got {href!r}"
                )
            if band_index_map:
                assets = {b: AssetRef(href, band, int(ix)) for b, ix in band_index_map.items()}
            else:
                assets = {band: AssetRef(href, band)}
        geom = None
        if geometry_column and geometry_column in row and row[geometry_column] is not None:
            g = row[geometry_column]
            try:
                geom = (
                    shapely.from_wkb(g)
                    if isinstance(g, bytes)
                    else shapely.from_wkt(g)
                    if isinstance(g, str)
                    else g
                )
            except shapely.errors.GEOSException as exc:
                raise ValidationError(f"row {rid!r}: {geometry_column!r}: {exc}") from None
            if not isinstance(geom, shapely.Geometry):
                raise ValidationError(
                    f"row {rid!r}: {geometry_column!r} must be WKB, WKT or a geometry, got {g!r}"
                )
            geom = _lonlat_footprint(geom, rid, geometry_column)
        when = row.get(datetime_column) if datetime_column else None
        out.append(
            Record(
                id=rid,
                assets=assets,
                datetime=parse_datetime(when, name=f"row {rid} datetime")
                if when is not None
                else None,
                collection=collection or row.get("collection"),
                geometry=geom,
                properties={k: v for k, v in row.items() if k not in skip and _scalar(v)}
                if properties
                else {},
            )
        )
    return out


def _lonlat_footprint(geom: Any, rid: str, column: str) -> Any:
    """``geom`` as a lon/lat footprint, split at ±180 when written with longitudes past
    it (179.5 to 180.5). Coordinates that are not lon/lat degrees (a GeoDataFrame
    without .crs, WKB in metres) are an error, not footprints in the wrong place."""
    from ..geo.geometry import split_at_antimeridian

    if geom.is_empty:
        return geom
    w, s, e, n = geom.bounds
    tol = 1e-6
    if not (w >= -540 and e <= 540 and e - w <= 360 + tol and -90 - tol <= s and n <= 90 + tol):
        raise ValidationError(
            f"row {rid!r}: {column!r} bounds ({w:g}, {s:g}, {e:g}, {n:g}) are not lon/lat "
            "degrees; give footprints in OGC:CRS84, or a GeoDataFrame / GeoParquet file "
            "that states its CRS"
        )
    return split_at_antimeridian(geom) if w < -180 or e > 180 else geom


def _consumed(
    href_column: str | None,
    assets_column: str | None,
    id_column: str | None,
    datetime_column: str | None,
    geometry_column: str | None,
    collection: str | None,
) -> set[str | None]:
    """Columns whose values become the record itself (not properties)."""
    out = {href_column, assets_column, id_column, datetime_column, geometry_column}
    if collection is None:
        out.add("collection")  # the record's collection comes from it
    return out


def property_columns(table: Any, **columns: Any) -> Any:
    """The columns of an Arrow ``table`` (see :func:`records_from_table`) that are not
    consumed into the records, with their Arrow types; ``columns`` are the
    ``href_column ... geometry_column`` and ``collection`` arguments."""
    skip = _consumed(**columns)
    return table.drop_columns([c for c in table.column_names if c in skip])


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | int | float | bool)


def records_from_hrefs(
    hrefs: Sequence[str],
    *,
    band: str,
    collection: str | None,
    band_index_map: Mapping[str, int] | None = None,
) -> list[Record]:
    """One record per file (a file listed twice is one record); id = the file stem, made
    unique with as many parent folders as it takes (``2023/01/scene``,
    ``2024/01/scene``). Its bands: ``band`` (the first sample), or one per entry of
    ``band_index_map`` (band code -> sample index)."""
    unique = list(dict.fromkeys(hrefs))

    def assets(h: str) -> dict[str, AssetRef]:
        if band_index_map:
            return {b: AssetRef(h, band, int(ix)) for b, ix in band_index_map.items()}
        return {band: AssetRef(h, band)}

    return [
        Record(id=rid, assets=assets(h), collection=collection)
        for h, rid in zip(unique, unique_ids(unique), strict=True)
    ]


def unique_ids(hrefs: Sequence[str]) -> list[str]:
    """Short distinct ids for distinct files: the stem, then the fewest parent folders
    that tell files apart. An http(s) URL's query string is not part of its name and its
    path is percent-decoded (``with%20space.tif`` is ``with space``, as on disk); an
    object store key (``s3://b/scene?v=2.tif``) or a local path keeps every character.
    Files whose names still coincide (``x.tif?sig=1``, ``x.tif?sig=2``) are named by
    their whole href."""
    from urllib.parse import unquote

    parts = []
    for h in hrefs:
        scheme, sep, rest = h.partition("://")
        path = rest if sep else h
        if sep and scheme.lower() in ("http", "https"):
            path = unquote(rest.split("?")[0].split("#")[0])
        p = PurePosixPath(path)
        parts.append((*p.parent.parts, p.stem))
    depth = [1] * len(parts)
    while True:
        ids = ["/".join(ps[-d:]) for ps, d in zip(parts, depth, strict=True)]
        seen: dict[str, list[int]] = defaultdict(list)
        for i, rid in enumerate(ids):
            seen[rid].append(i)
        grown = False
        for members in seen.values():
            if len(members) > 1:
                for i in members:
                    if depth[i] < len(parts[i]):
                        depth[i] += 1
                        grown = True
        if not grown:
            return [hrefs[i] if len(seen[rid]) > 1 else rid for i, rid in enumerate(ids)]


async def list_files_async(
    source: str | os.PathLike | Sequence[str], *, pattern: str = "*.tif"
) -> list[str]:
    """List raster files: a local folder (recursive glob), an explicit list of URLs/paths,
    or an object store prefix (s3://, gs://, az://, memory://) listed with obstore."""
    import fnmatch

    if isinstance(source, bytes | bytearray):
        raise ValidationError(
            f"source must be a folder, a URL prefix or a list of them, got {source!r}"
        )
    if isinstance(source, Sequence) and not isinstance(source, str):
        bad = [s for s in source if not isinstance(s, str | os.PathLike)]
        if bad:
            raise ValidationError(f"source lists must hold paths or URLs, got {bad[:3]!r}")
        return [str(s) for s in source]
    text = str(source)
    if "://" in text and not text.startswith("file://"):
        import obstore

        from ..store import open_store

        name = text.rsplit("/", 1)[-1]
        if name and fnmatch.fnmatch(name.split("?")[0], pattern):
            return [text]  # one file's URL, as a local file's path is one file

        norm = text.rstrip("/") + "/"
        store, prefix = open_store(norm)
        # listed paths are relative to the store root (the bucket): rebuild URLs from it
        base = norm[: len(norm) - len(prefix)] if prefix and norm.endswith(prefix) else norm
        out = []
        try:
            async for batch in obstore.list(store, prefix=prefix or None):
                for meta in batch:
                    if fnmatch.fnmatch(Path(meta["path"]).name, pattern):
                        out.append(base + meta["path"].lstrip("/"))
        except Exception as exc:  # obstore's own errors: a tessellum error naming the prefix
            from ..store._retry import classify, to_tessellum_error

            error = to_tessellum_error(classify(exc), url=text, what="listing")
            if text.startswith(("http://", "https://")):  # listed with WebDAV's PROPFIND
                error.args = (
                    f"{error.args[0]} (an HTTP folder is listed with WebDAV, which this "
                    "server does not answer: pass a list of file URLs instead)",
                    *error.args[1:],
                )
            raise error from exc
        return sorted(out)
    root = Path(text.removeprefix("file://"))
    if root.is_file():
        return [str(root)]
    if not root.is_dir():
        raise ValidationError(f"no such folder or file: {root}")
    return sorted(str(p) for p in root.rglob(pattern) if p.is_file())


def read_vector_table(
    source: Any, *, what: str = "vector table", cloud_config: Any = None, where: str | None = None
):
    """A GeoDataFrame from a path or URL (GeoPackage, FlatGeobuf, GeoJSON, GeoParquet;
    ``s3://``, ``http(s)://``... read whole through :mod:`tessellum.store`) or a frame.

    ``what`` names the input in errors (``"aoi"``); ``cloud_config`` (a
    :class:`~tessellum.store.CloudConfig`) applies to a URL. A missing local file or an
    unreadable one is a ValidationError; a missing object or a store failure (403, an
    unreachable endpoint) is the :mod:`tessellum.store` error for it. ``where`` is an OGR
    SQL attribute filter (formats GDAL reads)."""
    import io
    import tempfile

    if hasattr(source, "geometry"):
        return source
    if not isinstance(source, str | os.PathLike):
        raise ValidationError(
            f"a {what} must be a path or a GeoDataFrame, got {type(source).__name__}"
        )
    text = os.fspath(source)
    if "://" in text and not text.startswith("file://"):
        from ..store import read_url

        data = read_url(text, cloud_config)
        name = text.split("?")[0].rsplit("/", 1)[-1]
        if name.lower().endswith((".parquet", ".geoparquet")):
            return _read_vector(io.BytesIO(data), name, text, what, where)
        # GDAL picks drivers (and checks GeoPackages) by the file name's extension
        with tempfile.TemporaryDirectory(prefix="tessellum-") as tmp:
            local = Path(tmp) / (name or "table")
            local.write_bytes(data)
            return _read_vector(local, name, text, what, where)
    p = Path(text[len("file://") :] if text.startswith("file://") else text)
    if not p.is_file():
        raise ValidationError(f"no such {what}: {text!r}")
    return _read_vector(p, p.name, text, what, where)


def _read_vector(data: Any, name: str, text: str, what: str, where: str | None = None):
    import geopandas as gpd

    try:
        if name.lower().endswith((".parquet", ".geoparquet")):
            return gpd.read_parquet(data)
        return gpd.read_file(data, where=where) if where else gpd.read_file(data)
    except Exception as exc:  # pyogrio/pyarrow errors: name the file
        extra = f" with FILTER {where!r}" if where else ""
        raise ValidationError(f"cannot read the {what} {text!r}{extra}: {exc}") from exc


def gti_layer_metadata(source: Any) -> dict[str, str]:
    """The GDAL GTI metadata items of a tile index file's layer (``LOCATION_FIELD``,
    ``FILTER``, ``SORT_FIELD``, ``RESX`` ...), as GDAL's GTI driver reads them; empty
    for a frame, a GeoParquet file or a file without layer metadata."""
    if not isinstance(source, str | os.PathLike):
        return {}
    p = Path(source)
    if not p.is_file() or p.suffix.lower() in (".parquet", ".geoparquet"):
        return {}
    import pyogrio

    try:
        meta = pyogrio.read_info(p).get("layer_metadata") or {}
    except Exception:  # unreadable here: read_vector_table names the file
        return {}
    return {str(k).upper(): str(v) for k, v in meta.items()}
