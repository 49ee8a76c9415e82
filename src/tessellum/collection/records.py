"""Raster records before their headers are read: one per STAC item / table row / file."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ValidationError
from .dates import parse_datetime

_RASTER_TYPES = ("image/tiff", "image/geotiff", "application/x-geotiff", "image/vnd.stac.geotiff")
_RASTER_SUFFIXES = (".tif", ".tiff", ".gtiff")


@dataclass(frozen=True, slots=True)
class AssetRef:
    """Where one band's pixels live: a file and the sample inside it."""

    href: str
    asset_key: str
    band_index: int | None = None
    type: str | None = None


@dataclass(slots=True)
class Record:
    """One raster record (a scene, a tile, a file) with its bands' assets."""

    id: str
    assets: dict[str, AssetRef]
    datetime: dt.datetime | None = None
    collection: str | None = None
    geometry: Any = None  # shapely geometry in CRS84, or None to derive from the header
    properties: dict[str, Any] = field(default_factory=dict)
    proj_code: str | None = None


def is_raster_asset(asset: Mapping[str, Any]) -> bool:
    """Whether a STAC asset looks like a (Geo)TIFF data asset."""
    media = (asset.get("type") or "").lower()
    href = (asset.get("href") or "").split("?")[0].lower()
    roles = asset.get("roles") or ["data"]
    if any(r in ("thumbnail", "overview", "metadata") for r in roles) and "data" not in roles:
        return False
    return media.startswith(_RASTER_TYPES) or href.endswith(_RASTER_SUFFIXES)


def resolve_bands(
    assets: Mapping[str, Mapping[str, Any]],
    band_map: Mapping[str, str] | None,
    band_index_map: Mapping[str, int] | None,
    *,
    item_id: str = "",
) -> dict[str, AssetRef]:
    """Map band codes to assets.

    - ``band_map`` (code -> asset key) picks and renames assets; codes whose asset is
      missing in this item are skipped.
    - ``band_index_map`` (code -> sample index) selects samples inside a multi-sample
      asset (the asset named by ``band_map``, else the item's single raster asset).
    - Without maps, every GeoTIFF data asset is a band named by its asset key.
    """
    out: dict[str, AssetRef] = {}
    if band_map:
        for code, key in band_map.items():
            if key in assets:
                a = assets[key]
                idx = band_index_map.get(code) if band_index_map else None
                out[code] = AssetRef(a["href"], key, idx, a.get("type"))
        return out
    raster_keys = [k for k, a in assets.items() if is_raster_asset(a)]
    if band_index_map:
        if len(raster_keys) != 1:
            raise ValidationError(
                f"band_index_map without band_map needs exactly one raster asset per item; "
                f"item {item_id!r} has {raster_keys}"
            )
        key = raster_keys[0]
        a = assets[key]
        return {
            code: AssetRef(a["href"], key, int(i), a.get("type"))
            for code, i in band_index_map.items()
        }
    return {k: AssetRef(assets[k]["href"], k, None, assets[k].get("type")) for k in raster_keys}


# consumed into the record (its datetime, its CRS fallback) or not about the raster
_SKIP_PROPS = {
    "datetime", "start_datetime", "end_datetime", "created", "updated", "proj:epsg", "proj:code",
}  # fmt: skip


def record_from_stac_item(
    item: Mapping[str, Any],
    *,
    band_map: Mapping[str, str] | None = None,
    band_index_map: Mapping[str, int] | None = None,
    base_href: str | None = None,
) -> Record:
    """A record from a STAC Item dict (relative asset hrefs resolved against ``base_href``)."""

    props = dict(item.get("properties") or {})
    when = props.get("datetime") or props.get("start_datetime")
    # an asset without an href (invalid STAC) is nothing to read: not a band
    assets = {
        k: dict(v)
        for k, v in (item.get("assets") or {}).items()
        if isinstance(v, Mapping) and isinstance(v.get("href"), str) and v["href"]
    }
    if base_href:
        for a in assets.values():
            a["href"] = _resolve_href(a["href"], base_href)
    geom = item.get("geometry")
    flat = {k: v for k, v in props.items() if k not in _SKIP_PROPS and _is_scalar(v)}
    if props.get("start_datetime") and props.get("end_datetime"):
        # the item's interval, kept (as UTC timestamps) so that date filters on the
        # collection match it as the STAC search did
        for key in ("start_datetime", "end_datetime"):
            flat[key] = parse_datetime(props[key], name=f"item {item['id']} {key}")
    code = props.get("proj:code") or (
        f"EPSG:{props['proj:epsg']}" if props.get("proj:epsg") else None
    )
    return Record(
        id=str(item["id"]),
        assets=resolve_bands(assets, band_map, band_index_map, item_id=str(item["id"])),
        datetime=parse_datetime(when, name=f"item {item['id']} datetime") if when else None,
        collection=item.get("collection"),
        geometry=_item_footprint(geom, item.get("bbox")) if geom else None,
        properties=flat,
        proj_code=code,
    )


def _item_footprint(geometry: Mapping[str, Any], bbox: Any) -> Any:
    """A STAC item's geometry as a CRS84 footprint split at ±180 (see
    :func:`split_at_antimeridian`); the item's bbox says whether it crosses."""
    import shapely.geometry

    from ..geo.geometry import split_at_antimeridian

    crosses = isinstance(bbox, list | tuple) and len(bbox) in (4, 6)
    crosses = crosses and bbox[0] > bbox[len(bbox) // 2]
    return split_at_antimeridian(shapely.geometry.shape(geometry), crosses=crosses)


def _is_scalar(v: Any) -> bool:
    return isinstance(v, str | int | float | bool) or v is None


def _resolve_href(href: str, base: str) -> str:
    """``href`` as read from the STAC file at ``base`` (RFC 3986, as pystac resolves it):
    against a URL of any scheme (``http``, ``s3`` ...) a path-absolute href
    (``/data/x.tif``) keeps the URL's host; against a local file it is a local path."""
    from urllib.parse import urljoin

    if "://" in href:
        return href
    if "://" in base:
        # urljoin resolves relative references for the schemes it knows only
        scheme, rest = base.split("://", 1)
        return f"{scheme}://{urljoin(f'http://{rest}', href).removeprefix('http://')}"
    if href.startswith("/"):
        return href
    import os.path
    from pathlib import Path

    return os.path.normpath(Path(base).parent / href)
