"""``attributes_2000``: 2,000 HRU polygons x 2 datasets (DEM mean, WorldCover majority) on
the fixture world, every request through the latency proxy.

* ``ours``: ``tessellum.attributes.batch_extract`` on the production path: STAC search
  (rustac, behind its own latency proxy), one header read per tile, each needed tile
  fetched once for all polygons, exact coverage weights. No result cache (NullResultCache)
  and the tile cache is cleared: every trial computes everything.
* ``ours-2-processes``: the same with ``zonal_processes=2``: the zonal passes run in two
  worker processes, free of the GIL the event loop and the other dataset's reduction
  want (the pool started in the warmup, as a long-lived process or service starts it
  once).
* ``exactextract-vsicurl``: exactextract 0.3 over a GDAL VRT of the ``/vsicurl/`` tiles
  (handed the tile URLs directly, no STAC search), cloud-COG GDAL settings, GDAL's block
  cache shared by all polygons; same operations (``mean``/``majority`` with
  ``coverage_weight=area_spherical_m2``).
* ``per-geometry``: how a per-geometry service fetches: each (polygon, dataset) request
  opens the VRT and does one windowed rasterio read (no /vsicurl/ cache shared between
  requests), then exactextract on that window; 16 requests in flight at once.

Run::

    .venv/bin/python -m benchmarks.run attributes_2000 --latency 20 --repeat 3
"""

from __future__ import annotations

import asyncio
import functools
import math
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.core import Benchmark, Case, CaseContext
from benchmarks.window_2048 import TUNED_GDAL

__all__ = [
    "BENCHMARK",
    "exactextract_vsicurl",
    "hru_polygons",
    "ours",
    "ours_processes",
    "per_geometry",
]

N_HRU = 2000
ZONAL_PROCESSES = 2
DEM, LC = "copernicus_dem:elevation", "esa_worldcover:land_cover"
_DATASETS = {"dem": ("cop-dem-glo-30", DEM, "mean"), "lc": ("esa-worldcover", LC, "majority")}
_AREA = "(coverage_weight=area_spherical_m2)"


@functools.lru_cache(maxsize=4)
def hru_polygons(n: int = N_HRU, seed: int = 42) -> list[Any]:
    """Deterministic HRU-like polygons (≈0.5-8 km across) over the DEM's 2x2° area
    (made once per process, in every case's untimed warmup: inputs, not work)."""
    import numpy as np
    import shapely

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        cx, cy = rng.uniform(-112.95, -111.05), rng.uniform(41.05, 42.95)
        r = rng.uniform(0.003, 0.03)
        pts = np.column_stack([cx + rng.normal(0, r, 12), cy + rng.normal(0, r, 12)])
        out.append(shapely.convex_hull(shapely.multipoints(pts)))
    return out


def _prepare() -> dict[str, Path]:
    from tessellum.testing import get_world

    world = get_world()
    return {
        f"{key}/{f.item_id}": f.path
        for key, (coll, _, _) in _DATASETS.items()
        for f in world.files_of(coll)
    }


def _checksum(dem_means: list[Any], lc_majorities: list[Any]) -> str:
    dem = sum(v for v in dem_means if v is not None and not math.isnan(v))
    lc = sum(int(v) for v in lc_majorities if v is not None and not math.isnan(v))
    return f"{dem / len(dem_means):.1f}/{lc}"


# --- ours ----------------------------------------------------------------------------
_STAC: dict[str, Any] = {}


def _stac_api(ctx: CaseContext) -> str:
    """A STAC API whose items point at the served tiles, behind its own latency proxy."""
    from tessellum.testing import get_world
    from tessellum.testing.servers import LatencyProxy, RustacServer

    if ctx.base_url not in _STAC:
        world = get_world()
        colls = {coll for coll, _, _ in _DATASETS.values()}
        items = []
        for key, (coll, _, _) in _DATASETS.items():
            for item in world.items(None, collection=coll):
                for asset in item["assets"].values():
                    asset["href"] = ctx.url(f"{key}/{item['id']}")
                item["links"] = []
                items.append(item)
        collections = [c for c in world.collections(None) if c["id"] in colls]
        for c in collections:
            c["links"] = []
        api = RustacServer(collections, items).start()
        proxy = LatencyProxy(api.url, delay_ms=ctx.latency_ms).start()
        _STAC[ctx.base_url] = (api, proxy)
    _STAC[ctx.base_url][1].delay_ms = ctx.latency_ms
    return _STAC[ctx.base_url][1].url


