"""The fixture world's specification: pure data, hashed into the cache directory name.

:func:`build_spec` returns a JSON-serialisable dict ``{"size", "seed", "files", "items",
"datasets"}``. Each file entry carries ``key``/``relpath``/``dataset``/``item_id``/
``asset_key``, a ``spec`` (the GeoTIFF layout as GDAL is asked to write it) and a
``content`` (which synthetic field fills it). Everything a file or a STAC item looks like
is decided here; the generator only executes it. Change a value and the spec hash, hence
the cache directory, changes too.
"""

from __future__ import annotations

from typing import Any

from ..errors import ValidationError
from ._world_entry import entry as _entry
from ._world_entry import mgrs_square
from ._world_spec_edge import bench_files, edge_files

__all__ = ["GENERATOR_VERSION", "S2_BANDS", "SIZES", "build_spec"]

#: Bump when the generator's output changes for an unchanged spec.
GENERATOR_VERSION = "1"

SIZES = ("small", "bench")


# --------------------------------------------------------------------------- DEM
def _dem(files: list, items: list) -> None:
    res = 1 / 600
    # Nodata holes (lon, lat, radius deg); the first is centred on the lon=-112 seam.
    holes = [[-112.0, 41.7, 0.02], [-112.6, 42.4, 0.015], [-111.3, 41.25, 0.01]]
    for lat0 in (41, 42):
        for lon0 in (-113, -112):
            ns, ew = f"N{lat0:02d}", f"W{-lon0:03d}"
            name = f"Copernicus_DSM_COG_10_{ns}_00_{ew}_00_DEM"
            files.append(
                _entry(
                    f"dem/{ns}{ew}",
                    f"data/cop-dem-glo-30/{name}.tif",
                    "cop-dem-glo-30",
                    name,
                    "data",
                    {"kind": "dem", "holes": holes},
                    dtype="float32",
                    width=600,
                    height=600,
                    blocksize=256,
                    predictor=3,
                    nodata=-32767.0,
                    crs="EPSG:4326",
                    # GLO-30 layout: pixel centres on the integer-degree grid, so the
                    # outer edge sits half a pixel beyond the degree; east/south shared
                    # rows dropped; declared PixelIsPoint like the real tiles.
                    transform=[lon0 - res / 2, res, 0.0, lat0 + 1 + res / 2, 0.0, -res],
                    area_or_point="Point",
                    resampling="AVERAGE",
                )
            )
            items.append(
                {
                    "id": name,
                    "collection": "cop-dem-glo-30",
                    "datetime": "2021-04-22T00:00:00Z",
                    "properties": {"gsd": 30},
                }
            )


# --------------------------------------------------------------------- WorldCover
def _worldcover(files: list, items: list) -> None:
    res = 1 / 400
    for lat0 in (39, 42):
        lon0 = -114
        name = f"ESA_WorldCover_10m_2021_v200_N{lat0:02d}W{-lon0:03d}_Map"
        item_id = name.removesuffix("_Map")
        files.append(
            _entry(
                f"worldcover/N{lat0:02d}W{-lon0:03d}",
                f"data/esa-worldcover/{name}.tif",
                "esa-worldcover",
                item_id,
                "map",
                # 0 (nodata) discs: one inside the DEM's N42W113 tile, one far away.
                {
                    "kind": "landcover",
                    "cell": 0.08,
                    "holes": [[-112.8, 42.6, 0.05], [-113.5, 40.0, 0.2]],
                },
                dtype="uint8",
                width=1200,
                height=1200,
                nodata=0,
                crs="EPSG:4326",
                transform=[lon0, res, 0.0, lat0 + 3, 0.0, -res],
                resampling="MODE",
            )
        )
        items.append(
            {
                "id": item_id,
                "collection": "esa-worldcover",
                "datetime": "2021-01-01T00:00:00Z",
                "properties": {
                    "start_datetime": "2021-01-01T00:00:00Z",
                    "end_datetime": "2021-12-31T23:59:59Z",
                    "esa_worldcover:product_tile": f"N{lat0:02d}W{-lon0:03d}",
                },
            }
        )


