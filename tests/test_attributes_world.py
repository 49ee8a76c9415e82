"""Attributes on the fixture world, end to end: the real STAC API (rustac) and nginx.

Values are compared with exactextract run directly on the world's COG files (the DEM's
four 1° tiles and WorldCover's two 3° tiles, each merged into one raster first) for
~100 random polygons, many straddling the tile seams or the nodata holes. The batch test
reads the nginx access log: every tile a batch of 200 polygons touches is fetched once.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Point, mapping

from tessellum.attributes import (
    AttributeEngine,
    NullResultCache,
    QualityFlag,
    StacCollectionSource,
    batch_extract,
)
from tessellum.config import settings_override

DEM = "copernicus_dem:elevation"
LC = "esa_worldcover:land_cover"
DEM_SEAM_LON, DEM_SEAM_LAT = -112.0 - 1 / 1200, 42.0 + 1 / 1200  # half-pixel offset grid
LC_SEAM_LAT = 42.0
DEM_HOLES = [(-112.0, 41.7, 0.02), (-112.6, 42.4, 0.015), (-111.3, 41.25, 0.01)]
LC_HOLE = (-112.8, 42.6, 0.05)

_AREA = "(coverage_weight=area_spherical_m2)"
DEM_OPS = {
    "mean": f"mean{_AREA}",
    "median": f"median{_AREA}",
    "std": f"stdev{_AREA}",
    "sum": "sum",
    "min": "min",
    "max": "max",
}
LC_OPS = {
    "majority": [f"majority{_AREA}"],
    "minority": [f"minority{_AREA}"],
    "unique": ["unique"],
    "distribution": ["unique", f"frac{_AREA}"],
}


def world_polygons(n: int, seed: int) -> list:
    """Random HRU-like polygons over the DEM's 2x2° area: a third straddle a seam, a
    sixth sit on a nodata hole, some have holes or are MultiPolygons."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = i % 6
        if kind in (0, 1):  # straddles the lon seam of the DEM
            cx, cy = DEM_SEAM_LON + rng.uniform(-0.01, 0.01), rng.uniform(41.1, 42.9)
        elif kind == 2:  # straddles the lat seams (DEM and WorldCover), or their corner
            cx = rng.uniform(-112.9, -111.1) if i % 12 else DEM_SEAM_LON
            cy = DEM_SEAM_LAT + rng.uniform(-0.01, 0.01)
        elif kind == 3:  # on a nodata hole (DEM holes, WorldCover's disc)
            hx, hy, hr = [*DEM_HOLES, LC_HOLE][(i // 6) % 4]
            cx, cy = hx + rng.uniform(-hr, hr), hy + rng.uniform(-hr, hr)
        else:
            cx, cy = rng.uniform(-112.9, -111.1), rng.uniform(41.1, 42.9)
        r = rng.uniform(0.004, 0.04)
        pts = np.column_stack([cx + rng.normal(0, r, 14), cy + rng.normal(0, r, 14)])
        poly = shapely.convex_hull(shapely.multipoints(pts))
        if i % 7 == 3:
            poly = poly.difference(Point(cx, cy).buffer(r / 3))
        if i % 11 == 5:
            poly = MultiPolygon([poly, Point(cx + 3 * r, cy - r).buffer(r / 2)])
        out.append(shapely.make_valid(poly))
    return out


@pytest.fixture(scope="module")
def merged(world):
    """The world's DEM and WorldCover tiles merged (as the references), each with a
    valid-pixel mask raster (for the valid-area fraction)."""
    import rasterio
    import rasterio.merge
    from rasterio.io import MemoryFile

    out, files = {}, []
    for name, ds_name in (("dem", "cop-dem-glo-30"), ("lc", "esa-worldcover")):
        srcs = [rasterio.open(f.path) for f in world.files_of(ds_name)]
        try:
            arr, transform = rasterio.merge.merge(srcs, nodata=srcs[0].nodata)
            profile = {
                "driver": "GTiff", "width": arr.shape[2], "height": arr.shape[1], "count": 1,
                "crs": srcs[0].crs, "transform": transform,
            }  # fmt: skip
            nodata = srcs[0].nodata
        finally:
            for s in srcs:
                s.close()
        data_mem, mask_mem = MemoryFile(), MemoryFile()
        with data_mem.open(**profile, dtype=arr.dtype, nodata=nodata) as dst:
            dst.write(arr)
        with mask_mem.open(**profile, dtype="uint8") as dst:
            dst.write((arr != nodata).astype("uint8"))
        files += [data_mem, mask_mem]
        out[name] = (data_mem.open(), mask_mem.open())
    yield out
    for pair in out.values():
        for ds in pair:
            ds.close()
    for f in files:
        f.close()


def _reference(ds, polys, ops):
    from exactextract import exact_extract

    feats = [
        {"type": "Feature", "properties": {"i": i}, "geometry": mapping(p)}
        for i, p in enumerate(polys)
    ]
    return [f["properties"] for f in exact_extract(ds, feats, ops, output="geojson")]


@pytest.fixture(scope="module")
def polys():
    return world_polygons(100, seed=11)


@pytest.fixture(scope="module")
def engine(served):
    """The production path: STAC search + collection build + HTTP reads (no result
    cache, so every value is computed)."""
    return AttributeEngine(cache=NullResultCache(), collections=StacCollectionSource())


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


async def test_dem_matches_exactextract(served, merged, polys, engine):
    dem, dem_mask = merged["dem"]
    ref = _reference(dem, polys, list(DEM_OPS.values()))
    cov = [p[f"mean{_AREA}".split("(")[0]] for p in _reference(dem_mask, polys, [f"mean{_AREA}"])]
    with settings_override(stac_api=served.stac_url):
        for agg, op in DEM_OPS.items():
            resp = await batch_extract(polys, [DEM], aggregation=agg, engine=engine)
            assert not resp.warnings, resp.warnings
            key = op.split("(")[0]
            for i, (item, want) in enumerate(zip(resp.items, ref, strict=True)):
                res = item.results[0]
                assert res.aggregation.value == agg
                if _nan(want[key]):
                    assert res.value is None, (agg, i)
                    continue
                assert res.value == pytest.approx(want[key], rel=2e-5, abs=1e-3), (agg, i)
                assert res.value != -32767.0
                assert res.coverage_fraction == pytest.approx(cov[i], abs=2e-5), (agg, i)
                if cov[i] < 0.3:
                    assert res.quality == QualityFlag.missing
                elif cov[i] < 0.8:
                    assert res.quality in (QualityFlag.partial, QualityFlag.suspect)
    # the sample exercised what it was built for
    assert sum(1 for c in cov if c < 0.999) >= 8  # over nodata holes
    straddle = sum(1 for p in polys if p.bounds[0] < DEM_SEAM_LON < p.bounds[2])
    assert straddle >= 30


async def test_worldcover_matches_exactextract(served, merged, polys, world, engine):
    lc, lc_mask = merged["lc"]
    cov = [p["mean"] for p in _reference(lc_mask, polys, [f"mean{_AREA}"])]
    with settings_override(stac_api=served.stac_url):
        for agg, ops in LC_OPS.items():
            ref = _reference(lc, polys, ops)
            resp = await batch_extract(polys, [LC], aggregation=agg, engine=engine)
            assert not resp.warnings, resp.warnings
            for i, (item, want) in enumerate(zip(resp.items, ref, strict=True)):
                res = item.results[0]
                assert res.coverage_fraction == pytest.approx(cov[i], abs=2e-5), (agg, i)
                if len(want.get("unique", [1])) == 0:
                    assert res.value is None and res.quality == QualityFlag.missing
                    continue  # no valid pixel: no value (exactextract says [])
                if agg in ("majority", "minority"):
                    if _nan(want[agg]):
                        assert res.value is None
                        continue
                    assert res.value == int(want[agg]), (agg, i)
                    assert res.class_names and str(res.value) in res.class_names
                elif agg == "unique":
                    assert res.value == sorted(int(v) for v in want["unique"]), i
                else:
                    expected = {
                        str(int(c)): f for c, f in zip(want["unique"], want["frac"], strict=True)
                    }
                    assert set(res.value) == set(expected), i
                    for code, frac in expected.items():
                        assert res.value[code] == pytest.approx(frac, abs=1e-5), (i, code)
                    assert set(res.class_names) == set(expected)
    assert sum(1 for c in cov if c < 0.999) >= 3  # WorldCover's nodata disc
    assert sum(1 for p in polys if p.bounds[1] < LC_SEAM_LAT < p.bounds[3]) >= 8


# --- a batch fetches each tile once ---------------------------------------------------
def _tiles(path):
    """Full-resolution tiles of a COG: (row, col) -> (offset, size), and the dataset
    geometry needed to map bounds to tiles."""
    import rasterio

    with rasterio.open(path) as ds:
        bh, bw = ds.block_shapes[0]
        nr, nc = math.ceil(ds.height / bh), math.ceil(ds.width / bw)
        tiles = {}
        for r in range(nr):
            for c in range(nc):
                off = int(ds.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1))
                size = int(ds.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1))
                tiles[(r, c)] = (off, size)
        return tiles, ds.transform, (bh, bw), (ds.height, ds.width)