def warm_ours(ctx: CaseContext) -> None:
    """Start the STAC API, make the polygons and pay one-off imports (PROJ) before
    timing."""
    from shapely.geometry import box

    from tessellum.attributes import AttributeEngine, NullResultCache, batch_extract_sync
    from tessellum.config import settings_override
    from tessellum.read import default_tile_cache

    hru_polygons()
    with settings_override(stac_api=_stac_api(ctx)):
        eng = AttributeEngine(cache=NullResultCache())
        batch_extract_sync([box(-112.5, 42.5, -112.49, 42.51)], [DEM, LC], engine=eng)
    default_tile_cache().clear()


def warm_ours_processes(ctx: CaseContext) -> None:
    """:func:`warm_ours`, and the zonal worker pool started (a long-lived process or
    service starts it once)."""
    from tessellum.attributes import start_zonal_workers

    warm_ours(ctx)
    start_zonal_workers(ZONAL_PROCESSES)


def ours_processes(ctx: CaseContext) -> dict[str, Any]:
    """:func:`ours` with ``zonal_processes=2``: the zonal passes in worker processes."""
    from tessellum.config import settings_override

    with settings_override(zonal_processes=ZONAL_PROCESSES):
        return ours(ctx)


def ours(ctx: CaseContext) -> dict[str, Any]:
    """tessellum batch_extract: both datasets concurrently, tiles read once."""
    from tessellum.attributes import (
        AttributeEngine,
        NullResultCache,
        StacCollectionSource,
        batch_extract,
    )
    from tessellum.config import settings_override
    from tessellum.read import default_tile_cache

    polys = hru_polygons()
    default_tile_cache().clear()
    engine = AttributeEngine(cache=NullResultCache(), collections=StacCollectionSource())

    async def run() -> list[Any]:
        return await asyncio.gather(
            batch_extract(polys, [DEM], aggregation="mean", engine=engine),
            batch_extract(polys, [LC], aggregation="majority", engine=engine),
        )

    with settings_override(stac_api=_stac_api(ctx)):
        dem, lc = asyncio.run(run())
    assert not dem.failed_datasets and not lc.failed_datasets
    return {
        "checksum": _checksum(
            [i.results[0].value for i in dem.items], [i.results[0].value for i in lc.items]
        )
    }


# --- peers ---------------------------------------------------------------------------
def _vrt(ctx: CaseContext, key: str, path: Path) -> None:
    """A GDAL VRT mosaicking the ``/vsicurl/`` tiles of one dataset."""
    import rasterio

    urls = [f"/vsicurl/{ctx.url(name)}" for name in sorted(ctx.files) if name.startswith(key)]
    infos = []
    with rasterio.Env(**TUNED_GDAL):
        for u in urls:
            with rasterio.open(u) as ds:
                infos.append((u, ds.transform, ds.width, ds.height, ds.dtypes[0], ds.nodata))
    res = infos[0][1].a
    west = min(t.c for _, t, *_ in infos)
    north = max(t.f for _, t, *_ in infos)
    east = max(t.c + w * res for _, t, w, *_ in infos)
    south = min(t.f - h * res for _, t, _, h, *_ in infos)
    width, height = round((east - west) / res), round((north - south) / res)
    dtype = {"float32": "Float32", "uint8": "Byte"}[infos[0][4]]
    sources = "".join(
        f"<ComplexSource><SourceFilename relativeToVRT='0'>{u}</SourceFilename>"
        f"<SourceBand>1</SourceBand><SrcRect xOff='0' yOff='0' xSize='{w}' ySize='{h}'/>"
        f"<DstRect xOff='{round((t.c - west) / res)}' yOff='{round((north - t.f) / res)}' "
        f"xSize='{w}' ySize='{h}'/><NODATA>{nd:g}</NODATA></ComplexSource>"
        for u, t, w, h, _, nd in infos
    )
    path.write_text(
        f"<VRTDataset rasterXSize='{width}' rasterYSize='{height}'>"
        f"<SRS>EPSG:4326</SRS><GeoTransform>{west!r}, {res!r}, 0, {north!r}, 0, {-res!r}"
        f"</GeoTransform><VRTRasterBand dataType='{dtype}' band='1'>"
        f"<NoDataValue>{infos[0][5]:g}</NoDataValue>{sources}</VRTRasterBand></VRTDataset>"
    )


def _features(polys: list[Any]) -> list[dict[str, Any]]:
    from shapely.geometry import mapping

    return [{"type": "Feature", "properties": {}, "geometry": mapping(p)} for p in polys]


@functools.lru_cache(maxsize=1)
def _hru_features() -> list[dict[str, Any]]:
    """The HRU polygons as GeoJSON features (exactextract's input), made once."""
    return _features(hru_polygons())


