"""Seed 004's model recipes (build_and_predict_mosaic_recipe, ModelRecipes) on the
fixture world: slope against numpy.gradient of the same mosaic, the water mask against
the WorldCover mosaic == 80."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest

from tessellum.errors import CRSError, ValidationError
from tessellum.flow import ModelRecipes, build_and_predict_mosaic_recipe
from tessellum.geo.crs import crs_epsg
from tessellum.mosaic import mosaic_grid, open_mosaic


@pytest.fixture(scope="module")
def stac(served: Any) -> Any:
    from tessellum.config import settings_override

    with settings_override(stac_api=served.stac_url):
        yield served


def test_slope_matches_numpy_gradient_in_metres(stac: Any, tmp_path: Path) -> None:
    """Default crs: the AOI's UTM zone (metres); the slope of every pixel whose 3x3
    neighbourhood holds data equals numpy.gradient of the DEM mosaic, in degrees."""
    bbox = (-112.35, 41.35, -112.2, 41.5)
    index = build_and_predict_mosaic_recipe(
        bbox, model_recipe=ModelRecipes.SLOPE, output_dir=tmp_path, chunk_size=16
    )  # blocks of 64 x 64 pixels: their seams need the 1-pixel halo
    assert len(index) == 1 and index.crs == "EPSG:4326" and index.model_recipe[0] == "slope"
    assert index.location[0] == str(tmp_path / "slope.zarr")
    dem = open_mosaic(index.mosaic_location[0])
    grid = mosaic_grid(dem)
    assert crs_epsg(grid.crs) == 32612  # lon -112.3 is in UTM zone 12
    z = dem["elevation"].values[0]
    nodata = dem["elevation"].attrs["nodata"]
    dx, dy = grid.resolution
    gy, gx = np.gradient(z.astype(np.float64), dy, dx)
    want = np.degrees(np.arctan(np.hypot(gx, gy)))
    got = open_mosaic(index.location[0])["slope"].values[0]
    assert got.dtype == np.float32 and got.shape == z.shape
    # away from the mosaic's edges (mirrored there) and from nodata
    valid = z != nodata
    inner = np.zeros_like(valid)
    inner[1:-1, 1:-1] = (
        valid[1:-1, 1:-1] & valid[:-2, 1:-1] & valid[2:, 1:-1] & valid[1:-1, :-2]
        & valid[1:-1, 2:]
    )  # fmt: skip
    assert inner.sum() > 0.9 * z.size and z.shape[0] > 64 and z.shape[1] > 64  # block seams
    np.testing.assert_allclose(got[inner], want[inner], rtol=1e-5, atol=1e-5)
    assert np.isnan(got[~valid]).all()
    assert 0.5 < float(np.nanmax(got)) < 90  # real relief, not a flat or degree-unit slope
    # the returned table is written beside the stores as GeoParquet
    back = gpd.read_parquet(tmp_path / "slope.parquet")
    assert back.location[0] == index.location[0]


def test_slope_in_a_projected_crs_in_feet(stac: Any, tmp_path: Path) -> None:
    """A projected CRS in US survey feet: the pixel size is converted to metres (the
    DEM's height unit), so the slope equals numpy.gradient over metres."""
    bbox = (-112.35, 41.35, -112.3, 41.4)
    index = build_and_predict_mosaic_recipe(
        bbox,
        None,
        None,
        "slope",
        "EPSG:3566",
        output_dir=tmp_path,  # Utah North, US ft
    )
    dem = open_mosaic(index.mosaic_location[0])
    grid = mosaic_grid(dem)
    ft = 1200 / 3937
    dx, dy = (r * ft for r in grid.resolution)
    z = dem["elevation"].values[0].astype(np.float64)
    gy, gx = np.gradient(z, dy, dx)
    want = np.degrees(np.arctan(np.hypot(gx, gy)))[1:-1, 1:-1]
    got = open_mosaic(index.location[0])["slope"].values[0][1:-1, 1:-1]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_slope_refuses_a_geographic_crs(stac: Any, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"EPSG:4326.*not projected"):
        build_and_predict_mosaic_recipe(
            (-112.35, 41.35, -112.3, 41.4), model_recipe="slope", crs="EPSG:4326",
            output_dir=tmp_path,
        )  # fmt: skip
    assert not list(tmp_path.iterdir())  # refused before anything is built
    with pytest.raises(CRSError, match="nope"):
        build_and_predict_mosaic_recipe(
            (-112.35, 41.35, -112.3, 41.4), model_recipe="slope", crs="nope", output_dir=tmp_path
        )


def test_water_mask_is_worldcover_class_80(stac: Any, tmp_path: Path) -> None:
    """Native CRS (EPSG:4326) by default; 1 exactly where the WorldCover mosaic is 80,
    0 elsewhere, NaN where it is nodata (the AOI crosses a nodata disc)."""
    bbox = (-113.9, 39.8, -113.6, 40.05)
    index = build_and_predict_mosaic_recipe(
        bbox, "2021-01-01", "2021-12-31", "water_mask", output_dir=tmp_path, chunk_size=64
    )
    lc_ds = open_mosaic(index.mosaic_location[0])
    assert crs_epsg(mosaic_grid(lc_ds).crs) == 4326
    lc = lc_ds["land_cover"].values[0]
    assert (lc == 80).any() and (lc == 0).any() and ((lc != 80) & (lc != 0)).any()
    want = np.where(lc == 0, np.nan, (lc == 80).astype(np.float32))
    got = open_mosaic(index.location[0])["water"].values[0]
    np.testing.assert_array_equal(got, want)


def test_dask_client_gives_the_same_water_mask(stac: Any, tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    bbox = (-113.9, 39.8, -113.75, 39.95)
    local = build_and_predict_mosaic_recipe(
        bbox, model_recipe="water_mask", output_dir=tmp_path / "a", chunk_size=64
    )
    with (
        LocalCluster(n_workers=2, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        dist = build_and_predict_mosaic_recipe(
            bbox, model_recipe="water_mask", output_dir=tmp_path / "b", chunk_size=64,
            client=client,
        )  # fmt: skip
    want = open_mosaic(local.location[0])["water"].values
    assert (want == 1).any() and (want == 0).any()
    np.testing.assert_array_equal(open_mosaic(dist.location[0])["water"].values, want)


@pytest.mark.parametrize("bad", ["nope", "SLOPE", None, 3, ["slope"]])
def test_bad_recipe_names_list_the_recipes(bad: Any, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"model_recipe .*\['slope', 'water_mask'\]"):
        build_and_predict_mosaic_recipe((-112.3, 41.3, -112.2, 41.4), model_recipe=bad,
                                        output_dir=tmp_path)  # fmt: skip


def test_recipes_and_seed_parameters() -> None:
    import inspect

    import tessellum

    assert tessellum.ModelRecipes is ModelRecipes and ModelRecipes("slope") is ModelRecipes.SLOPE
    for member in ModelRecipes:
        rec = member.recipe
        assert rec.clip_size * 2 < rec.patch_size
    assert ModelRecipes.SLOPE.recipe.clip_size >= 1  # the 3x3 stencil's halo
    params = set(inspect.signature(tessellum.build_and_predict_mosaic_recipe).parameters)
    assert {"aoi", "start_date", "end_date", "model_recipe", "crs"} <= params
    assert callable(tessellum.build_and_predict_mosaic_recipe_async)


def test_async_twin_gives_the_same_index(stac: Any, tmp_path: Path) -> None:
    import asyncio

    from tessellum.flow import build_and_predict_mosaic_recipe_async

    bbox = (-113.9, 39.8, -113.85, 39.85)
    index = asyncio.run(
        build_and_predict_mosaic_recipe_async(
            bbox, model_recipe=ModelRecipes.WATER_MASK, output_dir=tmp_path / "a"
        )
    )
    sync = build_and_predict_mosaic_recipe(
        bbox, model_recipe="water_mask", output_dir=tmp_path / "b"
    )
    assert list(index.columns) == list(sync.columns) and index.model_recipe[0] == "water_mask"
    np.testing.assert_array_equal(
        open_mosaic(index.location[0])["water"].values,
        open_mosaic(sync.location[0])["water"].values,
    )


def test_slope_units_agree_with_the_geographic_dem_in_geodesic_metres(
    stac: Any, world: Any, tmp_path: Path
) -> None:
    """An independent check of the units: the native lon/lat DEM tile's slope, each
    row's pixel size measured in metres on the WGS84 ellipsoid (pyproj.Geod), has the
    same mean and 90th percentile over the AOI as the recipe's UTM slope (within 2 %;
    degree units, or a Web Mercator plane, would be off by orders or by 1/cos(lat))."""
    import rasterio
    from pyproj import Geod
    from rasterio.windows import from_bounds

    bbox = (-112.35, 41.35, -112.2, 41.5)
    index = build_and_predict_mosaic_recipe(bbox, model_recipe="slope", output_dir=tmp_path)
    got = open_mosaic(index.location[0])["slope"].values[0][1:-1, 1:-1]
    (tile,) = [f for f in world.files_of("cop-dem-glo-30") if "N41_00_W113" in f.path.name]
    with rasterio.open(tile.path) as ds:
        win = from_bounds(*bbox, ds.transform).round_offsets().round_lengths()
        z = ds.read(1, window=win).astype(np.float64)
        t = ds.window_transform(win)
    assert (z != -32767).all()
    lat = t.f + (np.arange(z.shape[0]) + 0.5) * t.e
    lon = np.full_like(lat, bbox[0])
    geod = Geod(ellps="WGS84")
    dy = geod.inv(lon, lat - abs(t.e) / 2, lon, lat + abs(t.e) / 2)[2]
    dx = geod.inv(lon, lat, lon + t.a, lat)[2]
    gy = np.gradient(z, axis=0) / dy[:, None]
    gx = np.gradient(z, axis=1) / dx[:, None]
    want = np.degrees(np.arctan(np.hypot(gx, gy)))[1:-1, 1:-1]
    assert np.mean(got) == pytest.approx(np.mean(want), rel=0.02)
    assert np.percentile(got, 90) == pytest.approx(np.percentile(want, 90), rel=0.02)
