"""The fixture world: files match their specs (rasterio + tifffile), STAC is sound,
the cache is reused and generation is atomic."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import tifffile

from tessellum.errors import ValidationError
from tessellum.testing import World, dem_elevation, get_world, world_path
from tessellum.testing import world as world_mod
from tessellum.testing._world_spec import build_spec

SPEC = build_spec("small", 0)
KEYS = [e["key"] for e in SPEC["files"] if not e["spec"]["corrupt"]]
CODEC = {e["key"]: e["spec"]["compression"] for e in SPEC["files"]}
LOSSY = {"JPEG", "WEBP"}
# GDAL's IMAGE_STRUCTURE COMPRESSION and tifffile's COMPRESSION name per spec codec.
GDAL_CODEC = {"NONE": None, "ZSTD": "ZSTD", "LERC_ZSTD": "LERC_ZSTD"}
TIFF_CODEC = {"DEFLATE": "ADOBE_DEFLATE", "LERC_ZSTD": "LERC", "LERC_DEFLATE": "LERC"}


@pytest.fixture(scope="session")
def world() -> World:
    return get_world("small")


def _nodata_equal(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or a == b


# ------------------------------------------------------------------- file layouts
@pytest.mark.parametrize("key", KEYS)
def test_file_matches_spec_rasterio(world: World, key: str) -> None:
    f = world.file(key)
    s = f.spec
    with rasterio.open(f.path) as ds:
        assert ds.dtypes == (s["dtype"],) * s["count"]
        assert (ds.width, ds.height, ds.count) == (s["width"], s["height"], s["count"])
        expected_block = (
            (s["blocksize"],) * 2 if s["blocksize"] else (s["rows_per_strip"], s["width"])
        )
        assert ds.block_shapes[0] == expected_block
        ist = ds.tags(ns="IMAGE_STRUCTURE")
        codec = GDAL_CODEC.get(s["compression"], s["compression"])
        if s["photometric"] == "YCBCR":
            codec = "YCbCr JPEG"
        assert ist.get("COMPRESSION") == codec
        nbits = ds.tags(1, ns="IMAGE_STRUCTURE").get("NBITS")
        assert nbits == (str(s["nbits"]) if s["nbits"] else None)
        assert ds.interleaving.value == s["interleave"]
        assert ds.overviews(1) == s["overviews"]
        assert _nodata_equal(ds.nodata, s["nodata"])
        assert ds.transform.to_gdal() == pytest.approx(s["transform"], rel=1e-12, abs=1e-9)
        assert ds.tags().get("AREA_OR_POINT", "Area") == s["area_or_point"]
        assert ds.scales[0] == (s["scale"] or 1.0) and ds.offsets[0] == (s["offset"] or 0.0)
        if s["crs"].startswith("EPSG:"):
            assert ds.crs.to_epsg() == int(s["crs"].split(":")[1])
        else:  # user-defined: must not collapse to an EPSG code (or 32767)
            assert ds.crs.to_epsg() is None and ds.crs.is_projected
            assert "Lambert_Azimuthal" in ds.crs.to_wkt() or "Lambert Azimuthal" in ds.crs.to_wkt()


@pytest.mark.parametrize("key", KEYS)
def test_file_matches_spec_tifffile(world: World, key: str) -> None:
    f = world.file(key)
    s = f.spec
    with tifffile.TiffFile(f.path) as tf:
        page = tf.pages[0]
        assert tf.byteorder == s["byteorder"]
        assert tf.is_bigtiff == s["bigtiff"]
        assert page.is_tiled == bool(s["blocksize"])
        if s["blocksize"]:
            assert (page.tilewidth, page.tilelength) == (s["blocksize"], s["blocksize"])
        assert page.compression.name == TIFF_CODEC.get(s["compression"], s["compression"])
        assert int(page.predictor) == s["predictor"]
        bits = (
            s["nbits"]
            or np.dtype(s["tiff_dtype"] if "tiff_dtype" in s else s["dtype"]).itemsize * 8
        )
        assert page.bitspersample == bits
        if s["count"] >= 3:
            assert page.photometric.name == s["photometric"]
        if s["count"] > 1:
            assert page.planarconfig.name == (
                "CONTIG" if s["interleave"] == "PIXEL" else "SEPARATE"
            )
        if s.get("tiff_dtype") == "float16":
            assert page.dtype == np.float16
        # full resolution + overviews (+ mask IFDs)
        assert len(tf.pages) == 1 + len(s["overviews"]) * (2 if s["mask"] else 1) + int(s["mask"])


@pytest.mark.parametrize(
    "key", [k for k in KEYS if CODEC[k] not in LOSSY and not k.startswith("s2/S2A")]
)
def test_lossless_pixels_equal_expected(world: World, key: str) -> None:
    with rasterio.open(world.file(key).path) as ds:
        got = ds.read()
    np.testing.assert_array_equal(got, world.expected_array(key))


def test_lerc_zstd_and_internal_mask_and_sparse(world: World) -> None:
    with tifffile.TiffFile(world.file("naip/rgbn_lerc_zstd").path) as tf:
        assert tuple(tf.pages[0].tags["LercParameters"].value)[1] == 2  # 2 = zstd
    with rasterio.open(world.file("edge/internal_mask").path) as ds:
        assert ds.mask_flag_enums[0] == [rasterio.enums.MaskFlags.per_dataset]
        mask = ds.read_masks(1)
        assert 0 < (mask == 0).mean() < 0.5 and mask[100, 150] == 255 and mask[0, 0] == 0
    with tifffile.TiffFile(world.file("edge/sparse").path) as tf:
        counts = tf.pages[0].databytecounts
        assert 0 < counts.count(0) < len(counts)
        assert tf.pages[0].dataoffsets[counts.index(0)] == 0


def test_corrupt_files_fail_and_are_not_items(world: World) -> None:
    corrupt = [f for f in world.files if f.spec["corrupt"]]
    assert {f.spec["corrupt"] for f in corrupt} == {"truncated", "garbage"}
    for f in corrupt:
        with pytest.raises(rasterio.errors.RasterioIOError), rasterio.open(f.path) as ds:
            ds.read()
        assert f.item_id is None
    with pytest.raises(tifffile.TiffFileError):
        tifffile.TiffFile(world.file("edge/garbage").path)
    with tifffile.TiffFile(world.file("edge/truncated").path) as tf:  # header intact
        page = tf.pages[0]
        end = max(o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=True))
    assert world.file("edge/truncated").path.stat().st_size < end
    hrefs = {a["href"] for i in world.items() for a in i["assets"].values()}
    assert not any(str(f.path) in hrefs for f in corrupt)


# ---------------------------------------------------------------------------- DEM
def test_dem_glo30_grid_is_point_on_integer_degrees(world: World) -> None:
    f = world.file("dem/N41W113")
    assert f.path.name == "Copernicus_DSM_COG_10_N41_00_W113_00_DEM.tif"
    res = 1 / 600
    with rasterio.open(f.path) as ds:
        assert ds.transform.c == pytest.approx(-113 - res / 2)
        assert ds.transform.f == pytest.approx(42 + res / 2)
        assert ds.xy(0, 0) == pytest.approx((-113.0, 42.0))  # first pixel centre on the degree
    with tifffile.TiffFile(f.path) as tf:
        assert tf.pages[0].geotiff_tags["GTRasterTypeGeoKey"] == 2  # RasterPixelIsPoint
        assert tuple(tf.pages[0].tags["ModelTiepointTag"].value)[3:5] == (-113.0, 42.0)


def _read(world: World, key: str) -> tuple[np.ndarray, rasterio.Affine]:
    with rasterio.open(world.file(key).path) as ds:
        return ds.read(1), ds.transform


def test_dem_tiles_agree_across_seams(world: World) -> None:
    west, tw = _read(world, "dem/N41W113")
    east, te = _read(world, "dem/N41W112")
    north, _ = _read(world, "dem/N42W113")
    nd = -32767.0
    # Values are the global terrain function at pixel centres.
    rows = np.arange(0, 600, 37)
    lon = te.c + (0 + 0.5) * te.a
    lat = te.f + (rows + 0.5) * te.e
    ok = east[rows, 0] != nd
    assert np.allclose(east[rows, 0][ok], dem_elevation(lon, lat)[ok], atol=1e-3)
    # Continuity: the step across a seam is like a step inside a tile.
    both = (west[:, -1] != nd) & (east[:, 0] != nd)
    seam = np.abs(west[both, -1] - east[both, 0])
    inner = np.abs(west[both, -2] - west[both, -1])
    assert seam.max() < 4 * inner.max() + 1 and seam.mean() < 2 * inner.mean() + 0.5
    ns = np.abs(north[-1, :] - west[0, :])
    assert ns.max() < 4 * np.abs(west[0, :] - west[1, :]).max() + 1
    assert tw.c + 600 * tw.a == pytest.approx(te.c)  # contiguous grids, no overlap
    # The hole centred on the lon=-112 seam cuts both tiles.
    row = round((42 - 41.7) * 600)
    assert west[row, -1] == nd and east[row, 0] == nd
    assert 0 < (west == nd).mean() < 0.01


def test_dem_elevation_grid_equals_points() -> None:
    from tessellum.testing._world_noise import dem_elevation_grid

    xs, ys = np.linspace(-112.3, -111.7, 17), np.linspace(42.2, 41.8, 9)
    grid = dem_elevation_grid(xs, ys)
    pts = dem_elevation(xs[None, :], ys[:, None])
    np.testing.assert_allclose(grid, pts, rtol=0, atol=1e-9)
    assert grid.min() > 500 and grid.max() < 4000


# -------------------------------------------------------------- other datasets
def test_worldcover_classes_patches_and_coverage(world: World) -> None:
    classes, dem_bounds = set(), []
    for f in world.files_of("cop-dem-glo-30"):
        with rasterio.open(f.path) as ds:
            dem_bounds.append(ds.bounds)
    wc_bounds = []
    for f in world.files_of("esa-worldcover"):
        data, _ = _read(world, f.key)
        with rasterio.open(f.path) as ds:
            wc_bounds.append(ds.bounds)
        classes |= set(np.unique(data).tolist())
        same = (data[:, 1:] == data[:, :-1]).mean()
        assert same > 0.9  # coherent patches, not per-pixel noise
    assert classes == {0, 10, 20, 30, 40, 50, 60, 80, 90, 95, 100}
    left = min(b.left for b in wc_bounds)
    right = max(b.right for b in wc_bounds)
    bottom = min(b.bottom for b in wc_bounds)
    top = max(b.top for b in wc_bounds)
    for b in dem_bounds:
        assert left <= b.left and b.right <= right and bottom <= b.bottom and b.top <= top


def test_sentinel2_scenes(world: World) -> None:
    items = world.items(collection="sentinel-2-l2a")
    assert len(items) == 6
    codes = {i["properties"]["proj:code"] for i in items}
    assert codes == {"EPSG:32611", "EPSG:32612"}
    dts = [i["properties"]["datetime"] for i in items]
    assert "2024-01-31T23:10:00Z" in dts
    for it in items:
        assert set(it["assets"]) == {"blue", "green", "red", "nir", "rededge1", "scl"}
        assert it["id"].endswith("_0_L2A") and it["properties"]["s2:mgrs_tile"] in it["id"]
        assert it["assets"]["rededge1"]["proj:shape"] == [768, 768]
        assert it["properties"]["proj:shape"] == [1536, 1536]
        scl_key = f"s2/{it['id']}/scl"
        scl, _ = _read(world, scl_key)
        assert set(np.unique(scl).tolist()) <= set(range(12))
        valid = scl != 0
        cloudy = np.isin(scl, (8, 9, 10))[valid].mean() * 100
        assert cloudy == pytest.approx(it["properties"]["eo:cloud_cover"], abs=1.0)
    all_scl = set()
    for it in items:
        all_scl |= set(np.unique(_read(world, f"s2/{it['id']}/scl")[0]).tolist())
    assert all_scl == set(range(12))
    # The two zones' footprints overlap around lon -114.
    from shapely.geometry import shape

    z11 = next(shape(i["geometry"]) for i in items if i["properties"]["proj:epsg"] == 32611)
    z12 = next(shape(i["geometry"]) for i in items if i["properties"]["proj:epsg"] == 32612)
    assert z11.intersects(z12) and z11.bounds[2] > -114 > z12.bounds[0]


def test_naip_variants(world: World) -> None:
    with rasterio.open(world.file("naip/rgb_ycbcr").path) as ds:
        assert ds.photometric == rasterio.enums.PhotometricInterp.ycbcr and ds.count == 3
        rgb = ds.read()
    expected = world.expected_array("naip/rgb_ycbcr").astype(int)
    assert np.abs(rgb.astype(int) - expected).mean() < 6  # lossy but faithful
    for key in ("naip/rgbn_jpeg", "naip/rgbn_webp"):
        with rasterio.open(world.file(key).path) as ds:
            assert ds.count == 4 and ds.crs.to_epsg() == 26912


# ---------------------------------------------------------------------------- STAC
ITEM_KEYS = {"type", "stac_version", "id", "collection", "geometry", "bbox", "properties",
             "assets", "links", "stac_extensions"}  # fmt: skip


def _core_validator(name: str):
    """A jsonschema validator for a core STAC 1.1 schema, from pystac's offline copies."""
    from jsonschema import Draft7Validator
    from pystac.validation.local_validator import VERSION, get_local_schema_cache
    from referencing import Registry, Resource

    cache = get_local_schema_cache()
    registry = Registry().with_resources(
        (uri, Resource.from_contents(schema)) for uri, schema in cache.items()
    )
    uri = f"https://schemas.stacspec.org/v{VERSION}/{name}-spec/json-schema/{name}.json"
    return Draft7Validator(cache[uri], registry=registry)