def _touched(polys, transform, block, shape) -> set[tuple[int, int]]:
    """Tiles under the polygons' pixel footprints (bounds shrunk by a hair)."""
    inv = ~transform
    out = set()
    for p in polys:
        w, s, e, n = p.bounds
        c0, r0 = inv * (w + 1e-9, n - 1e-9)
        c1, r1 = inv * (e - 1e-9, s + 1e-9)
        c0, c1 = max(0, math.floor(c0)), min(shape[1] - 1, math.floor(c1))
        r0, r1 = max(0, math.floor(r0)), min(shape[0] - 1, math.floor(r1))
        if c0 > c1 or r0 > r1:
            continue
        for r in range(r0 // block[0], r1 // block[0] + 1):
            for c in range(c0 // block[1], c1 // block[1] + 1):
                out.add((r, c))
    return out


_RANGE = re.compile(r"(\d+)-(\d+)")


def test_batch_of_200_fetches_each_tile_once(served, world):
    from tessellum.attributes import batch_extract_sync
    from tessellum.read import default_tile_cache

    polys = world_polygons(200, seed=23)
    engine = AttributeEngine(cache=NullResultCache(), collections=StacCollectionSource())
    default_tile_cache().clear()
    served.http.reset_log()
    with settings_override(stac_api=served.stac_url):
        resp = batch_extract_sync(polys, [DEM, LC], aggregation="majority", engine=engine)
    assert not resp.failed_datasets and len(resp.items) == 200
    log = [r for r in served.http.requests() if r.path.endswith(".tif")]
    total_tiles = total_data_requests = 0
    report = []
    for ds_name in ("cop-dem-glo-30", "esa-worldcover"):
        for f in world.files_of(ds_name):
            tiles, transform, block, shape = _tiles(f.path)
            touched = _touched(polys, transform, block, shape)
            reqs = [r for r in log if r.path.endswith("/" + f.path.name)]
            spans = [(int(a), int(b)) for r in reqs if r.range for a, b in _RANGE.findall(r.range)]
            header = [s for s in spans if s[0] == 0]
            data = [s for s in spans if s[0] != 0]
            assert len(header) <= 1  # the header once per file
            for rc, (off, size) in tiles.items():
                n = sum(1 for a, b in data if a <= off and off + size - 1 <= b)
                # no tile is fetched twice (coalesced ranges may carry untouched ones)
                assert n <= 1, (f.key, rc)
                if rc in touched:
                    in_header = any(a <= off and off + size - 1 <= b for a, b in header)
                    assert n == 1 or in_header, (f.key, rc, "touched tile not fetched")
            data_requests = sum(1 for r in reqs if r.range and not r.range.startswith("bytes=0-"))
            assert data_requests <= max(1, len(touched))
            total_tiles += len(touched)
            total_data_requests += data_requests
            report.append(f"{f.key}: {len(touched)} tiles touched, {data_requests} data GETs")
    assert total_tiles >= 30  # the 200 polygons touch most of the world's tiles
    print("\n200 polygons x 2 datasets:", "; ".join(report))


# --- no record under the request -------------------------------------------------------
SEA = shapely.box(10.0, 10.0, 10.1, 10.1)  # in the catalog's (global) extent, no DEM tile
LAND = shapely.box(-112.05, 41.95, -112.02, 42.05)


async def test_geometry_no_record_covers_is_missing_not_a_failure(served, engine):
    """A request whose search finds no record at all (the sea, where the DEM has no
    tile) gives ``value=None`` / ``missing`` as documented, exactly as the same
    geometry does when batched with a covered one; it used to fail the dataset with
    "bands ['elevation'] are not in the collection (available: [])" (and a 502 over
    HTTP)."""
    from tessellum.attributes import extract

    with settings_override(stac_api=served.stac_url):
        mixed = await batch_extract([LAND, SEA], [DEM], engine=engine)
        assert mixed.items[0].results[0].value is not None
        want = mixed.items[1].results[0]
        assert want.value is None and want.quality == QualityFlag.missing
        one = await extract(SEA, [DEM], engine=engine)
        assert not one.failed_datasets and not one.warnings
        (got,) = one.results
        for field in ("value", "quality", "coverage_fraction", "pixel_count", "qc_notes"):
            assert getattr(got, field) == getattr(want, field), field
        assert "no record covers the geometry" in got.qc_notes
        assert got.provenance.endswith("(no record)")
        pt = await batch_extract([Point(10.05, 10.05), SEA], [DEM], engine=engine)
        assert not pt.failed_datasets
        assert [it.results[0].quality for it in pt.items] == [QualityFlag.missing] * 2
        assert pt.items[0].results[0].qc_notes[0] == "no record covers the point"


def test_service_answers_200_missing_where_no_record_covers(served):
    """Over HTTP the same request is a 200 with a ``missing`` result, not a 502."""
    import httpx

    from _attr_world import UvicornThread
    from tessellum.service import create_app

    with settings_override(stac_api=served.stac_url) as settings:
        eng = AttributeEngine(
            cache=NullResultCache(), collections=StacCollectionSource(), settings=settings
        )
    with UvicornThread(create_app(engine=eng)) as srv:
        r = httpx.post(
            f"{srv.url}/api/v1/extract",
            json={"geometry": mapping(shapely.box(10.2, 10.2, 10.3, 10.3)), "dataset_ids": [DEM]},
            timeout=60,
        )
    assert r.status_code == 200, r.text
    (res,) = r.json()["results"]
    assert res["value"] is None and res["quality"] == "missing"
