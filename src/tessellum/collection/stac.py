"""Build collections from a STAC API (full pagination) or a static STAC catalog."""

from __future__ import annotations

import datetime as dt
import functools
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..errors import ProtocolError, TessellumWarning, ValidationError
from ..geo.bbox import BBox, as_bbox, bbox_intersects
from .bandmaps import builtin_band_index_map, builtin_band_map
from .dates import parse_date_range, parse_datetime, stac_interval
from .records import Record, record_from_stac_item

PAGE_SIZE = 100


def search_items(
    stac_api: str,
    collection: str,
    *,
    bbox: BBox | None = None,
    date_range: tuple[dt.datetime, dt.datetime] | None = None,
    query: Mapping[str, Any] | None = None,
    filter: Mapping[str, Any] | str | None = None,
    max_items: int | None = None,
    page_size: int = PAGE_SIZE,
) -> list[dict[str, Any]]:
    """All items of ``collection`` matching the search, following every ``next`` page.

    Antimeridian-crossing boxes are searched as two boxes and deduplicated.

    Raises:
        ProtocolError: naming the API URL when the search fails.
    """
    search = functools.partial(
        _search, stac_api=stac_api, collection=collection, bbox=bbox, date_range=date_range,
        query=query, filter=filter, max_items=max_items, page_size=page_size,
    )  # fmt: skip
    client, cached = _open_api(stac_api)
    try:
        items = search(client)
    except ProtocolError:
        if not cached:
            raise
        # the landing page read earlier may be stale (the API moved or restarted): once
        # more with a fresh one
        _forget_api(stac_api)
        client, _ = _open_api(stac_api)
        items = search(client)
    if not items:
        _check_collection_exists(client, stac_api, collection)
    return items


def _check_collection_exists(client: Any, stac_api: str, collection: str) -> None:
    """Raise ``ValidationError`` naming ``collection`` and the API's collections when the
    API does not have it (a search of an unknown collection is just empty: a typo would
    give an empty collection). Asked only after an empty search; when the API cannot
    say, nothing is raised."""
    from pystac_client.exceptions import APIError

    try:
        found = client.get_collection(collection)
    except APIError as exc:
        if getattr(exc, "status_code", None) != 404:
            return
        found = None
    except Exception:  # the check is a courtesy: an API that cannot answer it is fine
        return
    if found is not None:
        return
    try:
        known = sorted(c.id for c in client.get_collections())
    except Exception:
        known = []
    listed = f"; it has {known}" if known else ""
    raise ValidationError(f"collection {collection!r} not found at STAC API {stac_api}{listed}")


def _search(
    client: Any,
    *,
    stac_api: str,
    collection: str,
    bbox: BBox | None,
    date_range: tuple[dt.datetime, dt.datetime] | None,
    query: Mapping[str, Any] | None,
    filter: Mapping[str, Any] | str | None,
    max_items: int | None,
    page_size: int,
) -> list[dict[str, Any]]:
    from pystac_client import ItemSearch
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO

    boxes = bbox.split() if bbox is not None else [None]
    seen: dict[str, dict[str, Any]] = {}
    for box in boxes:
        left = None if max_items is None else max_items - len(seen)
        if left is not None and left <= 0:  # max_items counts the items of both boxes
            break
        kwargs: dict[str, Any] = {
            "collections": [collection],
            "method": "POST",
            "limit": page_size,
            "max_items": left,
        }
        if box is not None:
            kwargs["bbox"] = list(box.as_tuple())
        interval = stac_interval(date_range) if date_range is not None else "../.."
        if interval != "../..":  # open both ways is no filter (APIs refuse "../..")
            kwargs["datetime"] = interval
        if query:
            kwargs["query"] = dict(query)
        if filter is not None:
            kwargs.update(_filter_kwargs(filter))
        try:
            # the opened API's search endpoint, with a connection of this call's own
            # (requests sessions are not shared between threads)
            search = ItemSearch(client.search(**kwargs).url, stac_io=StacApiIO(), **kwargs)
            for item in search.items_as_dicts():
                seen.setdefault(item["id"], item)
        except APIError as exc:
            raise ProtocolError(f"STAC search failed at {stac_api}: {exc}", url=stac_api) from exc
        except Exception as exc:  # network errors surface from requests inside pystac-client
            raise ProtocolError(
                f"STAC search failed at {stac_api}: {type(exc).__name__}: {exc}", url=stac_api
            ) from exc
    return list(seen.values())


