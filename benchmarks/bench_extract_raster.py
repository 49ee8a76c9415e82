"""``extract_raster_4tiles``: raster mode over a bbox touching all four DEM tiles of the
fixture world (≈1140² float32 px), every request through the latency proxy.

* ``ours``: ``tessellum.mosaic.extract_raster_sync`` — STAC search (its API also behind a
  latency proxy), one header read per tile, coalesced tile reads, COG written.
* ``rasterio-merge-tuned``: the seed's method — ``rasterio.merge.merge`` over the four
  ``/vsicurl/`` URLs with the cloud-COG GDAL settings, bounds snapped outward to the
  source grid, written with the same COG options. It is handed the tile URLs directly
  (no STAC search), which favours it.

Both read their output file back and report a hash of its pixels: the runner flags any
difference. Run on its own (the registry entry is the lead's to add)::

    .venv/bin/python -m benchmarks.bench_extract_raster --latency 20 --repeat 5
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.core import Benchmark, Case, CaseContext
from benchmarks.window_2048 import TUNED_GDAL

__all__ = ["BENCHMARK", "ours", "rasterio_merge_tuned"]

BBOX = (-112.95, 41.05, -111.05, 42.95)


# The same output as raster mode, written the same (fastest known) way: overviews built on
# an uncompressed in-memory GeoTIFF, then one COG copy that compresses everything once.
def _cog_options() -> dict[str, str]:
    from tessellum.mosaic._cog import COG_OPTIONS

    return {**COG_OPTIONS, "OVERVIEWS": "FORCE_USE_EXISTING"}


_STAC: dict[str, Any] = {}  # base_url -> (RustacServer, LatencyProxy), one per process


def _prepare() -> dict[str, Path]:
    from tessellum.testing import get_world

    world = get_world()
    return {f.item_id: f.path for f in world.files_of("cop-dem-glo-30")}


def _pixels_hash(path: Path) -> dict[str, Any]:
    import rasterio

    with rasterio.open(path) as ds:
        arr = ds.read(1)
    return {"shape": list(arr.shape), "checksum": hashlib.sha256(arr.tobytes()).hexdigest()[:16]}


def _stac_api(ctx: CaseContext) -> str:
    """A STAC API whose DEM items point at the served tiles, behind its own latency proxy
    (started once per process: the first trial pays ≈0.2 s for it)."""
    from tessellum.testing import get_world
    from tessellum.testing.servers import LatencyProxy, RustacServer

    if ctx.base_url not in _STAC:
        world = get_world()
        items = world.items(None, collection="cop-dem-glo-30")
        for item in items:
            item["assets"]["data"]["href"] = ctx.url(item["id"])
            item["links"] = []
        colls = [c for c in world.collections(None) if c["id"] == "cop-dem-glo-30"]
        for c in colls:
            c["links"] = []
        api = RustacServer(colls, items).start()
        proxy = LatencyProxy(api.url, delay_ms=ctx.latency_ms).start()
        _STAC[ctx.base_url] = (api, proxy)
    _STAC[ctx.base_url][1].delay_ms = ctx.latency_ms
    return _STAC[ctx.base_url][1].url


def ours(ctx: CaseContext) -> dict[str, Any]:
    """tessellum raster mode, production path with the STAC API URL overridden."""
    from tessellum.config import settings_override
    from tessellum.mosaic import extract_raster_sync

    api = _stac_api(ctx)
    with tempfile.TemporaryDirectory() as tmp, settings_override(stac_api=api):
        res = extract_raster_sync("copernicus_dem:elevation", ctx.params["bbox"], tmp)
        return _pixels_hash(res.path)


def _snap(bbox: tuple[float, ...], transform: Any) -> tuple[float, float, float, float]:
    """Snap a bbox outward to a north-up source grid (what raster mode promises)."""
    a, c, e, f = transform.a, transform.c, transform.e, transform.f
    eps = 1e-6
    c0 = math.floor((bbox[0] - c) / a + eps)
    c1 = math.ceil((bbox[2] - c) / a - eps)
    r0 = math.floor((bbox[3] - f) / e + eps)
    r1 = math.ceil((bbox[1] - f) / e - eps)
    return (c + c0 * a, f + r1 * e, c + c1 * a, f + r0 * e)


def rasterio_merge_tuned(ctx: CaseContext) -> dict[str, Any]:
    """The seed's method: windowed ``rasterio.merge`` over ``/vsicurl/``, tuned GDAL."""
    import rasterio
    import rasterio.merge
    import rasterio.shutil
    from rasterio.enums import Resampling
    from rasterio.io import MemoryFile

    from tessellum.mosaic._cog import overview_factors

    urls = [f"/vsicurl/{ctx.url(name)}" for name in sorted(ctx.files)]
    with rasterio.Env(**TUNED_GDAL):
        datasets = [rasterio.open(u) for u in urls]
        try:
            ref = datasets[0]
            bounds = _snap(ctx.params["bbox"], ref.transform)
            arr, transform = rasterio.merge.merge(
                datasets, bounds=bounds, res=ref.res, nodata=ref.nodata
            )
            profile = {
                "driver": "GTiff", "width": arr.shape[2], "height": arr.shape[1], "count": 1,
                "dtype": arr.dtype.name, "crs": ref.crs, "transform": transform,
                "nodata": ref.nodata, "tiled": True, "blockxsize": 512, "blockysize": 512,
            }  # fmt: skip
        finally:
            for ds in datasets:
                ds.close()
    with tempfile.TemporaryDirectory() as tmp, MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(arr)
            dst.build_overviews(overview_factors(dst.width, dst.height), Resampling.average)
        out = Path(tmp) / "dem.tif"
        rasterio.shutil.copy(mem.name, str(out), driver="COG", **_cog_options())
        return _pixels_hash(out)


BENCHMARK = Benchmark(
    name="extract_raster_4tiles",
    description="raster mode: a bbox over 4 DEM tiles (≈1140² float32) -> COG",
    prepare=_prepare,
    params={"bbox": BBOX},
    cases=(
        Case(
            "ours", "benchmarks.bench_extract_raster:ours", description="tessellum extract_raster"
        ),
        Case(
            "rasterio-merge-tuned",
            "benchmarks.bench_extract_raster:rasterio_merge_tuned",
            fresh_process=True,
            description="rasterio.merge over /vsicurl/ with cloud-COG GDAL settings",
        ),
    ),
)


def main(argv: list[str] | None = None) -> int:
    """Run this benchmark alone and print the table (ratio = ours / case)."""
    import argparse

    from benchmarks.run import print_table, run_benchmark

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_extract_raster")
    parser.add_argument("--latency", default="20", help="ms per request, comma-separated")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    latencies = [float(x) for x in args.latency.split(",") if x.strip()]
    rows = run_benchmark(BENCHMARK, latencies, args.repeat)
    print_table(rows)
    for row in rows:
        print(row.case, "trials ms:", [round(t.seconds * 1e3) for t in row.trials])
    for row in rows:
        mine = next(r for r in rows if r.case == "ours" and r.latency_ms == row.latency_ms)
        if row.case != "ours" and row.ratio:
            print(
                f"{row.latency_ms:g} ms: ours {mine.median_ms:.0f} ms vs {row.case} "
                f"{row.median_ms:.0f} ms -> {1 / row.ratio:.2f}x faster; pixels "
                f"{'identical' if row.status == 'ok' else row.status}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
