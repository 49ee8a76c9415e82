"""STAC Collections, Items and the static catalog of the fixture world.

Items are built from the spec alone (grids, CRSs, dates), so they never disagree with
the files. Asset hrefs are stored as the file's ``relpath``; :class:`World` rewrites
them to a base URL or an absolute path, and the static catalog to relative hrefs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ._world_spec import S2_BANDS

__all__ = ["COG_TYPE", "STAC_VERSION", "build_stac", "write_static_catalog"]

STAC_VERSION = "1.1.0"
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
_EXT = {
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
}
_NAIP_BANDS = [
    {"name": "Red", "common_name": "red"},
    {"name": "Green", "common_name": "green"},
    {"name": "Blue", "common_name": "blue"},
    {"name": "NIR", "common_name": "nir", "description": "near-infrared"},
]
_DENSIFY = 16  # points per footprint edge when reprojecting


def _affine(gt: list[float]) -> list[float]:
    """GDAL geotransform -> STAC ``proj:transform`` (a, b, c, d, e, f)."""
    return [gt[1], gt[2], gt[0], gt[4], gt[5], gt[3]]


def _native_bounds(spec: dict[str, Any]) -> list[float]:
    gt, w, h = spec["transform"], spec["width"], spec["height"]
    xs = [gt[0], gt[0] + w * gt[1]]
    ys = [gt[3], gt[3] + h * gt[5]]
    return [min(xs), min(ys), max(xs), max(ys)]


def _is_epsg(crs: str) -> bool:
    return crs.upper().startswith("EPSG:")


def _footprint(spec: dict[str, Any]) -> tuple[dict[str, Any], list[float]]:
    """GeoJSON geometry (EPSG:4326) and bbox; split at the antimeridian (RFC 7946)."""
    x0, y0, x1, y1 = _native_bounds(spec)
    if spec["crs"] == "EPSG:4326":
        if x1 > 180.0:  # crosses the antimeridian: two parts, bbox west > east
            west = [[x0, y0], [180.0, y0], [180.0, y1], [x0, y1], [x0, y0]]
            east = [[-180.0, y0], [x1 - 360, y0], [x1 - 360, y1], [-180.0, y1], [-180.0, y0]]
            geom = {"type": "MultiPolygon", "coordinates": [[west], [east]]}
            return geom, [x0, y0, x1 - 360.0, y1]
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        return {"type": "Polygon", "coordinates": [ring]}, [x0, y0, x1, y1]
    from pyproj import CRS, Transformer

    tr = Transformer.from_crs(CRS.from_user_input(spec["crs"]), "EPSG:4326", always_xy=True)
    t = [i / _DENSIFY for i in range(_DENSIFY)]
    pts = (
        [(x0 + (x1 - x0) * s, y0) for s in t]
        + [(x1, y0 + (y1 - y0) * s) for s in t]
        + [(x1 - (x1 - x0) * s, y1) for s in t]
        + [(x0, y1 - (y1 - y0) * s) for s in t]
    )
    lons, lats = tr.transform([p[0] for p in pts], [p[1] for p in pts])
    ring = [[round(lo, 9), round(la, 9)] for lo, la in zip(lons, lats, strict=True)]
    ring.append(ring[0])
    bbox = [min(lons), min(lats), max(lons), max(lats)]
    return {"type": "Polygon", "coordinates": [ring]}, bbox


def _nodata_json(value: float | None) -> float | str | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def _raster_bands(entry: dict[str, Any]) -> list[dict[str, Any]]:
    spec = entry["spec"]
    band: dict[str, Any] = {
        "data_type": spec.get("tiff_dtype", spec["dtype"]),
        "spatial_resolution": abs(spec["transform"][1]),
    }
    if spec["nodata"] is not None:
        band["nodata"] = _nodata_json(spec["nodata"])
    if spec["nbits"]:
        band["bits_per_sample"] = spec["nbits"]
    if spec["scale"] is not None:
        band["scale"] = spec["scale"]
    if spec["offset"] is not None:
        band["offset"] = spec["offset"]
    if entry["dataset"] == "sentinel-2-l2a" and entry["asset_key"] != "scl":
        band.update(scale=0.0001, offset=-0.1)  # Earth Search's L2A convention
    return [dict(band) for _ in range(spec["count"])]


def _eo_bands(entry: dict[str, Any]) -> list[dict[str, Any]] | None:
    if entry["dataset"] == "sentinel-2-l2a":
        code, _res, wl, fwhm, common = S2_BANDS[entry["asset_key"]]
        if wl is None:
            return None
        return [
            {"name": code, "common_name": common, "center_wavelength": wl,
             "full_width_half_max": fwhm}
        ]  # fmt: skip
    if entry["dataset"] == "naip":
        return _NAIP_BANDS[: entry["spec"]["count"]]
    return None


def _proj_fields(spec: dict[str, Any]) -> dict[str, Any]:
    crs = spec["crs"]
    out: dict[str, Any] = {
        "proj:code": crs.upper() if _is_epsg(crs) else None,
        "proj:epsg": int(crs.split(":")[1]) if _is_epsg(crs) else None,
        "proj:shape": [spec["height"], spec["width"]],
        "proj:transform": _affine(spec["transform"]),
        "proj:bbox": _native_bounds(spec),
    }
    if not _is_epsg(crs):
        from pyproj import CRS

        c = CRS.from_user_input(crs)
        out["proj:wkt2"] = c.to_wkt("WKT2_2019")
        out["proj:projjson"] = c.to_json_dict()
    return out


def _asset(entry: dict[str, Any]) -> dict[str, Any]:
    spec = entry["spec"]
    code = entry["asset_key"]
    if entry["dataset"] == "sentinel-2-l2a":
        code = S2_BANDS[entry["asset_key"]][0]
    asset: dict[str, Any] = {
        "href": entry["relpath"],
        "type": COG_TYPE,
        "title": f"{code} ({entry['key']})",
        "roles": ["data"],
        "proj:shape": [spec["height"], spec["width"]],
        "proj:transform": _affine(spec["transform"]),
        "raster:bands": _raster_bands(entry),
    }
    eo = _eo_bands(entry)
    if eo:
        asset["eo:bands"] = eo
    return asset


def _item(item: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    primary = entries[0]["spec"]
    geometry, bbox = _footprint(primary)
    props = {"datetime": item["datetime"], **item["properties"], **_proj_fields(primary)}
    exts = [_EXT["proj"], _EXT["raster"]]
    assets = {e["asset_key"]: _asset(e) for e in entries}
    if any("eo:bands" in a for a in assets.values()) or "eo:cloud_cover" in props:
        exts.append(_EXT["eo"])
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": exts,
        "id": item["id"],
        "collection": item["collection"],
        "geometry": geometry,
        "bbox": bbox,
        "properties": props,
        "assets": assets,
        "links": [],
    }


def _union_bbox(bboxes: list[list[float]]) -> list[float]:
    if any(b[0] > b[2] for b in bboxes):  # an antimeridian item: span all longitudes
        return [-180.0, min(b[1] for b in bboxes), 180.0, max(b[3] for b in bboxes)]
    return [min(b[0] for b in bboxes), min(b[1] for b in bboxes),
            max(b[2] for b in bboxes), max(b[3] for b in bboxes)]  # fmt: skip


def _collection(ds_id: str, info: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    times = sorted(i["properties"]["datetime"] for i in items)
    item_assets: dict[str, Any] = {}
    for it in items:
        for key, asset in it["assets"].items():
            if key not in item_assets:
                meta = {k: v for k, v in asset.items() if k not in ("href", "proj:shape",
                                                                     "proj:transform")}  # fmt: skip
                meta["title"] = info["band_codes"].get(key, key)
                item_assets[key] = meta
    codes = sorted({i["properties"]["proj:code"] or "custom" for i in items})
    summaries: dict[str, Any] = {"proj:code": codes}
    for field in ("platform", "constellation", "gsd"):
        values = sorted({i["properties"][field] for i in items if field in i["properties"]})
        if values:
            summaries[field] = values
    clouds = [
        i["properties"]["eo:cloud_cover"] for i in items if "eo:cloud_cover" in i["properties"]
    ]
    if clouds:
        summaries["eo:cloud_cover"] = {"minimum": min(clouds), "maximum": max(clouds)}
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": list(_EXT.values()),
        "id": ds_id,
        "title": info["title"],
        "description": info["description"],
        "license": info["license"],
        "keywords": ["tessellum", "synthetic"],
        "extent": {
            "spatial": {"bbox": [_union_bbox([i["bbox"] for i in items])]},
            "temporal": {"interval": [[times[0], times[-1]]]},
        },
        "summaries": summaries,
        "item_assets": item_assets,
        "links": [],
    }


def build_stac(spec: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Collections and Items of a world spec; asset hrefs are the files' relpaths."""
    by_item: dict[str, list[dict[str, Any]]] = {}
    for entry in spec["files"]:
        if entry["item_id"] is not None and not entry["spec"]["corrupt"]:
            by_item.setdefault(entry["item_id"], []).append(entry)
    items = [_item(it, by_item[it["id"]]) for it in spec["items"]]
    collections = []
    for ds_id, info in spec["datasets"].items():
        members = [i for i in items if i["collection"] == ds_id]
        if members:
            collections.append(_collection(ds_id, info, members))
    return collections, items