_APIS: dict[str, Any] = {}
_APIS_LOCK = threading.Lock()


def _open_api(stac_api: str) -> tuple[Any, bool]:
    """The API's ``pystac_client.Client``, opened once per process (its landing page:
    search endpoint, conformance, is one round trip every search would otherwise pay
    again), and whether it came from that cache. A failed open is not cached.

    Raises:
        ProtocolError: naming the API URL when its landing page cannot be read.
    """
    with _APIS_LOCK:
        client = _APIS.get(stac_api)
    if client is not None:
        return client, True
    from pystac_client import Client

    try:
        client = Client.open(stac_api)
    except Exception as exc:
        raise ProtocolError(f"cannot open STAC API {stac_api}: {exc}", url=stac_api) from exc
    with _APIS_LOCK:
        if len(_APIS) >= 64:
            _APIS.clear()
        return _APIS.setdefault(stac_api, client), False


def _forget_api(stac_api: str) -> None:
    with _APIS_LOCK:
        _APIS.pop(stac_api, None)


def _filter_kwargs(filter: Mapping[str, Any] | str) -> dict[str, Any]:
    """Search arguments for a CQL2 filter. POST bodies take cql2-json only, so text is
    converted with the ``cql2`` package when installed, else sent with GET."""
    if not isinstance(filter, str):
        return {"filter": dict(filter), "filter_lang": "cql2-json"}
    try:
        import cql2
    except ImportError:
        return {"filter": filter, "filter_lang": "cql2-text", "method": "GET"}
    try:
        return {"filter": cql2.parse_text(filter).to_json(), "filter_lang": "cql2-json"}
    except Exception as exc:
        raise ValidationError(f"filter: not valid CQL2 text: {filter!r} ({exc})") from None


def walk_static_catalog(
    root: str,
    collection: str | None,
    *,
    bbox: BBox | None = None,
    date_range: tuple[dt.datetime, dt.datetime] | None = None,
    seen: set[str | None] | None = None,
) -> Iterator[tuple[dict[str, Any], str]]:
    """Items of a static catalog (no /search), filtered client-side as a STAC API search
    filters them; yields ``(item_dict, item_self_href)`` so relative asset hrefs can be
    resolved. ``root`` is a catalog, a collection, an item collection
    (``FeatureCollection``) or one item. ``seen`` collects the collection ids of every
    item walked."""
    for item in _static_items(root):
        if seen is not None:
            seen.add(_collection_of(item))
        if collection and _collection_of(item) != collection:
            continue
        if bbox is not None and not _item_meets_bbox(item, bbox):
            continue
        if date_range is not None and not _overlaps(item, date_range):
            continue
        data = item.to_dict(transform_hrefs=False)
        if not data.get("collection") and _collection_of(item):
            data["collection"] = _collection_of(item)
        yield data, item.get_self_href() or root


def _collection_of(item: Any) -> str | None:
    """The item's collection id: its ``collection`` field, else the collection that
    holds it in the catalog (an item may leave the field out)."""
    if item.collection_id:
        return item.collection_id
    import pystac

    parent = item.get_parent()
    return parent.id if isinstance(parent, pystac.Collection) else None


def _static_items(root: str) -> Iterator[Any]:
    """The items under a static STAC file, read with pystac.

    Raises:
        ProtocolError: naming ``root`` when it cannot be read or holds no items.
    """
    import pystac

    try:
        data = pystac.StacIO.default().read_json(root)
        if data.get("type") == "FeatureCollection":
            yield from pystac.ItemCollection.from_dict(data, preserve_dict=False)
            return
        obj = pystac.read_dict(data, href=root)
    except Exception as exc:
        raise ProtocolError(f"cannot read static STAC catalog {root}: {exc}", url=root) from exc
    if isinstance(obj, pystac.Item):
        yield obj
    elif isinstance(obj, pystac.Catalog):  # collections are catalogs too
        yield from obj.get_items(recursive=True)
    else:
        raise ProtocolError(
            f"static STAC catalog {root}: a {type(obj).__name__} holds no items", url=root
        )


