"""Zarr v3 mosaics (seed 004): build_mosaic, build_gti_mosaic, build_zarr_multiscales,
checked against rasterio.merge / rasterio.warp.reproject and GDAL's own GTI driver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.enums import Resampling
from rasterio.merge import merge
from rasterio.transform import from_origin
from rasterio.warp import reproject

from _cogfactory import make_array, write_cog
from tessellum.collection import build_from_gti
from tessellum.errors import DatasetNotFoundError, ValidationError
from tessellum.mosaic import (
    build_gti_mosaic,
    build_mosaic,
    build_zarr_multiscales,
    mosaic_grid,
    open_mosaic,
)

CRS = "EPSG:32612"
# three overlapping 10 m tiles: (origin x, origin y, acquired, quality, year)
TILES = {
    "a": (500000.0, 4600000.0, "2021-01-01", 3, 2021),
    "b": (501500.0, 4599000.0, "2021-06-01", 1, 2021),
    "c": (500800.0, 4598200.0, "2020-01-01", 2, 2020),
}
SHAPE = (200, 250)


def _tiles(tmp: Path, dtype: str = "uint16", nodata: Any = 0) -> dict[str, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    paths = {}
    for k, (x0, y0, *_rest) in enumerate(TILES.values()):
        name = list(TILES)[k]
        data = make_array(dtype, SHAPE, seed=k)
        data[0, 10:30, 40:90] = nodata if nodata is not None else data[0, 10:30, 40:90]  # holes
        p, _ = write_cog(
            tmp / f"{name}.tif", dtype=dtype, shape=SHAPE, nodata=nodata, data=data,
            transform=from_origin(x0, y0, 10.0, 10.0), crs=CRS, blocksize=64,
        )  # fmt: skip
        paths[name] = p
    return paths


def _index(paths: dict[str, Path]) -> gpd.GeoDataFrame:
    rows = []
    for p in paths.values():
        with rasterio.open(p) as ds:
            rows.append(shapely.box(*ds.bounds))
    return gpd.GeoDataFrame(
        {
            "location": [str(p) for p in paths.values()],
            "acquired": [TILES[n][2] for n in paths],
            "quality": [TILES[n][3] for n in paths],
            "year": [TILES[n][4] for n in paths],
        },
        geometry=rows,
        crs=CRS,
    )


def _aoi() -> gpd.GeoDataFrame:
    # crosses all three tiles and runs past their union (nodata there)
    return gpd.GeoDataFrame(geometry=[shapely.box(500400, 4596500, 503300, 4599600)], crs=CRS)


@pytest.fixture
def tiles(tmp_path: Path) -> dict[str, Path]:
    return _tiles(tmp_path / "tiles")


@pytest.fixture
def coll(tiles: dict[str, Path]) -> Any:
    return build_from_gti(_index(tiles), name="t", datetime_column="acquired", progress=False)


def _merged(paths: list[Path], grid: Any, nodata: Any = 0) -> np.ndarray:
    """rasterio.merge of ``paths`` (first wins) on ``grid`` (same CRS as the tiles)."""
    srcs = [rasterio.open(p) for p in paths]
    try:
        arr, t = merge(srcs, bounds=grid.bounds, res=grid.resolution, nodata=nodata, method="first")
    finally:
        for s in srcs:
            s.close()
    assert arr.shape[1:] == grid.shape and tuple(t)[:6] == pytest.approx(tuple(grid.transform)[:6])
    return arr[0]


def _warped(paths: list[Path], grid: Any, nodata: Any, resampling: Resampling) -> np.ndarray:
    """Each path warped onto ``grid`` with GDAL, first valid pixel wins."""
    out = None
    for p in paths:
        with rasterio.open(p) as ds:
            dst = np.full(grid.shape, nodata, dtype=ds.dtypes[0])
            reproject(
                rasterio.band(ds, 1), dst, dst_transform=grid.transform, dst_crs=grid.crs,
                dst_nodata=nodata, resampling=resampling, tolerance=0,
            )  # fmt: skip
        if out is None:
            out = dst
        else:
            hole = out == nodata
            out[hole] = dst[hole]
    assert out is not None
    return out


def test_native_grid_matches_rasterio_merge_latest_first(
    coll: Any, tiles: dict[str, Path], tmp_path: Path
) -> None:
    gdf = build_mosaic(
        coll, _aoi(), bands=["data"], output_dir=tmp_path / "out", crs=CRS, chunk_size=64,
        shard_size=128 * 128 * 2,
    )  # fmt: skip
    assert list(gdf.columns[:1]) == ["location"] and len(gdf) == 1 and gdf.crs == "EPSG:4326"
    ds = open_mosaic(gdf.location[0])
    grid = mosaic_grid(ds)
    # the records' own 10 m lattice, covering the AOI
    assert grid.resolution == (10.0, 10.0) and grid.transform.c % 10 == 0
    assert grid.bounds[0] <= 500400 and grid.bounds[2] >= 503300
    # mosaic_order: latest first (b 2021-06, a 2021-01, c 2020-01)
    want = _merged([tiles["b"], tiles["a"], tiles["c"]], grid)
    got = ds["data"].values
    assert got.dtype == np.uint16 and got.shape == (1, *grid.shape)
    np.testing.assert_array_equal(got[0], want)
    assert (want == 0).any() and (want != 0).any()  # the holes and the outside are nodata
    # the GeoParquet beside the store is the returned table
    back = gpd.read_parquet(tmp_path / "out" / "mosaic.parquet")
    assert back.location[0] == gdf.location[0]
    aoi_ll = _aoi().to_crs(4326).geometry[0]
    assert gdf.geometry[0].intersection(aoi_ll).area / aoi_ll.area > 0.9999


def test_store_layout(coll: Any, tmp_path: Path) -> None:
    import xarray as xr
    import zarr

    gdf = build_mosaic(
        coll, _aoi(), bands=["data"], output_dir=tmp_path, crs=CRS, chunk_size=64,
        shard_size=128 * 128 * 2,
    )  # fmt: skip
    loc = gdf.location[0]
    ds = xr.open_zarr(loc)  # plain xarray: no warning, CF decoding
    da = ds["data"]
    assert da.dims == ("time", "y", "x") and da.encoding["_FillValue"] == 0
    assert da.encoding["chunks"] == (1, 64, 64) and da.encoding["shards"] == (1, 128, 128)
    assert da.attrs["grid_mapping"] == "spatial_ref" and da.attrs["nodata"] == 0
    assert ds["time"].dtype == "datetime64[ns]" and np.isnat(ds["time"].values).all()
    sref = ds["spatial_ref"].attrs
    grid = mosaic_grid(open_mosaic(loc))
    assert sref["GeoTransform"] == " ".join(str(v) for v in grid.transform.to_gdal())
    assert "crs_wkt" in sref and "UTM zone 12N" in sref["spatial_ref"]
    assert ds.attrs["tessellum_mosaic"] == 1 and ds.attrs["crs"] == CRS
    x, y = grid.xy_coords()
    np.testing.assert_allclose(ds["x"].values, x)
    np.testing.assert_allclose(ds["y"].values, y)
    arr = zarr.open_array(loc, path="data", mode="r")
    assert arr.metadata.zarr_format == 3 and arr.shards == (1, 128, 128)

    skip = build_mosaic(
        coll, _aoi(), bands=["data"], output_dir=tmp_path, crs=CRS, skip_xy_coords=True,
        name="noxy",
    )  # fmt: skip
    ds2 = open_mosaic(skip.location[0])
    assert "x" not in ds2.coords and "y" not in ds2.coords
    assert mosaic_grid(ds2) == grid
    np.testing.assert_array_equal(ds2["data"].values, open_mosaic(loc)["data"].values)


def test_reprojected_grid_matches_gdal_warp(
    coll: Any, tiles: dict[str, Path], tmp_path: Path
) -> None:
    gdf = build_mosaic(
        coll, _aoi(), bands=["data"], output_dir=tmp_path, resolution=15.0, chunk_size=64
    )  # default crs EPSG:3857
    ds = open_mosaic(gdf.location[0])
    grid = mosaic_grid(ds)
    assert grid.crs == "EPSG:3857" and grid.resolution == (15.0, 15.0)
    assert grid.transform.c % 15 == 0 and grid.transform.f % 15 == 0  # snapped
    want = _warped([tiles["b"], tiles["a"], tiles["c"]], grid, 0, Resampling.nearest)
    got = ds["data"].values[0]
    np.testing.assert_array_equal(got == 0, want == 0)  # the same footprint, holes included
    # the engine warps each chunk with GDAL's approximate transformer (<= 0.125 px off),
    # so a few pixel centres next to a source pixel edge take that neighbour's value
    diff = np.abs(got.astype(int) - want.astype(int))
    assert (diff > 0).mean() < 0.01 and diff.max() <= 15  # neighbours differ by <= 15 here


def test_time_column_groups_slices_and_sort_column_priority(
    coll: Any, tiles: dict[str, Path], tmp_path: Path
) -> None:
    gdf = build_mosaic(
        coll, _aoi(), bands=["data"], output_dir=tmp_path, crs=CRS, time_column="year",
        sort_column="quality",
    )  # fmt: skip
    ds = open_mosaic(gdf.location[0])
    grid = mosaic_grid(ds)
    assert [str(t)[:10] for t in ds["time"].values] == ["2020-01-01", "2021-01-01"]
    np.testing.assert_array_equal(ds["data"].values[0], _merged([tiles["c"]], grid))
    # quality: a=3 on top of b=1
    np.testing.assert_array_equal(ds["data"].values[1], _merged([tiles["a"], tiles["b"]], grid))


def test_float_years_of_a_column_with_gaps_are_years(
    tiles: dict[str, Path], tmp_path: Path
) -> None:
    """A year column with a missing value is float in pandas (2021.0, NaN): whole floats
    are years (they were nanoseconds since 1970: every slice was 1970-01-01)."""
    index = _index(tiles)
    index["year"] = [2021.0, 2021.0, float("nan")]  # a, b; c has no year
    coll = build_from_gti(index, name="t", datetime_column="acquired", progress=False)
    gdf = build_mosaic(
        coll, _aoi(), bands=["data"], output_dir=tmp_path, crs=CRS, time_column="year"
    )
    ds = open_mosaic(gdf.location[0])
    grid = mosaic_grid(ds)
    assert [str(t)[:10] for t in ds["time"].values] == ["2021-01-01", "NaT"]
    np.testing.assert_array_equal(ds["data"].values[0], _merged([tiles["b"], tiles["a"]], grid))
    np.testing.assert_array_equal(ds["data"].values[1], _merged([tiles["c"]], grid))
    index["year"] = [2021.5, 2021.0, 2020.0]
    coll = build_from_gti(index, name="t", datetime_column="acquired", progress=False)
    with pytest.raises(ValidationError, match=r"2021\.5"):
        build_mosaic(coll, _aoi(), bands=["data"], output_dir=tmp_path, crs=CRS, time_column="year")


def test_date_range_filters_records(coll: Any, tiles: dict[str, Path], tmp_path: Path) -> None:
    gdf = build_mosaic(
        coll, _aoi(), "2021-01-01", "2021-03-31", bands=["data"], output_dir=tmp_path, crs=CRS
    )
    ds = open_mosaic(gdf.location[0])
    np.testing.assert_array_equal(ds["data"].values[0], _merged([tiles["a"]], mosaic_grid(ds)))


def test_dask_client_gives_the_same_store(coll: Any, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    kw = dict(bands=["data"], crs=CRS, chunk_size=32, shard_size=64 * 64 * 2)
    local = build_mosaic(coll, _aoi(), output_dir=tmp_path / "local", **kw)
    with (
        distributed.LocalCluster(
            processes=False, n_workers=2, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = build_mosaic(coll, _aoi(), output_dir=tmp_path / "dask", client=client, **kw)
    a = open_mosaic(local.location[0])["data"].values
    b = open_mosaic(remote.location[0])["data"].values
    assert a.shape[1] > 64 and a.shape[2] > 64  # several shards, so several tasks
    np.testing.assert_array_equal(a, b)


def _gdal_gti(index: Path, grid: Any, **open_options: str) -> np.ndarray:
    """The GTI index as GDAL's GTI driver composites it, on ``grid`` (nodata 0)."""
    with rasterio.open(index, **open_options) as gti:
        want = np.zeros(grid.shape, dtype=np.uint16)
        reproject(
            rasterio.band(gti, 1), want, dst_transform=grid.transform, dst_crs=grid.crs,
            dst_nodata=0, resampling=Resampling.nearest,
        )  # fmt: skip
    return want


