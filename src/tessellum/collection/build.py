"""Collection builders: STAC API / static catalog, record tables, file listings and
GDAL GTI tile indexes. Each turns its source into records, reads every asset header
once, and returns a :class:`Collection` (cached on disk when a workspace is used)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._sync import run_sync, same_signature
from ..errors import TessellumWarning, ValidationError
from .cache import cache_path
from .core import Collection
from .headers import DEFAULT_PREFIX, read_headers_async, records_to_table
from .records import Record


async def _records_to_collection(
    records: Sequence[Record],
    *,
    name: str,
    data_source: str | None,
    max_concurrent: int,
    cloud_config: Any,
    signer: Any,
    prefix_size: int,
    progress: bool | None,
    extra: Any = None,
) -> Collection:
    _check_options(name, max_concurrent, prefix_size)
    hrefs = [a.href for r in records for a in r.assets.values()]
    headers = await read_headers_async(
        hrefs,
        prefix_size=prefix_size,
        max_concurrent=max_concurrent,
        cloud_config=cloud_config,
        signer=signer,
        progress=progress,
    )
    table = records_to_table(records, headers, extra=extra)
    if table.num_rows:
        table = table.sort_by([("datetime", "ascending"), ("id", "ascending")])
    return Collection(
        table, name=name, data_source=data_source, cloud_config=cloud_config, signer=signer
    )


def _check_band_maps(band_map: Any, band_index_map: Any) -> None:
    """``band_map`` maps band codes to asset keys, ``band_index_map`` to sample indexes."""
    for label, value, kind in (
        ("band_map", band_map, str),
        ("band_index_map", band_index_map, int),
    ):
        if value is None:
            continue
        ok = isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, kind) and not isinstance(v, bool)
            for k, v in value.items()
        )
        if not ok or (kind is int and any(v < 0 for v in value.values())):
            what = "asset keys" if kind is str else "sample indexes (ints >= 0)"
            raise ValidationError(f"{label} must map band codes to {what}, got {value!r}")


def _check_options(name: str, max_concurrent: int, prefix_size: int) -> None:
    """Validate the options every builder shares, before any request is sent."""
    if not isinstance(name, str) or not name:
        raise ValidationError(f"name must be a non-empty string, got {name!r}")
    if not isinstance(max_concurrent, int) or max_concurrent < 1:
        raise ValidationError(f"max_concurrent must be an integer >= 1, got {max_concurrent!r}")
    if not isinstance(prefix_size, int) or prefix_size < 16:
        raise ValidationError(f"prefix_size must be an integer >= 16 bytes, got {prefix_size!r}")


def _cached(
    workspace_dir: Any, name: str, params: dict[str, Any], force: bool
) -> tuple[Path | None, Collection | None]:
    if workspace_dir is None:
        return None, None
    path = cache_path(workspace_dir, name, params)
    if path.exists() and not force:
        return path, Collection.load(path)
    return path, None


async def build_from_stac_async(
    *,
    name: str,
    stac_api: str,
    collection: str,
    data_source: str | None = None,
    band_map: Mapping[str, str] | None = None,
    band_index_map: Mapping[str, int] | None = None,
    bbox: Any = None,
    date_range: Sequence[Any] | None = None,
    workspace_dir: str | os.PathLike | None = None,
    force: bool = False,
    max_concurrent: int = 50,
    cloud_config: Any = None,
    query: Mapping[str, Any] | None = None,
    backend: Any = None,
    static_catalog: bool = False,
    filter: Mapping[str, Any] | str | None = None,
    max_items: int | None = None,
    signer: Any = None,
    prefix_size: int = DEFAULT_PREFIX,
    progress: bool | None = None,
) -> Collection:
    """Async form of :func:`build_from_stac`."""
    from .dates import parse_date_range
    from .stac import resolve_band_maps, stac_records

    _check_options(name, max_concurrent, prefix_size)
    if max_items is not None and (
        not isinstance(max_items, int) or isinstance(max_items, bool) or max_items < 1
    ):  # 0 or -1 would read as "no items match" after the search
        raise ValidationError(f"max_items must be an integer >= 1 or None, got {max_items!r}")
    _check_band_maps(band_map, band_index_map)
    resolve_band_maps(collection, data_source, band_map, band_index_map)  # before any request
    parse_date_range(date_range)  # validated before any request (and the cache key)
    if backend is not None:
        raise ValidationError(
            "backend: pass stores through cloud_config; custom backends are not supported yet"
        )
    params = {
        "stac_api": stac_api, "collection": collection, "data_source": data_source,
        "band_map": band_map, "band_index_map": band_index_map,
        "bbox": list(bbox) if isinstance(bbox, Sequence) else bbox,
        "date_range": [str(d) for d in date_range] if date_range else None,
        "query": query, "filter": filter, "static_catalog": static_catalog, "max_items": max_items,
        "cloud_config": repr(cloud_config),
    }  # fmt: skip
    path, hit = _cached(workspace_dir, name, params, force)
    if hit is not None:  # read as a fresh build would be
        hit.cloud_config, hit.signer = cloud_config, signer
        return hit
    import asyncio

    records = await asyncio.to_thread(
        stac_records,
        stac_api=stac_api,
        collection=collection,
        data_source=data_source,
        band_map=band_map,
        band_index_map=band_index_map,
        bbox=bbox,
        date_range=date_range,
        query=query,
        filter=filter,
        static_catalog=static_catalog,
        max_items=max_items,
    )
    coll = await _records_to_collection(
        records,
        name=name,
        data_source=data_source or collection,
        max_concurrent=max_concurrent,
        cloud_config=cloud_config,
        signer=signer,
        prefix_size=prefix_size,
        progress=progress,
    )
    if path is not None:
        coll.export(path)
    return coll


@same_signature(build_from_stac_async)
def build_from_stac(**kwargs: Any) -> Collection:
    """Build a collection from a STAC API search (or a static catalog) with one header
    read per asset.

    Keyword Args:
        name: collection name (cache key part).
        stac_api: STAC API root URL, or the root ``catalog.json`` with ``static_catalog=True``.
        collection: STAC collection id.
        data_source: source id for built-in band maps (defaults to ``collection``).
        band_map: band code -> asset key; selects and names bands.
        band_index_map: band code -> sample index inside a multi-sample asset.
        bbox: (west, south, east, north) in lon/lat; west > east crosses the antimeridian.
        date_range: (start, end); a date-only end includes that whole day (UTC).
        workspace_dir: where built collections are cached; None disables the cache.
        force: rebuild even when a cached build with the same parameters exists.
        max_concurrent: header reads in flight at once.
        cloud_config: ``tessellum.store.CloudConfig`` (URL rewriting, requester pays).
        query: STAC API ``query`` extension filter, e.g. ``{"eo:cloud_cover": {"lt": 10}}``.
        backend: reserved (seed compatibility).
        static_catalog: walk a static catalog instead of calling /search.
        filter: CQL2 filter (JSON dict or text).
        max_items: stop after this many items (default: all, never silently truncated).
        signer: a ``UrlSigner`` (e.g. Planetary Computer SAS tokens).
        prefix_size: bytes of the speculative header read.
        progress: progress bar (None: on a TTY).

    Returns:
        The :class:`Collection`; failed assets are kept with an error (see ``errors()``).

    Async form: :func:`build_from_stac_async`.
    """
    return run_sync(build_from_stac_async(**kwargs))


async def build_from_records_async(
    records: Sequence[Record],
    *,
    name: str,
    data_source: str | None = None,
    max_concurrent: int = 50,
    cloud_config: Any = None,
    signer: Any = None,
    prefix_size: int = DEFAULT_PREFIX,
    progress: bool | None = None,
) -> Collection:
    """Build from already-made :class:`Record` objects (the shared last step)."""
    return await _records_to_collection(
        records, name=name, data_source=data_source, max_concurrent=max_concurrent,
        cloud_config=cloud_config, signer=signer, prefix_size=prefix_size, progress=progress,
    )  # fmt: skip


async def build_from_table_async(
    table: Any,
    *,
    name: str,
    href_column: str | None = "href",
    assets_column: str | None = None,
    id_column: str | None = "id",
    datetime_column: str | None = "datetime",
    geometry_column: str | None = "geometry",
    band: str = "data",
    band_index_map: Mapping[str, int] | None = None,
    collection: str | None = None,
    **kwargs: Any,
) -> Collection:
    """Async form of :func:`build_from_table`."""
    from .sources import property_columns, records_from_table, to_arrow

    _check_band_maps(None, band_index_map)
    t = to_arrow(table)
    columns = {
        "href_column": href_column, "assets_column": assets_column, "id_column": id_column,
        "datetime_column": datetime_column, "geometry_column": geometry_column,
        "collection": collection,
    }  # fmt: skip
    records = records_from_table(
        t, band=band, band_index_map=band_index_map, properties=False, **columns
    )
    opts = {"max_concurrent": 50, "cloud_config": None, "signer": None,
            "prefix_size": DEFAULT_PREFIX, "progress": None, **kwargs}  # fmt: skip
    # the other columns ride along with their Arrow types (uint64, lists, dictionaries)
    return await _records_to_collection(
        records, name=name, data_source=collection, extra=property_columns(t, **columns), **opts
    )


@same_signature(build_from_table_async)
def build_from_table(table: Any, **kwargs: Any) -> Collection:
    """Build from a record table: an Arrow table, a Parquet/GeoParquet path, a
    (Geo)DataFrame, or anything exporting the Arrow PyCapsule stream.

    Each row needs an id and either an ``href_column`` (one raster per row, band name
    ``band``, or several bands of it via ``band_index_map``) or an ``assets_column``
    (a mapping band -> href or -> {"href": ..., "band_index": ...}). Other columns are
    kept as properties (labels, splits, AOI ids ...) with their Arrow types; one named
    like a collection column (``crs``, ``collection``, ``bbox`` ...) is kept as
    ``<name>_user``, and the table's own ``year``/``month`` keep their values (the
    export then does not partition on them). Without a geometry column, the footprint
    comes from the header.

    Async form: :func:`build_from_table_async`.
    """
    return run_sync(build_from_table_async(table, **kwargs))


async def build_from_files_async(
    source: str | os.PathLike | Sequence[str],
    *,
    name: str,
    pattern: str = "*.tif",
    band: str = "data",
    band_index_map: Mapping[str, int] | None = None,
    collection: str | None = None,
    **kwargs: Any,
) -> Collection:
    """Async form of :func:`build_from_files`."""
    from .sources import list_files_async, records_from_hrefs

    _check_band_maps(None, band_index_map)
    hrefs = await list_files_async(source, pattern=pattern)
    if not hrefs:
        raise ValidationError(f"no files matching {pattern!r} under {source!r}")
    records = records_from_hrefs(
        hrefs, band=band, collection=collection, band_index_map=band_index_map
    )
    coll = await build_from_records_async(records, name=name, data_source=collection, **kwargs)
    if not band_index_map:
        _warn_unread_samples(coll, band)
    return coll


def _warn_unread_samples(coll: Collection, band: str) -> None:
    """Warn when files hold more samples than the one band a build reads of each (a
    4-band file read as ``band`` alone looked like a 1-band file)."""
    import pyarrow.compute as pc

    from .schema import band_column

    samples = pc.struct_field(coll.table.column(band_column(band)), "samples_per_pixel")
    most = pc.max(samples).as_py()
    if most is not None and most > 1:
        n = pc.sum(pc.greater(samples, 1)).as_py()
        warnings.warn(
            f"{n} file(s) hold up to {most} samples (bands); band {band!r} reads the first "
            "of each: pass band_index_map={code: sample index} to read the others",
            TessellumWarning,
            stacklevel=3,
        )


@same_signature(build_from_files_async)
def build_from_files(source: str | os.PathLike | Sequence[str], **kwargs: Any) -> Collection:
    """Build from a file listing: a local folder, a list of URLs/paths, or an object
    store prefix (``s3://bucket/prefix/``) listed with obstore; one record per file.

    Each file gives band ``band`` (its first sample); ``band_index_map`` names several
    samples of multi-band files instead (``{"red": 0, "green": 1, "blue": 2}``). A build
    that reads one sample of files holding several warns.

    Async form: :func:`build_from_files_async`.
    """
    return run_sync(build_from_files_async(source, **kwargs))


async def build_from_gti_async(
    index: str | os.PathLike | Any,
    *,
    name: str,
    location_column: str = "location",
    datetime_column: str | None = None,
    band: str = "data",
    collection: str | None = None,
    query: str | None = None,
    **kwargs: Any,
) -> Collection:
    """Async form of :func:`build_from_gti`."""
    from .sources import unique_ids

    gdf, meta = _read_gti(index, kwargs.get("cloud_config"))
    # the index's own GTI items, as GDAL's GTI driver applies them: its LOCATION_FIELD
    # (unless the caller names another column) and its FILTER (read above)
    if location_column == "location" and meta.get("LOCATION_FIELD"):
        location_column = meta["LOCATION_FIELD"]
    if query:
        gdf = gdf.query(query)
    if location_column not in gdf.columns:
        raise ValidationError(
            f"GTI index has no {location_column!r} column (columns: {list(gdf.columns)})"
        )
    gdf = gdf.rename(columns={location_column: "__href"})
    missing = [i for i, h in enumerate(gdf["__href"]) if not isinstance(h, str) or not h]
    if missing:  # rows without a raster: skipped, named (GDAL skips them too)
        warnings.warn(
            f"GTI index: {len(missing)} feature(s) without a {location_column!r} "
            f"(positions {missing[:10]}) skipped",
            TessellumWarning,
            stacklevel=2,
        )
        gdf = gdf.drop(gdf.index[missing])
    # GDAL opens a relative location against the index file's folder, not the cwd
    base: Path | str | None = None
    if isinstance(index, str | os.PathLike):
        text = os.fspath(index)
        remote = "://" in text and not text.startswith("file://")
        base = text.split("?")[0].rsplit("/", 1)[0] if remote else Path(text).resolve().parent
    gdf["__href"] = [_relative_to(_gdal_to_url(h), base) for h in gdf["__href"]]
    if "id" not in gdf.columns:  # distinct files, distinct ids (north/tile, south/tile)
        gdf["id"] = unique_ids([str(h) for h in gdf["__href"]])
    if getattr(gdf, "_geometry_column_name", None) in gdf.columns:
        # the index's tile footprints: the headers give them (as GDAL's GTI reads them)
        gdf = gdf.drop(columns=gdf.geometry.name)
    coll = await build_from_table_async(
        gdf, name=name, href_column="__href", datetime_column=datetime_column,
        geometry_column=None, band=band, collection=collection, **kwargs,
    )  # fmt: skip
    if not meta:
        return coll
    table = coll.table  # kept for build_gti_mosaic (SORT_FIELD...); survives filters
    extra = {GTI_METADATA_KEY: json.dumps(meta).encode()}
    return coll._derive(table.replace_schema_metadata({**(table.schema.metadata or {}), **extra}))


GTI_METADATA_KEY = b"tessellum:gti"


def gti_metadata(coll: Collection) -> dict[str, str]:
    """The GDAL GTI metadata items (``SORT_FIELD``, ``RESX`` ...) of the tile index
    ``coll`` was built from by :func:`build_from_gti`; empty for other collections."""
    raw = (coll.table.schema.metadata or {}).get(GTI_METADATA_KEY)
    return json.loads(raw) if raw else {}


@same_signature(build_from_gti_async)
def build_from_gti(index: str | os.PathLike | Any, **kwargs: Any) -> Collection:
    """Build from a GDAL GTI tile index (GeoPackage, GeoParquet, FlatGeobuf or a
    GeoDataFrame; a path or a URL, read with ``cloud_config`` as the tiles are) with a
    ``location`` column of raster paths/URLs (``/vsicurl/``, ``/vsis3/`` prefixes are
    understood; relative paths are relative to the index file's folder, or URL folder,
    as GDAL's GTI driver reads them). The index layer's GTI metadata items apply as
    GDAL applies them: ``FILTER`` (OGR SQL) selects rows and ``LOCATION_FIELD`` names the
    location column unless ``location_column`` names another one. ``query`` filters it
    further with ``DataFrame.query``.

    Async form: :func:`build_from_gti_async`.
    """
    return run_sync(build_from_gti_async(index, **kwargs))


def _read_gti(index: Any, cloud_config: Any) -> tuple[Any, dict[str, str]]:
    """The GTI index as a GeoDataFrame, its layer's FILTER applied, and its layer's GTI
    metadata items. A remote index (read as its tiles are: rewrites, requester pays) is
    fetched once, so that its metadata is read as a local file's is."""
    import tempfile

    from .sources import _read_vector, gti_layer_metadata, read_vector_table

    text = os.fspath(index) if isinstance(index, str | os.PathLike) else None
    name = text.split("?")[0].rsplit("/", 1)[-1] if isinstance(text, str) else ""
    remote = isinstance(text, str) and "://" in text and not text.startswith("file://")
    if not remote or name.lower().endswith((".parquet", ".geoparquet")):
        meta = gti_layer_metadata(index)
        gdf = read_vector_table(index, where=meta.get("FILTER") or None, cloud_config=cloud_config)
        return gdf, meta
    from ..store import read_url

    with tempfile.TemporaryDirectory(prefix="tessellum-") as tmp:
        local = Path(tmp) / (name or "index.gpkg")  # GDAL picks drivers by the extension
        local.write_bytes(read_url(text, cloud_config))
        meta = gti_layer_metadata(local)
        return _read_vector(local, name, text, "vector table", meta.get("FILTER") or None), meta


_VSI = {
    "/vsicurl/": "",
    "/vsis3/": "s3://",
    "/vsigs/": "gs://",
    "/vsiaz/": "az://",
    "/vsiadls/": "az://",
}


def _relative_to(href: str, base: Path | str | None) -> str:
    """``href`` joined to ``base`` (a folder path, or the URL of a remote index's
    folder) when it is a relative path (not a URL, not absolute)."""
    if base is None or "://" in href or href.startswith("/"):
        return href
    if isinstance(base, str):
        import posixpath

        scheme, _, rest = base.partition("://")
        root, _, folder = rest.partition("/")
        return f"{scheme}://{root}/" + posixpath.normpath(posixpath.join(folder, href)).lstrip("/")
    return str(base / href)


def _gdal_to_url(href: str) -> str:
    for prefix, scheme in _VSI.items():
        if href.startswith(prefix):
            return scheme + href[len(prefix) :]
    return href