def test_items_are_structurally_valid(world: World) -> None:
    from pyproj import CRS
    from shapely.geometry import shape

    items = world.items(base_url="http://127.0.0.1:9/world/")
    validator = _core_validator("item")
    assert len(items) == len({i["id"] for i in items})
    rel = {f.item_id + "/" + f.asset_key: f.relpath for f in world.files if f.item_id}
    for it in items:
        assert set(it) >= ITEM_KEYS
        validator.validate(it)
        props = it["properties"]
        assert props["datetime"].endswith("Z")
        assert {"proj:code", "proj:epsg", "proj:shape", "proj:transform", "proj:bbox"} <= set(props)
        assert len(props["proj:transform"]) in (6, 9)
        geom = shape(it["geometry"])
        assert geom.is_valid and not geom.is_empty
        w, s, e, n = it["bbox"]
        if w <= e:
            gb = geom.bounds
            assert (
                w <= gb[0] + 1e-9 and gb[2] <= e + 1e-9 and s <= gb[1] + 1e-9 and gb[3] <= n + 1e-9
            )
        for key, asset in it["assets"].items():
            assert asset["href"] == "http://127.0.0.1:9/world/" + rel[f"{it['id']}/{key}"]
            assert asset["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
            assert asset["roles"] == ["data"] and asset["raster:bands"]
            assert "data_type" in asset["raster:bands"][0]
    am = next(i for i in items if i["id"] == "edge-antimeridian")
    assert am["geometry"]["type"] == "MultiPolygon" and am["bbox"][0] > am["bbox"][2]
    custom = next(i for i in items if i["id"] == "edge-custom-crs")["properties"]
    assert custom["proj:code"] is None and custom["proj:epsg"] is None
    assert CRS.from_wkt(custom["proj:wkt2"]).to_epsg() is None and custom["proj:projjson"]
    f64 = next(i for i in items if i["id"] == "edge-float64-nan")
    assert f64["assets"]["data"]["raster:bands"][0]["nodata"] == "nan"
    json.dumps(items, allow_nan=False)  # strict JSON


def test_local_hrefs_exist_and_collections_valid(world: World) -> None:
    for it in world.items():
        for asset in it["assets"].values():
            assert Path(asset["href"]).is_file()
    validator = _core_validator("collection")
    colls = world.collections()
    assert {c["id"] for c in colls} == set(world.datasets)
    for c in colls:
        validator.validate(c)
        assert set(c["item_assets"]) == set(world.datasets[c["id"]].asset_keys)
        ((start, end),) = c["extent"]["temporal"]["interval"]
        assert start <= end
    assert world.datasets["sentinel-2-l2a"].band_codes["blue"] == "B02"


def test_static_catalog_walks_with_pystac(world: World) -> None:
    import pystac

    cat = pystac.Catalog.from_file(str(world.static_catalog))
    items = list(cat.get_items(recursive=True))
    assert sorted(i.id for i in items) == sorted(i["id"] for i in world.items())
    assert {c.id for c in cat.get_children()} == set(world.datasets)
    for item in items:
        for asset in item.assets.values():
            href = Path(asset.get_absolute_href())
            assert href.is_file() and world.root in href.resolve().parents
    raw = json.loads(next((world.root / "stac").rglob("edge-bigtiff.json")).read_text())
    assert raw["assets"]["data"]["href"].startswith("../../../data/")


def test_write_api_files(world: World, tmp_path: Path) -> None:
    cpath, ipath = world.write_api_files(tmp_path / "api", "http://localhost:8000")
    colls = json.loads(cpath.read_text())
    lines = ipath.read_text().splitlines()
    assert isinstance(colls, list) and len(colls) == len(world.datasets)
    assert len(lines) == len(world.items())
    first = json.loads(lines[0])
    assert next(iter(first["assets"].values()))["href"].startswith("http://localhost:8000/data/")


# --------------------------------------------------------------------- API & cache
def test_file_lookup(world: World) -> None:
    f = world.file("edge/bigtiff")
    assert world.file(f.relpath) is f and f.path.is_file()
    assert f.href("http://x/") == f"http://x/{f.relpath}" and f.href() == str(f.path)
    assert len({g.key for g in world.files}) == len(world.files)
    with pytest.raises(ValidationError, match="edge/bigtif"):
        world.file("edge/bigtif")
    with pytest.raises(ValidationError):
        world.items(collection="nope")


def test_cache_is_reused(world: World) -> None:
    manifest = world.root / "world.json"
    before = (manifest.stat().st_mtime_ns, world.root.stat().st_ino)
    t0 = time.perf_counter()
    again = get_world("small")
    assert time.perf_counter() - t0 < 2
    assert again.root == world.root == world_path("small")
    assert (manifest.stat().st_mtime_ns, world.root.stat().st_ino) == before


def test_spec_changes_change_the_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    base = world_path("small", root="/x")
    assert base.parent == Path("/x") and base.name.startswith("small-")
    assert world_path("small", root="/x", seed=1) != base
    assert world_path("bench", root="/x").name.startswith("bench-")
    monkeypatch.setattr(world_mod, "GENERATOR_VERSION", "999")
    assert world_path("small", root="/x") != base
    with pytest.raises(ValidationError):
        world_path("huge")


def _slow_build(log: str, tmp: Path) -> None:
    with open(log, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    time.sleep(0.3)
    (tmp / "payload").write_text("ok")
    (tmp / world_mod.MANIFEST).write_text("{}")


def _race(final: str, log: str) -> None:
    import functools

    world_mod.ensure_dir(Path(final), functools.partial(_slow_build, log))


def test_ensure_dir_builds_once_under_concurrency(tmp_path: Path) -> None:
    final, log = tmp_path / "w", tmp_path / "log"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_race, args=(str(final), str(log))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(20)
        assert p.exitcode == 0
    assert len(log.read_text().splitlines()) == 1
    assert (final / "payload").read_text() == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".w.lock", "log", "w"]


def test_ensure_dir_failure_and_force(tmp_path: Path) -> None:
    final = tmp_path / "w"

    def boom(tmp: Path) -> None:
        (tmp / "half").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        world_mod.ensure_dir(final, boom)
    assert not final.exists() and [p.name for p in tmp_path.iterdir()] == [".w.lock"]

    def build(tmp: Path, text: str = "1") -> None:
        (tmp / world_mod.MANIFEST).write_text(text)

    world_mod.ensure_dir(final, build)
    world_mod.ensure_dir(final, lambda tmp: build(tmp, "2"))  # cached: not rebuilt
    assert (final / world_mod.MANIFEST).read_text() == "1"
    world_mod.ensure_dir(final, lambda tmp: build(tmp, "3"), force=True)
    assert (final / world_mod.MANIFEST).read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".w.lock", "w"]