def test_gti_mosaic_matches_gdal_gti_driver(tiles: dict[str, Path], tmp_path: Path) -> None:
    index = tmp_path / "index.gti.gpkg"
    _index(tiles).to_file(index, driver="GPKG")
    gdf = build_gti_mosaic(
        str(index), _aoi(), ["data"], crs=CRS, sort_column="quality", output_dir=tmp_path / "o",
        chunk_size=64,
    )  # fmt: skip
    ds = open_mosaic(gdf.location[0])
    grid = mosaic_grid(ds)
    want = _gdal_gti(index, grid, SORT_FIELD="quality")  # GDAL's GTI: highest on top
    np.testing.assert_array_equal(ds["data"].values[0], want)
    # requester_pays only changes how remote tiles are requested
    again = build_gti_mosaic(
        str(index), _aoi(), ["data"], crs=CRS, sort_column="quality", requester_pays=True,
        output_dir=tmp_path / "rp", chunk_size=64,
    )  # fmt: skip
    np.testing.assert_array_equal(open_mosaic(again.location[0])["data"].values[0], want)
    with pytest.raises(ValidationError, match="one band"):
        build_gti_mosaic(str(index), _aoi(), ["a", "b"], output_dir=tmp_path / "x")
    # query= filters the index first (only a, quality 3)
    gdf = build_gti_mosaic(
        str(index), _aoi(), ["data"], crs=CRS, query="quality >= 3", output_dir=tmp_path / "q"
    )
    ds = open_mosaic(gdf.location[0])
    np.testing.assert_array_equal(ds["data"].values[0], _merged([tiles["a"]], mosaic_grid(ds)))