# ---------------------------------------------------------------------- Sentinel-2
#: asset key -> (band code, resolution m, centre wavelength um, FWHM um, common name)
S2_BANDS: dict[str, tuple[str, int, float | None, float | None, str | None]] = {
    "blue": ("B02", 10, 0.49, 0.098, "blue"),
    "green": ("B03", 10, 0.56, 0.045, "green"),
    "red": ("B04", 10, 0.665, 0.038, "red"),
    "nir": ("B08", 10, 0.842, 0.145, "nir"),
    "rededge1": ("B05", 20, 0.704, 0.019, "rededge"),
    "scl": ("SCL", 20, None, None, None),
}

# Two scenes straddling the UTM 11/12 boundary (lon -114) at lat ~42; the zone-11 scene
# has a nodata corner over the overlap, like a swath edge. (datetime, platform, cloud %).
_S2_SCENES: list[dict[str, Any]] = [
    {
        "zone": 12,
        "x0": 240000.0,
        "y0": 4665600.0,
        "compression": "DEFLATE",
        "nodata_edge": False,
        "dates": [
            ("2024-01-05T18:24:31Z", "S2B", 10.0),
            ("2024-01-20T18:24:59Z", "S2A", 40.0),
            ("2024-01-31T23:10:00Z", "S2B", 0.0),
        ],
    },
    {
        "zone": 11,
        "x0": 744640.0,
        "y0": 4665600.0,
        "compression": "ZSTD",
        "nodata_edge": True,
        "dates": [
            ("2024-01-07T18:34:11Z", "S2A", 5.0),
            ("2024-01-17T18:34:29Z", "S2B", 60.0),
            ("2024-02-01T00:05:00Z", "S2A", 20.0),
        ],
    },
]


def _s2(files: list, items: list) -> None:
    size10 = 1536
    for scene in _S2_SCENES:
        zone, x0, y0 = scene["zone"], scene["x0"], scene["y0"]
        epsg = 32600 + zone
        tile = mgrs_square(zone, x0, y0 - size10 * 10 / 2)
        for date_idx, (dt, platform, cloud) in enumerate(scene["dates"]):
            item_id = f"{platform}_{tile}_{dt[:10].replace('-', '')}_0_L2A"
            for asset_key, (code, res, *_rest) in S2_BANDS.items():
                n = size10 * 10 // res
                files.append(
                    _entry(
                        f"s2/{item_id}/{asset_key}",
                        f"data/sentinel-2-l2a/{item_id}/{code}.tif",
                        "sentinel-2-l2a",
                        item_id,
                        asset_key,
                        {
                            "kind": "s2",
                            "band": asset_key,
                            "zone": zone,
                            "date_index": date_idx,
                            "cloud_cover": cloud,
                            "nodata_edge": scene["nodata_edge"],
                            "scene": [x0, y0, size10 * 10.0],
                        },
                        dtype="uint8" if asset_key == "scl" else "uint16",
                        width=n,
                        height=n,
                        compression=scene["compression"],
                        predictor=2,
                        nodata=0,
                        crs=f"EPSG:{epsg}",
                        transform=[x0, float(res), 0.0, y0, 0.0, -float(res)],
                        resampling="NEAREST" if asset_key == "scl" else "AVERAGE",
                    )
                )
            items.append(
                {
                    "id": item_id,
                    "collection": "sentinel-2-l2a",
                    "datetime": dt,
                    "properties": {
                        "platform": f"sentinel-2{platform[-1].lower()}",
                        "constellation": "sentinel-2",
                        "instruments": ["msi"],
                        "eo:cloud_cover": cloud,
                        "s2:mgrs_tile": tile,
                        "grid:code": f"MGRS-{tile}",
                        "mgrs:utm_zone": zone,
                        "mgrs:latitude_band": tile[2],
                        "mgrs:grid_square": tile[3:],
                        "s2:processing_baseline": "05.10",
                    },
                }
            )


# ---------------------------------------------------------------------------- NAIP
_NAIP_VARIANTS: list[tuple[str, int, str, dict[str, Any]]] = [
    ("rgbn_jpeg", 4, "JPEG", {"quality": 90, "photometric": "RGB"}),
    ("rgb_ycbcr", 3, "JPEG", {"quality": 90, "photometric": "YCBCR"}),
    ("rgbn_webp", 4, "WEBP", {"quality": 90, "photometric": "RGB"}),
    ("rgbn_lerc", 4, "LERC", {"photometric": "RGB"}),
    ("rgbn_lerc_zstd", 4, "LERC_ZSTD", {"photometric": "RGB"}),
]