def warm_gdal(ctx: CaseContext) -> None:
    """GDAL's one-off start-up costs and the input polygons, before timing."""
    from benchmarks.window_2048 import gdal_warmup

    gdal_warmup(ctx)
    _hru_features()


def exactextract_vsicurl(ctx: CaseContext) -> dict[str, Any]:
    """exactextract over a VRT of the /vsicurl/ tiles, tuned GDAL, one pass per dataset."""
    import rasterio
    from exactextract import exact_extract

    feats = _hru_features()
    out = {}
    with tempfile.TemporaryDirectory() as tmp, rasterio.Env(**TUNED_GDAL):
        for key, (_, _, agg) in _DATASETS.items():
            vrt = Path(tmp) / f"{key}.vrt"
            _vrt(ctx, key, vrt)
            with rasterio.open(vrt) as ds:
                res = exact_extract(ds, feats, [f"{agg}{_AREA}"], output="geojson")
            out[key] = [f["properties"][agg] for f in res]
    return {"checksum": _checksum(out["dem"], out["lc"])}


def per_geometry(ctx: CaseContext) -> dict[str, Any]:
    """One request per (polygon, dataset): open, one windowed read, exactextract on it."""
    import numpy as np
    import rasterio
    from exactextract import exact_extract
    from exactextract.raster import NumPyRasterSource
    from rasterio.windows import from_bounds

    polys = hru_polygons()
    no_cache = ":".join(f"/vsicurl/{ctx.url(n)}" for n in ctx.files)
    env = {**TUNED_GDAL, "VSI_CACHE": "FALSE", "CPL_VSIL_CURL_NON_CACHED": no_cache}
    out: dict[str, list[Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        with rasterio.Env(**env):
            vrts = {}
            for key in _DATASETS:
                vrts[key] = Path(tmp) / f"{key}.vrt"
                _vrt(ctx, key, vrts[key])

        def one(job: tuple[str, Any]) -> Any:
            key, poly = job
            agg = _DATASETS[key][2]
            with rasterio.Env(**env), rasterio.open(vrts[key]) as ds:
                win = from_bounds(*poly.bounds, transform=ds.transform)
                col0, row0 = math.floor(win.col_off), math.floor(win.row_off)
                win = rasterio.windows.Window(
                    col0, row0,
                    math.ceil(win.col_off + win.width) - col0 + 1,
                    math.ceil(win.row_off + win.height) - row0 + 1,
                )  # fmt: skip
                arr = ds.read(1, window=win, boundless=True, fill_value=ds.nodata)
                left, top = ds.transform * (win.col_off, win.row_off)
                res = ds.transform.a
                nodata = arr.dtype.type(ds.nodata).item()
            src = NumPyRasterSource(
                np.ascontiguousarray(arr), left, top - arr.shape[0] * res,
                left + arr.shape[1] * res, top, nodata=nodata, srs_wkt="EPSG:4326",
            )  # fmt: skip
            feat = _features([poly])
            return exact_extract(src, feat, [f"{agg}{_AREA}"], output="geojson")[0]["properties"][
                agg
            ]

        with ThreadPoolExecutor(16) as pool:
            for key in _DATASETS:
                out[key] = list(pool.map(one, [(key, p) for p in polys]))
    return {"checksum": _checksum(out["dem"], out["lc"])}


BENCHMARK = Benchmark(
    name="attributes_2000",
    description="2,000 HRU polygons x 2 datasets (DEM mean, WorldCover majority)",
    prepare=_prepare,
    cases=(
        Case(
            "ours",
            "benchmarks.bench_attributes:ours",
            warmup="benchmarks.bench_attributes:warm_ours",
            description="tessellum batch_extract (STAC search, shared tile reads)",
        ),
        Case(
            "ours-2-processes",
            "benchmarks.bench_attributes:ours_processes",
            warmup="benchmarks.bench_attributes:warm_ours_processes",
            description="the same with zonal_processes=2 (zonal passes in 2 worker processes)",
        ),
        Case(
            "exactextract-vsicurl",
            "benchmarks.bench_attributes:exactextract_vsicurl",
            fresh_process=True,
            warmup="benchmarks.bench_attributes:warm_gdal",
            description="exactextract 0.3 over a VRT of /vsicurl/ tiles, tuned GDAL",
        ),
        Case(
            "per-geometry",
            "benchmarks.bench_attributes:per_geometry",
            fresh_process=True,
            warmup="benchmarks.bench_attributes:warm_gdal",
            description="one windowed rasterio read per (geometry, dataset), 16 in flight",
        ),
    ),
)