def test_nodata_rules(tmp_path: Path) -> None:
    paths = _tiles(tmp_path / "t", nodata=None)
    coll = build_from_gti(_index(paths), name="n", progress=False)
    with pytest.raises(ValidationError, match=r"no nodata value.*data"):
        build_mosaic(coll, _aoi(), bands=["data"], output_dir=tmp_path, crs=CRS)
    gdf = build_mosaic(coll, _aoi(), bands=["data"], output_dir=tmp_path, crs=CRS, nodata=65535)
    ds = open_mosaic(gdf.location[0])
    assert ds["data"].attrs["nodata"] == 65535 and (ds["data"].values == 65535).any()
    with pytest.raises(ValidationError, match="-1"):
        build_mosaic(coll, _aoi(), bands=["data"], output_dir=tmp_path, crs=CRS, nodata=-1)


@pytest.mark.parametrize(("dtype", "nodata"), [("int16", -9999), ("float32", float("nan"))])
def test_shards_no_record_touches_read_as_nodata(tmp_path: Path, dtype: str, nodata: Any) -> None:
    """A shard no record touches is never written: zarr's own fill value must be the
    nodata (xarray keeps _FillValue as an attribute only), else it read as 0."""
    import xarray as xr

    paths = _tiles(tmp_path / "t", dtype=dtype, nodata=nodata)
    coll = build_from_gti(_index(paths), name="n", datetime_column="acquired", progress=False)
    # runs 3 km east of the tiles: whole shards of 64 x 64 px there hold no record
    aoi = gpd.GeoDataFrame(geometry=[shapely.box(500400, 4596500, 507300, 4599600)], crs=CRS)
    gdf = build_mosaic(
        coll, aoi, bands=["data"], output_dir=tmp_path / "o", crs=CRS, chunk_size=32,
        shard_size=64 * 64 * np.dtype(dtype).itemsize,
    )  # fmt: skip
    ds = open_mosaic(gdf.location[0])
    grid = mosaic_grid(ds)
    want = _merged([paths["b"], paths["a"], paths["c"]], grid, nodata=nodata)
    assert (np.isnan(want) if np.isnan(nodata) else want == nodata)[:, -64:].all()
    np.testing.assert_array_equal(ds["data"].values[0], want)
    # CF decoding by plain xarray: the empty shards are missing values, not zeros
    decoded = xr.open_zarr(gdf.location[0])["data"].values[0]
    np.testing.assert_array_equal(np.isnan(decoded), np.isnan(want) | (want == nodata))


