"""Raster mode (seed 000) on the fixture world through the real servers: the production
code path with only the STAC API URL overridden. The reference answer is the seed's own
method, ``rasterio.merge.merge`` over the same COGs with the same (snapped) bounds."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import rasterio
import rasterio.merge
from rasterio.enums import Resampling
from rasterio.warp import reproject

from tessellum.catalog import default_catalog
from tessellum.config import settings_override
from tessellum.mosaic import RasterResult, extract_raster, extract_raster_sync

DEM = "copernicus_dem:elevation"
SEAM_BBOX = (-112.05, 41.95, -111.95, 42.05)  # straddles the lon -112 and lat 42 seams
DEM_NODATA = -32767.0


@pytest.fixture(scope="module")
def stac(served):
    with settings_override(stac_api=served.stac_url):
        yield served


@pytest.fixture(scope="module")
def dem_paths(world):
    # priority order of raster mode: latest datetime first (all equal here), then id
    files = sorted(world.files_of("cop-dem-glo-30"), key=lambda f: f.item_id)
    return [str(f.path) for f in files]


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.profile, ds.tags()


def _merge(paths, result: RasterResult, **kw):
    arr, transform = rasterio.merge.merge(
        paths, bounds=result.bounds, res=result.resolution, nodata=result.nodata, **kw
    )
    return arr[0], transform


def test_seam_bbox_equals_rasterio_merge(stac, dem_paths, tmp_path):
    res = extract_raster_sync(DEM, SEAM_BBOX, tmp_path)
    assert res.path == (tmp_path / "copernicus_dem_elevation.tif").resolve()
    assert (res.crs, res.dtype, res.nodata) == ("EPSG:4326", "float32", DEM_NODATA)
    assert res.items and len(res.items) == 4
    assert res.provenance.startswith("STAC mosaic: cop-dem-glo-30 (4 items: ")
    arr, prof, tags = _read(res.path)
    ref, ref_transform = _merge(dem_paths, res)
    assert arr.shape == ref.shape == res.shape
    assert prof["transform"] == ref_transform == res.transform
    assert prof["nodata"] == DEM_NODATA and prof["dtype"] == "float32"
    np.testing.assert_array_equal(arr, ref)
    assert tags["LICENSE"] == res.license and tags["PROVENANCE"] == res.provenance


def test_snap_outward_keeps_half_pixel_edge_columns(stac, tmp_path):
    res = extract_raster_sync(DEM, SEAM_BBOX, tmp_path)
    rx, ry = res.resolution
    left, bottom, right, top = res.bounds
    w, s, e, n = SEAM_BBOX
    # covers the bbox, grows by less than one pixel per edge
    assert left <= w < left + rx and right - rx < e <= right
    assert bottom <= s < bottom + ry and top - ry < n <= top
    # on the source grid: GLO-30 edges sit half a pixel off the degree lattice
    src_left = -113.0 - rx / 2
    assert abs((left - src_left) / rx - round((left - src_left) / rx)) < 1e-6
    arr, _, _ = _read(res.path)
    for edge in (arr[:, 0], arr[:, -1], arr[0, :], arr[-1, :]):
        assert (edge != DEM_NODATA).all(), "an edge row/column was left unfilled"


def test_holes_at_seams_stay_nodata(stac, dem_paths, world, tmp_path):
    # the fixture world has a nodata hole centred on the lon -112 seam at lat 41.7
    res = extract_raster_sync(DEM, (-112.1, 41.6, -111.9, 41.8), tmp_path)
    arr, _, _ = _read(res.path)
    ref, _ = _merge(dem_paths, res)
    np.testing.assert_array_equal(arr, ref)
    hole = arr == DEM_NODATA
    assert 0 < hole.sum() < arr.size
    cols = np.nonzero(hole.any(axis=0))[0]
    seam_col = round((-112.0 - res.bounds[0]) / res.resolution[0])
    assert cols.min() < seam_col < cols.max()  # the hole spans both tiles
    assert not np.isnan(arr).any()


def test_target_resolution_average_equals_merge(stac, dem_paths, tmp_path):
    res = extract_raster_sync(
        DEM, (-112.5, 41.5, -111.5, 42.5), tmp_path,
        target_resolution=4 / 600, resampling="average",
    )  # fmt: skip
    arr, _, tags = _read(res.path)
    assert res.resolution == pytest.approx((4 / 600, 4 / 600))
    ref, ref_transform = _merge(dem_paths, res, resampling=Resampling.average)
    assert ref_transform == res.transform and ref.shape == arr.shape
    np.testing.assert_array_equal(arr, ref)
    assert tags["RESAMPLING"] == "average"


def test_reprojection_matches_rasterio_warp(stac, dem_paths, tmp_path):
    res = extract_raster_sync(
        DEM, (-112.2, 41.8, -111.8, 42.2), tmp_path, target_crs="EPSG:32612",
        target_resolution=200,
    )  # fmt: skip
    assert res.crs == "EPSG:32612" and res.resolution == (200.0, 200.0)
    arr, _, _ = _read(res.path)
    mosaic, mosaic_transform = rasterio.merge.merge(dem_paths, nodata=DEM_NODATA)
    ref = np.full(arr.shape, DEM_NODATA, np.float32)
    reproject(
        mosaic[0], ref, src_transform=mosaic_transform, src_crs="EPSG:4326",
        src_nodata=DEM_NODATA, dst_transform=res.transform, dst_crs="EPSG:32612",
        dst_nodata=DEM_NODATA, resampling=Resampling.nearest,
    )  # fmt: skip
    # GDAL's approximate transformer works per chunk: allow a handful of edge pixels
    assert (arr == ref).mean() > 0.999


def test_categorical_land_cover(stac, world, tmp_path):
    bbox = (-112.2, 41.8, -111.8, 42.2)  # straddles the lat 42 tile seam of the 3° tiles
    res = extract_raster_sync("esa_worldcover:land_cover", bbox, tmp_path)
    arr, prof, tags = _read(res.path)
    assert prof["dtype"] == "uint8" and res.nodata == 0 and res.units == "class"
    paths = [str(f.path) for f in sorted(world.files_of("esa-worldcover"), key=lambda f: f.item_id)]
    ref, _ = _merge(paths, res)
    np.testing.assert_array_equal(arr, ref)
    classes = set(np.unique(arr).tolist()) - {0}
    assert classes <= {10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100}
    assert '"10": "Tree cover"' in tags["CLASSES"]


def test_categorical_coarsening_uses_mode_only(stac, tmp_path):
    res = extract_raster_sync(
        "esa_worldcover:land_cover", (-112.2, 41.8, -111.8, 42.2), tmp_path,
        target_resolution=0.01, resampling="mode",
    )  # fmt: skip
    arr, _, _ = _read(res.path)
    assert set(np.unique(arr).tolist()) - {0} <= {10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100}


@pytest.fixture(scope="module")
def s2_catalog():
    return default_catalog().register(
        {
            "id": "test_s2:red", "provider_name": "Sentinel-2 (fixture)", "title": "S2 red",
            "protocol": "stac_cog", "stac_api": "https://example.com/stac",
            "collections": ["sentinel-2-l2a"], "asset": "red", "native_crs": "EPSG:32612",
            "native_resolution": 10, "dtype": "uint16", "nodata": 0, "license": "test",
            "version": "1", "supports_raster": True,
        }
    )  # fmt: skip


def test_utm_source_comes_back_in_epsg4326_latest_item_wins(stac, world, s2_catalog, tmp_path):
    bbox = (-114.12, 42.0, -114.06, 42.05)  # inside scene 12TTM only (three dates)
    res = extract_raster_sync(
        "test_s2:red", bbox, tmp_path, target_crs="EPSG:4326", catalog=s2_catalog
    )
    assert res.crs == "EPSG:4326" and res.dtype == "uint16"
    assert res.items == (
        "S2B_12TTM_20240131_0_L2A", "S2A_12TTM_20240120_0_L2A", "S2B_12TTM_20240105_0_L2A",
    )  # fmt: skip
    arr, _, _ = _read(res.path)
    latest = world.file("s2/S2B_12TTM_20240131_0_L2A/red").path
    ref = np.zeros(arr.shape, np.uint16)
    with rasterio.open(latest) as ds:
        reproject(
            rasterio.band(ds, 1), ref, dst_transform=res.transform, dst_crs="EPSG:4326",
            dst_nodata=0, resampling=Resampling.nearest,
        )  # fmt: skip
    assert (arr == ref).mean() > 0.999
    native = extract_raster_sync(
        "test_s2:red", bbox, tmp_path, filename="n.tif", catalog=s2_catalog
    )
    assert native.crs == "EPSG:32612" and native.resolution == (10.0, 10.0)


def test_nan_nodata_source_gets_a_finite_nodata(stac, world, tmp_path):
    cat = default_catalog().register(
        {
            "id": "test_edge:nan", "provider_name": "edge", "title": "NaN nodata",
            "protocol": "stac_cog", "stac_api": "https://example.com/stac",
            "collections": ["edge-cases"], "asset": "data", "native_crs": "EPSG:4326",
            "native_resolution": 0.001, "dtype": "float64", "nodata": -9999.0,
            "license": "test", "version": "1", "supports_raster": True,
        }
    )  # fmt: skip
    res = extract_raster_sync(
        "test_edge:nan", (-112.34, 40.6, -112.1, 40.74), tmp_path, catalog=cat
    )
    assert res.nodata == -9999.0 and res.items == ("edge-float64-nan",)
    assert any("not finite" in n for n in res.notes)
    arr, prof, _ = _read(res.path)
    assert prof["nodata"] == -9999.0 and prof["dtype"] == "float64"
    assert not np.isnan(arr).any()
    src = world.file("edge/float64_nan").path
    ref, _ = rasterio.merge.merge([str(src)], bounds=res.bounds, res=res.resolution)
    ref = np.where(np.isnan(ref[0]), -9999.0, ref[0])
    np.testing.assert_array_equal(arr, ref)
    assert (arr == -9999.0).any()


def test_output_is_a_valid_cog_with_overviews(stac, tmp_path):
    from rio_cogeo.cogeo import cog_validate

    res = extract_raster_sync(DEM, (-113.0, 41.0, -111.0, 43.0), tmp_path, filename="all.tif")
    assert res.shape == (1201, 1201) or res.shape[0] >= 1200
    valid, errors, _ = cog_validate(str(res.path))
    assert valid, errors
    with rasterio.open(res.path) as ds:
        assert ds.overviews(1)  # > 512 px: overviews are built
        assert ds.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
        assert ds.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
        assert ds.block_shapes[0] == (512, 512)
        assert ds.units == ("m",) and ds.descriptions == ("elevation",)


def test_scale_and_offset_are_declared_on_the_band(stac, dem_paths, tmp_path):
    """Pixels stay as stored; a catalog entry's scale/offset (stored -> units) go on the
    band, so readers that apply them (rasterio's ``scales``, xarray's mask_and_scale) get
    units. The band's unit was claimed for stored values (no scale written)."""
    entry = default_catalog().get(DEM).model_copy(update={"scale": 0.5, "offset": -100.0})
    cat = default_catalog().register(entry, replace=True)
    res = extract_raster_sync(DEM, SEAM_BBOX, tmp_path, catalog=cat)
    arr, _, _ = _read(res.path)
    ref, _ = _merge(dem_paths, res)
    np.testing.assert_array_equal(arr, ref)
    with rasterio.open(res.path) as ds:
        assert (ds.scales, ds.offsets) == ((0.5,), (-100.0,))
    plain = extract_raster_sync(DEM, SEAM_BBOX, tmp_path, filename="plain.tif")
    with rasterio.open(plain.path) as ds:
        assert (ds.scales, ds.offsets) == ((1.0,), (0.0,))