def _item_meets_bbox(item: Any, bbox: BBox) -> bool:
    """Whether the item's geometry (split at ±180 as its footprint is) meets ``bbox``, as
    a STAC API search tests it; its bbox when it has no geometry; an item without a
    location matches no bbox search."""
    import shapely

    if item.geometry:
        from .records import _item_footprint

        footprint = _item_footprint(item.geometry, item.bbox)
        return any(footprint.intersects(shapely.box(*p.as_tuple())) for p in bbox.split())
    if item.bbox:
        return bbox_intersects(_bbox_2d(item.bbox), bbox.as_tuple())
    return False


def _bbox_2d(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a STAC bbox, 2D or 3D (with min/max elevation)."""
    if len(bbox) == 6:
        return bbox[0], bbox[1], bbox[3], bbox[4]
    return bbox[0], bbox[1], bbox[2], bbox[3]


def _overlaps(item: Any, date_range: tuple[dt.datetime, dt.datetime]) -> bool:
    """Whether the item's time (its start_datetime..end_datetime interval, else its
    datetime) meets ``date_range``, as a STAC API datetime search matches it."""
    meta = item.common_metadata
    start = meta.start_datetime or item.datetime
    end = meta.end_datetime or item.datetime or start
    if start is None:
        return False
    return parse_datetime(start) <= date_range[1] and parse_datetime(end) >= date_range[0]


def stac_records(
    *,
    stac_api: str,
    collection: str,
    data_source: str | None,
    band_map: Mapping[str, str] | None,
    band_index_map: Mapping[str, int] | None,
    bbox: Any,
    date_range: Any,
    query: Mapping[str, Any] | None,
    filter: Any,
    static_catalog: bool,
    max_items: int | None,
) -> list[Record]:
    """Search (or walk) and turn items into records with resolved bands."""
    box = as_bbox(bbox) if bbox is not None else None
    rng = parse_date_range(date_range)
    bmap, imap = resolve_band_maps(collection, data_source, band_map, band_index_map)
    if static_catalog:
        if query or filter:
            raise ValidationError(
                "query/filter need a STAC API; a static catalog is filtered by bbox/date_range only"
            )
        seen: set[str | None] = set()
        pairs = list(walk_static_catalog(stac_api, collection, bbox=box, date_range=rng, seen=seen))
        if collection and collection not in seen:
            known = sorted(c for c in seen if c)
            raise ValidationError(
                f"collection {collection!r}: no item of the static catalog {stac_api} is "
                f"in it (its items are in {known})"
            )
        if max_items is not None:
            pairs = pairs[:max_items]
    else:
        items = search_items(
            stac_api,
            collection,
            bbox=box,
            date_range=rng,
            query=query,
            filter=filter,
            max_items=max_items,
        )
        pairs = [(i, None) for i in items]
    if band_map:
        _check_asset_keys(band_map, [i for i, _ in pairs])
    records = [
        record_from_stac_item(i, band_map=bmap, band_index_map=imap, base_href=h) for i, h in pairs
    ]
    _warn_bandless([i for i, _ in pairs], records)
    return records


def _warn_bandless(items: list[Mapping[str, Any]], records: list[Record]) -> None:
    """Warn about items none of whose assets became a band (no GeoTIFF media type or
    .tif href, e.g. JPEG 2000 or extension-less URLs): those records read nothing."""
    bare = [(i, r) for i, r in zip(items, records, strict=True) if not r.assets]
    if not bare:
        return
    first = bare[0][0].get("assets") or {}
    kinds = ", ".join(f"{k} ({(a or {}).get('type') or 'no type'})" for k, a in first.items())
    shown = ", ".join(r.id for _, r in bare[:5]) + (
        f" (and {len(bare) - 5} more)" if len(bare) > 5 else ""
    )
    warnings.warn(
        f"{len(bare)} of {len(items)} items have no GeoTIFF data asset, so no band: {shown}; "
        f"the first one's assets are {kinds or 'none'}. Pass band_map={{code: asset key}} "
        "to read assets whose media type or href does not say GeoTIFF",
        TessellumWarning,
        stacklevel=4,
    )


def resolve_band_maps(
    collection: str,
    data_source: str | None,
    band_map: Mapping[str, str] | None,
    band_index_map: Mapping[str, int] | None,
) -> tuple[dict[str, str] | None, dict[str, int] | None]:
    """The ``(band_map, band_index_map)`` a build uses: the caller's, else the built-in
    ones of ``data_source``/``collection`` (the caller's band_index_map codes pick from
    the built-in band map). Needs no request, so builders call it before any.

    Raises:
        ValidationError: when bands share an asset key and not every one of them has a
            sample index (they would all read the same sample).
    """
    bmap = dict(band_map) if band_map else builtin_band_map(collection, data_source)
    if not band_map and bmap and band_index_map:  # the user's codes pick from the built-in map
        bmap = _pick_codes(bmap, band_index_map, collection)
    imap = (
        dict(band_index_map) if band_index_map else builtin_band_index_map(collection, data_source)
    )
    by_asset: dict[str, list[str]] = {}
    for code, key in (bmap or {}).items():
        by_asset.setdefault(key, []).append(code)
    for key, codes in by_asset.items():
        unindexed = [c for c in codes if c not in (imap or {})]
        if len(codes) > 1 and unindexed:
            known = builtin_band_index_map(collection, data_source)
            hint = f"; the built-in band_index_map of {collection!r} is {known}" if known else ""
            raise ValidationError(
                f"bands {codes} all map to asset key {key!r} but {unindexed} have no sample "
                f"index: pass band_index_map (e.g. "
                f"{dict(zip(codes, range(len(codes)), strict=True))}) to say which sample of "
                f"{key!r} each band reads{hint}"
            )
    return bmap, imap


def _check_asset_keys(band_map: Mapping[str, str], items: list[Mapping[str, Any]]) -> None:
    """A band_map asset key that no item has is an error (a typo would give a collection
    without that band); one some items lack leaves those records without the band, with
    a warning naming them."""
    if not items:
        return
    keys_of = [set((i.get("assets") or {}).keys()) for i in items]
    all_keys = sorted(set().union(*keys_of))
    for code, key in band_map.items():
        lacking = [str(i.get("id")) for i, ks in zip(items, keys_of, strict=True) if key not in ks]
        if len(lacking) == len(items):
            raise ValidationError(
                f"band_map[{code!r}] = {key!r}: no item has asset key {key!r} "
                f"(the {len(items)} matched item(s) have {all_keys})"
            )
        if lacking:
            shown = ", ".join(lacking[:5]) + (
                f" (and {len(lacking) - 5} more)" if len(lacking) > 5 else ""
            )
            warnings.warn(
                f"band {code!r}: {len(lacking)} of {len(items)} items have no asset {key!r} "
                f"({shown}); those records lack the band",
                TessellumWarning,
                stacklevel=4,
            )


def _pick_codes(
    builtin: Mapping[str, str], band_index_map: Mapping[str, int], collection: str
) -> dict[str, str]:
    """The built-in band map restricted to the codes of ``band_index_map``; a code the
    built-in map lacks reads the one asset the map uses (a multi-sample file such as
    NAIP's ``image``), else it is an error (never a silently dropped band)."""
    assets = set(builtin.values())
    out = {}
    for code in band_index_map:
        if code in builtin:
            out[code] = builtin[code]
        elif len(assets) == 1:
            out[code] = next(iter(assets))
        else:
            raise ValidationError(
                f"band {code!r} of band_index_map is not in {collection!r}'s band map "
                f"({sorted(builtin)}); pass band_map={{{code!r}: <asset key>}} as well"
            )
    return out


__all__ = ["resolve_band_maps", "search_items", "stac_records", "walk_static_catalog"]