def test_a_world_lon_lat_bbox_covers_the_whole_world(tmp_path: Path) -> None:
    """A (-180, s, 180, n) bbox is not an antimeridian crossing: its grid runs from -180
    to 180 (it ran from 0 to 349, without the data between -11 and 0)."""
    tif = tmp_path / "world.tif"
    data = make_array("int16", (60, 180), seed=3)
    write_cog(
        tif, dtype="int16", shape=(60, 180), nodata=-9999, data=data,
        transform=from_origin(-180.0, 60.0, 2.0, 2.0), crs="EPSG:4326", blocksize=64,
    )  # fmt: skip
    index = gpd.GeoDataFrame(
        {"location": [str(tif)]}, geometry=[shapely.box(-180, -60, 180, 60)], crs=4326
    )
    coll = build_from_gti(index, name="w", progress=False)
    gdf = build_mosaic(
        coll, (-180, -60, 180, 60), bands=["data"], output_dir=tmp_path / "o", crs="EPSG:4326",
        chunk_size=64,
    )  # fmt: skip
    ds = open_mosaic(gdf.location[0])
    grid = mosaic_grid(ds)
    assert grid.bounds == pytest.approx((-180, -60, 180, 60)) and grid.shape == (60, 180)
    np.testing.assert_array_equal(ds["data"].values[0], _merged([tif], grid, nodata=-9999))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"shard_size": "big"}, "shard_size"),
        ({"resampling": "fancy"}, "fancy"),
        ({"time_column": "nope"}, "nope"),
        ({"sort_column": "nope"}, "nope"),
        ({"crs": "EPSG:999999"}, "999999"),
        ({"bands": ["B99"]}, "B99"),
        ({"name": "../x"}, "name"),
        ({"bands": None}, "bands .*None"),
        ({"client": 5}, "client .*5"),
    ],
)
def test_bad_arguments(coll: Any, tmp_path: Path, kwargs: dict, match: str) -> None:
    out = tmp_path / "out"
    kw = {"bands": ["data"], "output_dir": out, "crs": CRS, **kwargs}
    with pytest.raises(ValidationError, match=match):
        build_mosaic(coll, _aoi(), **kw)
    assert not out.exists() or not list(out.iterdir())