def _dump(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def write_static_catalog(
    root: Path, collections: list[dict[str, Any]], items: list[dict[str, Any]]
) -> Path:
    """Write a self-contained static catalog under ``root/stac`` with relative hrefs.

    Asset hrefs point into ``root/data`` relative to each item file, so the catalog works
    from disk and when ``root`` is served over HTTP.

    Returns:
        The path of ``stac/catalog.json``.
    """
    stac = root / "stac"
    catalog = {
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": "tessellum-world",
        "title": "tessellum fixture world",
        "description": "Synthetic GeoTIFFs mirroring real dataset layouts.",
        "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json"}]
        + [
            {"rel": "child", "href": f"./{c['id']}/collection.json", "type": "application/json"}
            for c in collections
        ],
    }
    _dump(stac / "catalog.json", catalog)
    for coll in collections:
        members = [i for i in items if i["collection"] == coll["id"]]
        links = [
            {"rel": "root", "href": "../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
        ] + [
            {"rel": "item", "href": f"./{i['id']}/{i['id']}.json", "type": "application/geo+json"}
            for i in members
        ]
        _dump(stac / coll["id"] / "collection.json", {**coll, "links": links})
        for it in members:
            assets = {k: {**a, "href": f"../../../{a['href']}"} for k, a in it["assets"].items()}
            links = [
                {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
                {"rel": "parent", "href": "../collection.json", "type": "application/json"},
                {"rel": "collection", "href": "../collection.json", "type": "application/json"},
            ]
            _dump(stac / coll["id"] / it["id"] / f"{it['id']}.json",
                  {**it, "assets": assets, "links": links})  # fmt: skip
    return stac / "catalog.json"
