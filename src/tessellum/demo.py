"""``make demo``: the main job end to end on the built-in fixture world.

Generates (or reuses) the world, starts its servers on 127.0.0.1, and runs each stage
of the data path against them, printing what it did:

1. list the world and fetch one COG header over HTTP (one ranged GET);
2. build a collection from the STAC API and describe it;
3. read a chip time series and sample points, and write a quicklook PNG;
4. extract the DEM over a bbox straddling 1° tile seams as a GeoTIFF (raster mode);
5. start the stats-only service and query it with the client for a few polygons.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()

OUT = Path(".cache/demo")


def _step(title: str) -> None:
    console.rule(f"[bold]{title}")


def list_world(world) -> None:
    by_ds: dict[str, int] = {}
    for f in world.files:
        by_ds[f.dataset] = by_ds.get(f.dataset, 0) + 1
    t = Table("dataset", "files")
    for ds, n in sorted(by_ds.items()):
        t.add_row(ds, str(n))
    console.print(f"world at {world.root}")
    console.print(t)


def fetch_header(servers) -> None:
    from tessellum.store import IOStats, collect_stats, open_store, read_range_async
    from tessellum.tiff import read_header_async

    f = next(f for f in servers.world.files if f.dataset == "cop-dem-glo-30")
    url = f"{servers.data_url}/{f.relpath}"
    store, path = open_store(url)

    async def run():
        stats = IOStats()
        with collect_stats(stats):
            hdr = await read_header_async(
                lambda s, e: read_range_async(store, path, s, e, url=url, clip=True), url
            )
        return hdr, stats

    t0 = time.perf_counter()
    hdr, stats = asyncio.run(run())
    lvl = hdr.levels[0]
    console.print(f"GET {url}")
    console.print(
        f"  {lvl.width}x{lvl.height} {lvl.dtype}, tiles {lvl.tile_width}x{lvl.tile_height}, "
        f"compression {lvl.compression}, predictor {lvl.predictor}, overviews {len(hdr.levels) - 1}, "
        f"nodata {hdr.nodata_raw}, EPSG {hdr.geo.crs_epsg}, transform {tuple(round(v, 6) for v in hdr.geo.transform)}"
    )
    console.print(
        f"  {stats.requests} request(s), {stats.bytes} bytes, {1000 * (time.perf_counter() - t0):.1f} ms"
    )


def build_collection(servers, workspace: Path):
    from tessellum.collection import build_from_stac

    t0 = time.perf_counter()
    coll = build_from_stac(
        name="demo-s2",
        stac_api=servers.stac_url,
        collection="sentinel-2-l2a",
        bbox=(-114.6, 41.5, -113.4, 42.5),
        date_range=("2024-01-01", "2024-12-31"),
        workspace_dir=workspace,
        force=True,
        progress=False,
    )
    console.print(f"built {coll} in {time.perf_counter() - t0:.2f} s")
    for k, v in coll.describe().items():
        console.print(f"  {k}: {v}")
    return coll


def read_pixels(coll) -> None:
    import numpy as np
    from shapely.geometry import Point

    (w, s, e, n) = coll.bounds
    cx, cy = (w + e) / 2, (s + n) / 2
    aois = [
        Point(cx + dx, cy + dy).buffer(0.01, cap_style="square")
        for dx, dy in ((-0.05, 0), (0.05, 0))
    ]
    t0 = time.perf_counter()
    res = coll.get_numpy(aois, ["B04", "B03", "B02"])
    console.print(
        f"chip time series: data {res.data.shape} {res.data.dtype} for {res.labels.num_rows} "
        f"(geometry, record) pairs in {1000 * (time.perf_counter() - t0):.0f} ms"
    )
    rng = np.random.default_rng(0)
    pts = [Point(x, y) for x, y in zip(rng.uniform(w, e, 200), rng.uniform(s, n, 200), strict=True)]
    t0 = time.perf_counter()
    table = coll.sample_points(pts, ["B08", "SCL"], match="latest")
    console.print(
        f"sampled {table.num_rows} values at 200 points in {1000 * (time.perf_counter() - t0):.0f} ms"
    )
    console.print(table.slice(0, 5).to_pandas())
    OUT.mkdir(parents=True, exist_ok=True)
    chip = res.data[0].astype("float32")
    png = OUT / "quicklook.png"
    _write_png(chip, png)
    console.print(f"quicklook of chip 0 -> {png}")


def _write_png(chip, path: Path) -> None:
    import imagecodecs
    import numpy as np

    valid = chip[chip > 0]
    lo, hi = np.percentile(valid, (2, 98)) if valid.size else (0, 1)
    rgb = np.clip((chip - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype("uint8")
    path.write_bytes(imagecodecs.png_encode(np.ascontiguousarray(rgb.transpose(1, 2, 0))))


def extract_dem(servers) -> None:
    from tessellum.config import settings_override
    from tessellum.mosaic import extract_raster_sync

    with settings_override(stac_api=servers.stac_url):
        result = extract_raster_sync(
            "copernicus_dem:elevation",
            bbox=(-112.05, 41.95, -111.95, 42.05),
            output_dir=OUT / "rasters",
        )
    for key in (
        "path",
        "crs",
        "shape",
        "transform",
        "nodata",
        "license",
        "provenance",
        "elapsed_ms",
    ):
        console.print(f"  {key}: {getattr(result, key)}")


def query_service(servers) -> None:
    import threading

    import uvicorn
    from shapely.geometry import box, mapping

    import tessellum
    from tessellum.client import Client
    from tessellum.service import ServiceSettings, create_app
    from tessellum.testing.servers import free_port

    tessellum.configure(stac_api=servers.stac_url)  # process-wide: the server thread sees it
    port = free_port()
    config = uvicorn.Config(
        create_app(), host="127.0.0.1", port=port, log_level="warning",
        timeout_keep_alive=ServiceSettings().keep_alive_s,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    hrus = {f"hru-{i}": box(-112.06 + 0.04 * i, 41.96, -112.02 + 0.04 * i, 42.04) for i in range(4)}
    table = Table("hru", "dataset", "aggregation", "value", "units", "quality", "coverage")
    try:
        with Client(f"http://127.0.0.1:{port}") as client:
            console.print(f"service at http://127.0.0.1:{port}: {client.health()}")
            for name, geom in hrus.items():
                for ds, agg in (
                    ("copernicus_dem:elevation", "mean"),
                    ("esa_worldcover:land_cover", "majority"),
                ):
                    resp = client.extract(mapping(geom), [ds], aggregation=agg)
                    for r in resp.results:
                        value = f"{r.value:.1f}" if isinstance(r.value, float) else str(r.value)
                        table.add_row(
                            name,
                            r.dataset_id,
                            agg,
                            value,
                            r.units or "",
                            str(r.quality.value if hasattr(r.quality, "value") else r.quality),
                            f"{r.coverage_fraction:.2f}",
                        )
    finally:
        server.should_exit = True
        thread.join()
    console.print(table)


def main() -> None:
    from tessellum.testing import get_world
    from tessellum.testing.serve import serve_world

    _step("1. the fixture world")
    t0 = time.perf_counter()
    world = get_world()
    console.print(f"ready in {time.perf_counter() - t0:.1f} s")
    list_world(world)
    with serve_world(world, stac="rustac") as servers:
        console.print(
            f"HTTP {servers.http.url} ({servers.http.backend}), STAC API {servers.stac_url}"
        )
        _step("2. one COG header over HTTP")
        fetch_header(servers)
        _step("3. build a collection from the STAC API")
        coll = build_collection(servers, OUT / "collections")
        _step("4. read chips and sample points")
        read_pixels(coll)
        _step("5. raster mode: a seamless DEM GeoTIFF over tile seams")
        extract_dem(servers)
        _step("6. the stats-only service, queried with the client")
        query_service(servers)
    console.print("[green]demo finished")


if __name__ == "__main__":
    main()