def test_bad_aoi_and_collection(coll: Any, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"missing\.gpkg"):
        build_mosaic(coll, str(tmp_path / "missing.gpkg"), bands=["data"], output_dir=tmp_path)
    with pytest.raises(ValidationError, match="Collection"):
        build_mosaic(42, _aoi(), bands=["data"], output_dir=tmp_path)
    far = gpd.GeoDataFrame(geometry=[shapely.box(10, 10, 11, 11)], crs=4326)
    with pytest.raises(ValidationError, match="intersects the aoi"):
        build_mosaic(coll, far, bands=["data"], output_dir=tmp_path)


def test_open_mosaic_and_mosaic_grid_name_a_bad_argument(coll: Any, tmp_path: Path) -> None:
    gdf = build_mosaic(coll, _aoi(), bands=["data"], output_dir=tmp_path, crs=CRS)
    with pytest.raises(ValidationError, match=r"path .*42"):
        open_mosaic(42)  # was a TypeError from os.fspath
    with pytest.raises(ValidationError, match=r"group .*1"):
        open_mosaic(gdf.location[0], group=1)
    with pytest.raises(ValidationError, match=r"mosaic_grid .*42"):
        mosaic_grid(42)  # was an AttributeError


def test_aoi_from_a_file(coll: Any, tmp_path: Path) -> None:
    path = tmp_path / "aoi.geojson"
    _aoi().to_crs(4326).to_file(path)
    gdf = build_mosaic(coll, str(path), bands=["data"], output_dir=tmp_path / "o", crs=CRS)
    assert Path(gdf.location[0]).is_dir()