def _naip(files: list, items: list) -> None:
    res, n = 0.6, 1024
    for i, (variant, count, codec, extra) in enumerate(_NAIP_VARIANTS):
        x0, y0 = 416000.0 + i * n * res, 4651000.0
        quad = ("nw", "ne", "sw", "se")[i % 4]
        item_id = f"ut_m_42112{i + 1:02d}_{quad}_12_060_20230715"
        files.append(
            _entry(
                f"naip/{variant}",
                f"data/naip/{item_id}.tif",
                "naip",
                item_id,
                "image",
                {"kind": "naip"},
                **{
                    "dtype": "uint8",
                    "count": count,
                    "width": n,
                    "height": n,
                    "compression": codec,
                    "interleave": "PIXEL",
                    "crs": "EPSG:26912",
                    "transform": [x0, res, 0.0, y0, 0.0, -res],
                    "resampling": "AVERAGE",
                    **extra,
                },
            )
        )
        items.append(
            {
                "id": item_id,
                "collection": "naip",
                "datetime": "2023-07-15T16:00:00Z",
                "properties": {"gsd": res, "naip:state": "ut", "naip:year": "2023"},
            }
        )


# ------------------------------------------------------------------------ datasets
_DATASETS: dict[str, dict[str, Any]] = {
    "cop-dem-glo-30": {
        "title": "Copernicus DEM GLO-30 (synthetic)",
        "description": "1-degree float32 elevation tiles on the GLO-30 half-pixel-offset grid.",
        "license": "proprietary",
        "band_codes": {"data": "DEM"},
    },
    "esa-worldcover": {
        "title": "ESA WorldCover 10 m 2021 (synthetic)",
        "description": "3-degree uint8 land-cover class tiles (classes 10..100, nodata 0).",
        "license": "CC-BY-4.0",
        "band_codes": {"map": "Map"},
    },
    "sentinel-2-l2a": {
        "title": "Sentinel-2 L2A (synthetic)",
        "description": "UTM scenes, one COG per band, in zones 11 and 12 at several dates.",
        "license": "proprietary",
        "band_codes": {k: v[0] for k, v in S2_BANDS.items()},
    },
    "naip": {
        "title": "NAIP (synthetic)",
        "description": "0.6 m pixel-interleaved uint8 tiles in EPSG:26912 with lossy/lossless codecs.",
        "license": "proprietary",
        "band_codes": {"image": "RGBN"},
    },
    "edge-cases": {
        "title": "GeoTIFF edge cases",
        "description": "Small files exercising codecs, dtypes, byte orders and layouts.",
        "license": "CC0-1.0",
        "band_codes": {"data": "data"},
    },
    "bench-large": {
        "title": "Benchmark: one 10980x10980 S2-like COG",
        "description": "uint16, DEFLATE + predictor 2, 512 px tiles, overviews.",
        "license": "CC0-1.0",
        "band_codes": {"data": "data"},
    },
    "bench-many": {
        "title": "Benchmark: 500 small COGs",
        "description": "256x256 uint16 COGs with scattered footprints, for index builds.",
        "license": "CC0-1.0",
        "band_codes": {"data": "data"},
    },
}


def build_spec(size: str = "small", seed: int = 0) -> dict[str, Any]:
    """The full, JSON-serialisable specification of a world.

    Args:
        size: ``"small"`` or ``"bench"`` (``"small"`` plus the benchmark files).
        seed: Seed of every synthetic field.

    Returns:
        ``{"size", "seed", "files", "items", "datasets"}``.

    Raises:
        ValidationError: ``size`` is unknown.
    """
    if size not in SIZES:
        raise ValidationError(f"unknown world size {size!r}; expected one of {SIZES}")
    files: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    _dem(files, items)
    _worldcover(files, items)
    _s2(files, items)
    _naip(files, items)
    edge_files(files, items)
    if size == "bench":
        bench_files(files, items)
    used = {f["dataset"] for f in files}
    datasets = {}
    for ds_id, info in _DATASETS.items():
        if ds_id in used:
            keys = list(dict.fromkeys(f["asset_key"] for f in files if f["dataset"] == ds_id))
            datasets[ds_id] = {**info, "asset_keys": keys}
    return {"size": size, "seed": int(seed), "files": files, "items": items, "datasets": datasets}