async def test_async_api_and_existing_file_replaced(stac, tmp_path):
    target = tmp_path / "copernicus_dem_elevation.tif"
    target.write_bytes(b"old")
    res = await extract_raster(DEM, {"west": -112.05, "south": 41.95, "east": -111.95,
                                     "north": 42.05}, tmp_path)  # fmt: skip
    assert res.path == target.resolve() and target.stat().st_size > 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temp files left
    assert res.elapsed_ms > 0 and res.to_dict()["shape"] == list(res.shape)
    # a name at the filesystem's limit: the temporary names no longer grow with it
    # (they added 18 characters: ENAMETOOLONG after the whole extraction)
    long_name = "d" * 251 + ".tif"
    res = await extract_raster(DEM, (-112.05, 41.95, -111.95, 42.05), tmp_path, filename=long_name)
    assert res.path.name == long_name and res.path.stat().st_size > 0


async def test_sync_inside_running_loop_keeps_settings(stac, tmp_path):
    # Jupyter-style: a sync call inside a running event loop, under settings_override
    asyncio.get_running_loop()
    res = extract_raster_sync(DEM, SEAM_BBOX, tmp_path)
    assert res.shape == (61, 61)


def test_cli_extract_raster(stac, tmp_path):
    import json

    import typer
    from typer.testing import CliRunner

    from tessellum.cli.extract_raster import extract_raster as command

    app = typer.Typer()
    app.command("extract-raster")(command)
    app.command("noop")(lambda: None)  # two commands: typer keeps the sub-command name
    args = ["extract-raster", DEM, "--bbox", *map(str, SEAM_BBOX), "--out", str(tmp_path)]
    out = CliRunner().invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["shape"] == [61, 61]
    assert (tmp_path / "copernicus_dem_elevation.tif").exists()
    flipped = ["-112.05", "42.05", "-111.95", "41.95"]  # south > north
    bad = CliRunner().invoke(app, [*args[:3], *flipped, "--out", str(tmp_path)])
    assert bad.exit_code == 1 and "ValidationError" in bad.output