def test_failure_leaves_nothing_and_keeps_the_old_store(
    coll: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tessellum.mosaic import zarr_store

    tmp_path = tmp_path / "out"
    good = build_mosaic(coll, _aoi(), bands=["data"], output_dir=tmp_path, crs=CRS)
    before = open_mosaic(good.location[0])["data"].values

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full (injected)")

    monkeypatch.setattr(zarr_store, "write_region", boom)
    with pytest.raises(OSError, match="injected"):
        build_mosaic(coll, _aoi(), bands=["data"], output_dir=tmp_path, crs=CRS, resolution=20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mosaic.parquet", "mosaic.zarr"]
    np.testing.assert_array_equal(open_mosaic(good.location[0])["data"].values, before)


def test_a_users_folder_at_the_target_is_never_replaced(coll: Any, tmp_path: Path) -> None:
    """<output_dir>/<name>.zarr (or a multiscales output) that is not a tessellum store
    is refused before any work and left as it was (it was deleted before)."""
    user = tmp_path / "out" / "mosaic.zarr"
    user.mkdir(parents=True)
    (user / "thesis.txt").write_text("years of work")
    with pytest.raises(ValidationError, match=r"mosaic\.zarr.*exists and is not a tessellum"):
        build_mosaic(coll, _aoi(), bands=["data"], output_dir=tmp_path / "out", crs=CRS)
    assert (user / "thesis.txt").read_text() == "years of work"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mosaic.zarr"]
    good = build_mosaic(coll, _aoi(), bands=["data"], output_dir=tmp_path / "ok", crs=CRS)
    with pytest.raises(ValidationError, match="exists and is not a tessellum"):
        build_zarr_multiscales(good.location[0], output=user)
    assert sorted(p.name for p in user.iterdir()) == ["thesis.txt"]
    # a tessellum store there is replaced, as before
    again = build_mosaic(coll, _aoi(), bands=["data"], output_dir=tmp_path / "ok", crs=CRS)
    pyramid = build_zarr_multiscales(again.location[0], levels=1)
    assert build_zarr_multiscales(again.location[0], levels=1) == pyramid


# -- multiscales ----------------------------------------------------------------------------


@pytest.fixture
def float_store(tmp_path: Path) -> str:
    paths = _tiles(tmp_path / "f", dtype="float32", nodata=-9999.0)
    coll = build_from_gti(_index(paths), name="f", datetime_column="acquired", progress=False)
    gdf = build_mosaic(
        coll, _aoi(), bands=["data"], output_dir=tmp_path / "fm", crs=CRS, chunk_size=32,
        shard_size=64 * 64 * 4,
    )  # fmt: skip
    return gdf.location[0]


def _level_reference(prev: np.ndarray, pg: Any, g: Any, nodata: Any, how: Resampling) -> np.ndarray:
    out = np.full(g.shape, nodata, dtype=prev.dtype)
    reproject(
        prev, out, src_transform=pg.transform, dst_transform=g.transform, src_crs=pg.crs,
        dst_crs=g.crs, src_nodata=nodata, dst_nodata=nodata, resampling=how,
    )  # fmt: skip
    return out


def test_multiscales_levels_match_gdal_average(float_store: str, tmp_path: Path) -> None:
    import zarr

    out = build_zarr_multiscales(float_store, output=tmp_path / "ms.zarr", histogram=True)
    assert out == str(tmp_path / "ms.zarr")
    root = zarr.open_group(out, mode="r")
    ms = root.attrs["multiscales"][0]
    paths = [d["path"] for d in ms["datasets"]]
    assert (
        paths[0] == "0" and len(paths) >= 3 and ms["metadata"]["resampling"] == {"data": "average"}
    )
    src = open_mosaic(float_store)
    prev, pg = src["data"].values[0], mosaic_grid(src)
    for k, path in enumerate(paths):
        lvl = open_mosaic(out, group=path)
        g = mosaic_grid(lvl)
        got = lvl["data"].values[0]
        scale = ms["datasets"][k]["coordinateTransformations"][0]["scale"]
        assert scale == [1.0, 10.0 * 2**k, 10.0 * 2**k]
        if k == 0:
            np.testing.assert_array_equal(got, prev)
        else:
            assert g.shape == (-(-pg.height // 2), -(-pg.width // 2))
            want = _level_reference(prev, pg, g, -9999.0, Resampling.average)
            np.testing.assert_allclose(got, want, rtol=1e-6)
        prev, pg = got, g
    assert max(pg.shape) <= 32 < max(mosaic_grid(open_mosaic(out, group=paths[-2])).shape)
    hist = open_mosaic(out, group="0")["data"].attrs["histogram"]
    full = src["data"].values
    valid = full[full != -9999.0]
    counts, _ = np.histogram(valid, bins=np.asarray(hist["bins"]))
    assert hist["counts"] == counts.tolist() and hist["count"] == valid.size


def test_multiscales_integer_bands_use_mode(coll: Any, tmp_path: Path) -> None:
    gdf = build_mosaic(coll, _aoi(), bands=["data"], output_dir=tmp_path, crs=CRS, chunk_size=64)
    out = build_zarr_multiscales(gdf.location[0], levels=1)
    assert out.endswith("mosaic.multiscales.zarr")
    src = open_mosaic(gdf.location[0])
    lvl = open_mosaic(out, group="1")
    want = _level_reference(
        src["data"].values[0], mosaic_grid(src), mosaic_grid(lvl), 0, Resampling.mode
    )
    np.testing.assert_array_equal(lvl["data"].values[0], want)
    # averaged only when asked by name
    out = build_zarr_multiscales(gdf.location[0], levels=1, resampling={"data": "average"})
    lvl = open_mosaic(out, group="1")
    want = _level_reference(
        src["data"].values[0], mosaic_grid(src), mosaic_grid(lvl), 0, Resampling.average
    )
    np.testing.assert_array_equal(lvl["data"].values[0], want)


def test_multiscales_bad_arguments(float_store: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="levels"):
        build_zarr_multiscales(float_store, levels=-1)
    with pytest.raises(ValidationError, match="fancy"):
        build_zarr_multiscales(float_store, resampling="fancy")
    with pytest.raises(ValidationError, match="B9"):
        build_zarr_multiscales(float_store, resampling={"B9": "mode"})
    with pytest.raises(ValidationError, match="does not exist"):
        build_zarr_multiscales(tmp_path / "nothing.zarr")
    with pytest.raises(ValidationError, match="input store"):
        build_zarr_multiscales(float_store, output=float_store)
    # a multiscale store's root holds no band: a named error (a bare KeyError 'y' before)
    pyramid = build_zarr_multiscales(float_store, output=tmp_path / "pyr.zarr", levels=1)
    with pytest.raises(ValidationError, match="multiscale store: open a level"):
        build_zarr_multiscales(pyramid, output=tmp_path / "again.zarr")
    with pytest.raises(ValidationError, match="not a tessellum mosaic"):
        import zarr

        zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=3)
        build_zarr_multiscales(tmp_path / "plain.zarr")
    assert not [p for p in Path(float_store).parent.iterdir() if "multiscales" in p.name]


# -- a catalog dataset id -------------------------------------------------------------------


@pytest.fixture(scope="module")
def stac(served: Any) -> Any:
    from tessellum.config import settings_override

    with settings_override(stac_api=served.stac_url):
        yield served


def test_catalog_dataset_id_matches_rasterio_merge(stac: Any, world: Any, tmp_path: Path) -> None:
    """A dataset id finds its items with the dataset's STAC API (as raster mode does);
    the mosaic over a bbox across the tiles' seams equals rasterio.merge of the files."""
    bbox = (-112.05, 41.95, -111.95, 42.05)
    gdf = build_mosaic(
        "copernicus_dem:elevation", bbox, bands=["elevation"], output_dir=tmp_path,
        crs="EPSG:4326",
    )  # fmt: skip
    ds = open_mosaic(gdf.location[0])
    grid = mosaic_grid(ds)
    # equal datetimes: mosaic_order falls back to the item id
    files = sorted(world.files_of("cop-dem-glo-30"), key=lambda f: f.item_id)
    nodata = ds["elevation"].attrs["nodata"]
    want = _merged([f.path for f in files], grid, nodata=nodata)
    np.testing.assert_array_equal(ds["elevation"].values[0], want)
    assert (want != nodata).all()  # the bbox is covered: the seams were filled
    with pytest.raises(ValidationError, match="elevation"):
        build_mosaic("copernicus_dem:elevation", bbox, bands=["B04"], output_dir=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="nope"):  # as raster mode says it
        build_mosaic("nope:x", bbox, bands=["x"], output_dir=tmp_path)


def test_sync_entry_points_show_the_seed_parameters() -> None:
    import inspect

    import tessellum

    expect = {
        tessellum.build_mosaic: {"collection", "aoi", "start_date", "end_date", "bands",
                                 "output_dir", "crs", "resolution", "chunk_size", "shard_size",
                                 "skip_xy_coords", "client"},
        tessellum.build_gti_mosaic: {"gti", "aoi", "bands", "location_column", "crs",
                                     "time_column", "query", "requester_pays", "sort_column",
                                     "resampling", "resolution", "nodata", "output_dir"},
        tessellum.build_zarr_multiscales: {"zarr_uri", "output", "levels", "histogram"},
    }  # fmt: skip
    for fn, names in expect.items():
        assert names <= set(inspect.signature(fn).parameters), fn.__name__


@pytest.mark.parametrize("chunk_size", [512, 128])
def test_several_bands_of_their_own_types(stac: Any, tmp_path: Path, chunk_size: int) -> None:
    """Sentinel-2 B04 (uint16) and SCL (uint8) of the fixture world: each band keeps its
    type, and equals the read engine's own mosaic of the records in mosaic_order over the
    same grid (dates filtered): exactly when one chunk covers it, else but for pixels
    where a record from the neighbouring UTM zone is warped per chunk."""
    from tessellum.collection import build_from_stac
    from tessellum.read.sources import record_bands
    from tessellum.read.stacks import mosaic_order

    s2 = build_from_stac(
        name="s2", stac_api=stac.stac_url, collection="sentinel-2-l2a",
        bbox=(-114.6, 41.5, -113.4, 42.5), progress=False,
    )  # fmt: skip
    aoi = shapely.box(-113.95, 42.0, -113.91, 42.03)
    gdf = build_mosaic(
        s2, aoi, "2024-01-01", "2024-01-31", bands=["B04", "SCL"], output_dir=tmp_path,
        crs="EPSG:32612", chunk_size=chunk_size,
    )  # fmt: skip
    ds = open_mosaic(gdf.location[0])
    assert ds["B04"].dtype == np.uint16 and ds["SCL"].dtype == np.uint8
    grid = mosaic_grid(ds)
    sub = s2.subset(date_range=("2024-01-01", "2024-01-31"), geometries=aoi)
    order = [r.id for r in mosaic_order(record_bands(sub.table, ["B04", "SCL"]))]
    assert len(order) >= 2
    want = sub.read_window(
        bounds=grid.bounds, bands=["B04", "SCL"], target_crs="EPSG:32612",
        res=grid.resolution, record_ids=order,
    )  # fmt: skip
    assert want.shape == (2, *grid.shape)
    got = np.stack([ds["B04"].values[0], ds["SCL"].values[0]])
    if max(grid.shape) <= chunk_size:
        np.testing.assert_array_equal(got, want)
    else:  # GDAL's approximate transformer is fitted per chunk (<= 0.125 px)
        assert (got != want).mean() < 0.002


def test_mosaic_index_chains_into_predict_and_vectorize(coll: Any, tmp_path: Path) -> None:
    """Seed 004's chain: build_mosaic's index goes into predict_mosaic, whose index
    (``location`` now the predictions) goes into vectorize_mosaic; a threshold model's
    polygons cover exactly the pixels the model marked."""
    from tessellum.flow import predict_mosaic, vectorize_mosaic

    index = build_mosaic(
        coll, _aoi(), bands=["data"], output_dir=tmp_path / "out", crs=CRS, chunk_size=64,
    )  # fmt: skip
    src = open_mosaic(index.location[0])["data"].values[0].astype("float32")

    def bright(x):  # [B, 1, H, W] -> 1 where the value is above the median
        return (x > np.median(src[src > 0])).astype("float32")

    pred = predict_mosaic(index, bright, 16, 2, features=["data"], labels=["bright"],
                          inference_actor="numpy", output=tmp_path / "pred.zarr")  # fmt: skip
    assert list(pred.columns) == list(index.columns) and pred.location[0] != index.location[0]
    marked = open_mosaic(pred.location[0])["bright"].values[0]
    expect = np.where(src > 0, (src > np.median(src[src > 0])).astype("float32"), np.nan)
    np.testing.assert_array_equal(marked, expect)
    out = vectorize_mosaic(pred, ["bright"], 0.5, crs=CRS, output=tmp_path / "vec.parquet")
    polys = gpd.read_parquet(out)
    pixel_area = 10.0 * 10.0
    assert polys.area.sum() == pytest.approx(float((marked == 1).sum()) * pixel_area)


@pytest.mark.parametrize("ascending", ["YES", "NO"])
def test_gti_mosaic_takes_the_index_sort_field_as_gdal(
    tiles: dict[str, Path], tmp_path: Path, ascending: str
) -> None:
    """An index whose layer says SORT_FIELD (and SORT_FIELD_ASC) composites as GDAL's GTI
    driver composites it, without sort_column= (the index is the compositing rule)."""
    import pyogrio

    index = tmp_path / "sorted.gti.gpkg"
    pyogrio.write_dataframe(
        _index(tiles), index, driver="GPKG",
        layer_metadata={"SORT_FIELD": "quality", "SORT_FIELD_ASC": ascending},
    )  # fmt: skip
    gdf = build_gti_mosaic(str(index), _aoi(), ["data"], crs=CRS, output_dir=tmp_path / "o")
    ds = open_mosaic(gdf.location[0])
    grid = mosaic_grid(ds)
    want = _gdal_gti(index, grid)  # GDAL reads the layer's GTI items itself
    np.testing.assert_array_equal(ds["data"].values[0], want)
    # the default order (latest first) differs here: the test can tell the orders apart
    plain = tmp_path / "plain.gti.gpkg"
    _index(tiles).to_file(plain, driver="GPKG")
    other = build_gti_mosaic(str(plain), _aoi(), ["data"], crs=CRS, output_dir=tmp_path / "p")
    assert not np.array_equal(open_mosaic(other.location[0])["data"].values[0], want)