def test_import_is_light() -> None:
    code = (
        "import sys, tessellum.testing; "
        "print(sorted(m for m in ('rasterio', 'pyproj', 'pystac', 'tifffile') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_list_and_generate(world: World) -> None:
    from typer.testing import CliRunner

    from tessellum.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["world", "list"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "edge/bigtiff" in res.output and "lerc_zstd" in res.output
    res = runner.invoke(app, ["world", "generate"])
    assert res.exit_code == 0, res.output
    assert str(world.root) in res.output


def test_cli_serve_prints_working_endpoints(world: World) -> None:
    """`tessellum world serve` starts real servers; the printed STAC URL answers."""
    import subprocess
    import sys

    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "tessellum.cli", "world", "serve", "--duration", "20"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        stac = next(line.split()[2] for line in lines if line.startswith("STAC API"))
        http = next(line.split()[1] for line in lines if line.startswith("HTTP"))
        assert httpx.get(f"{stac}/collections").status_code == 200
        f = world.file("dem/N41W113")
        r = httpx.get(f"{http}/{f.relpath}", headers={"Range": "bytes=0-15"})
        assert r.status_code == 206 and len(r.content) == 16
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_world_s3_keys_are_relpaths(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """serve_world(s3=True) puts each file at s3://world/<relpath> (``data/<dataset>/...``,
    as the CLI prints 'prefix data/'); the prefix lacked its slash ('datanaip/...')."""
    from tessellum.collection import build_from_files
    from tessellum.store import clear_store_cache
    from tessellum.testing.serve import serve_world
    from tessellum.testing.servers import ServerUnavailable

    try:
        with serve_world(world, stac=None, s3=True) as servers:
            listing = servers.s3.client().list_objects_v2(Bucket="world")["Contents"]
            keys = {o["Key"] for o in listing}
            wc = world.files_of("esa-worldcover")
            assert {f.relpath for f in wc} <= keys
            assert all(k.startswith("data/") for k in keys)
            for k, v in servers.s3.env.items():
                monkeypatch.setenv(k, v)
            clear_store_cache()
            try:
                coll = build_from_files(
                    "s3://world/data/esa-worldcover/", name="wc", progress=False
                )
            finally:
                clear_store_cache()
            assert len(coll) == len(wc)
    except ServerUnavailable as exc:
        pytest.skip(f"servers unavailable: {exc}")


@pytest.mark.skipif(
    not (world_path("bench") / "world.json").is_file(),
    reason="bench world not generated (tessellum world generate --size bench)",
)
def test_bench_world_when_cached() -> None:
    bench = get_world("bench")
    big = bench.file("bench/s2_10980_deflate")
    with rasterio.open(big.path) as ds:
        assert (ds.width, ds.height, ds.dtypes[0]) == (10980, 10980, "uint16")
        assert ds.block_shapes[0] == (512, 512) and ds.overviews(1) == big.spec["overviews"]
        assert ds.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
    many = bench.files_of("bench-many")
    assert len(many) == 500 and len(bench.items(collection="bench-many")) == 500
    boxes = {tuple(i["bbox"]) for i in bench.items(collection="bench-many")}
    assert len(boxes) == 500  # scattered footprints
    with tifffile.TiffFile(many[7].path) as tf:
        assert tf.pages[0].is_tiled and tf.pages[0].tilewidth == 256
