"""A small local world for the attribute tests: a continuous DEM and a categorical land
cover, each written as one full GeoTIFF (the exactextract reference) and as 2x2 COG
tiles (what the engine reads), plus a catalog whose entries describe them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin

from tessellum._sync import run_sync

RES = 0.5 / 120  # degrees per pixel
X0, Y0 = 10.0, 47.0  # top-left corner
N = 240  # full raster is N x N pixels (2 x 2 tiles of 120 px)
CLASSES = {10: "Tree cover", 20: "Shrubland", 30: "Grassland", 40: "Cropland", 50: "Built-up"}


@dataclass
class AttrWorld:
    root: Path
    dem_full: Path
    lc_full: Path
    dem_tiles: list[Path]
    lc_tiles: list[Path]
    catalog: Any
    collections: dict[str, Any]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (X0, Y0 - N * RES, X0 + N * RES, Y0)


def _write(path: Path, arr: np.ndarray, x0: float, y0: float, nodata: Any, cog: bool) -> None:
    kw = dict(
        width=arr.shape[1], height=arr.shape[0], count=1, dtype=arr.dtype, crs="EPSG:4326",
        transform=from_origin(x0, y0, RES, RES), nodata=nodata,
    )  # fmt: skip
    if not cog:
        with rasterio.open(path, "w", driver="GTiff", **kw) as ds:
            ds.write(arr, 1)
        return
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(
        tmp, "w", driver="GTiff", tiled=True, blockxsize=32, blockysize=32, **kw
    ) as ds:
        ds.write(arr, 1)
    rasterio.shutil.copy(
        tmp, path, driver="COG", blocksize=32, compress="DEFLATE", overviews="NONE"
    )
    tmp.unlink()


def _arrays(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:N, 0:N]
    dem = (800 + 3 * xx - 2 * yy + rng.normal(0, 25, (N, N))).astype("float32")
    dem[100:130, 40:70] = -32767.0  # a nodata hole
    dem[5:12, 200:230] = -32767.0
    lc = rng.choice(list(CLASSES), size=(N, N), p=[0.4, 0.25, 0.2, 0.1, 0.05]).astype("uint8")
    lc[(xx // 30 + yy // 30) % 5 == 0] = 10  # some spatial structure
    lc[150:190, 150:175] = 0  # nodata
    return dem, lc


def build_world(root: Path) -> AttrWorld:
    from tessellum.catalog import builtin_catalog
    from tessellum.collection import build_from_files_async

    dem, lc = _arrays()
    root.mkdir(parents=True, exist_ok=True)
    (root / "dem").mkdir(exist_ok=True)
    (root / "lc").mkdir(exist_ok=True)
    dem_full, lc_full = root / "dem_full.tif", root / "lc_full.tif"
    _write(dem_full, dem, X0, Y0, -32767.0, cog=False)
    _write(lc_full, lc, X0, Y0, 0, cog=False)
    h = N // 2
    dem_tiles, lc_tiles = [], []
    for r in range(2):
        for c in range(2):
            x0, y0 = X0 + c * h * RES, Y0 - r * h * RES
            p = root / "dem" / f"dem_{r}{c}.tif"
            _write(p, dem[r * h : (r + 1) * h, c * h : (c + 1) * h], x0, y0, -32767.0, cog=True)
            dem_tiles.append(p)
            p = root / "lc" / f"lc_{r}{c}.tif"
            _write(p, lc[r * h : (r + 1) * h, c * h : (c + 1) * h], x0, y0, 0, cog=True)
            lc_tiles.append(p)
    base = builtin_catalog()
    cat = base
    for ds_id, overrides in {
        "copernicus_dem:elevation": {"native_resolution": RES},
        "nasadem:elevation": {"native_resolution": RES},
        "esa_worldcover:land_cover": {
            "native_resolution": RES, "classes": CLASSES, "temporal": False,
            "default_time_range": None,
        },
    }.items():  # fmt: skip
        entry = base.get(ds_id)
        cat = cat.register(entry.model_copy(update=overrides), replace=True)

    async def collections() -> dict[str, Any]:
        d = await build_from_files_async(root / "dem", name="dem", band="elevation")
        lcc = await build_from_files_async(root / "lc", name="lc", band="land_cover")
        return {
            "copernicus_dem:elevation": d,
            "nasadem:elevation": d,
            "esa_worldcover:land_cover": lcc,
        }

    return AttrWorld(root, dem_full, lc_full, dem_tiles, lc_tiles, cat, run_sync(collections()))


def random_polygons(n: int, seed: int = 1, *, inside: bool = True) -> list[Any]:
    """Random convex polygons and star shapes within (or straddling) the world."""
    import shapely
    from shapely.geometry import MultiPolygon, Point

    rng = np.random.default_rng(seed)
    out = []
    span = N * RES
    for i in range(n):
        cx = X0 + rng.uniform(0.05, 0.95) * span
        cy = Y0 - rng.uniform(0.05, 0.95) * span
        if i % 5 == 0:  # centre near the tile seam
            cx = X0 + span / 2 + rng.uniform(-0.02, 0.02)
        r = rng.uniform(0.004, 0.08)
        pts = np.column_stack([cx + rng.normal(0, r, 12), cy + rng.normal(0, r, 12)])
        poly = shapely.convex_hull(shapely.multipoints(pts))
        if i % 7 == 3:  # a hole
            poly = poly.difference(Point(cx, cy).buffer(r / 3))
        if i % 11 == 5:  # a multipolygon
            poly = MultiPolygon([poly, Point(cx + 3 * r, cy).buffer(r / 2)])
        if not inside and i % 4 == 0:  # hangs over the world's edge
            poly = shapely.affinity.translate(poly, xoff=span * 0.6)
        out.append(shapely.make_valid(poly))
    return out


class UvicornThread:
    """A real uvicorn server on 127.0.0.1 (free port) in a daemon thread."""

    def __init__(self, app: Any):
        import socket
        import threading

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        from tessellum.service import ServiceSettings

        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off",
                                timeout_keep_alive=ServiceSettings().keep_alive_s)  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> UvicornThread:
        import time

        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)
