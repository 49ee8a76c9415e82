"""The read engine over HTTP (nginx) on the fixture world: every file vs GDAL, cross-zone
AOIs, the antimeridian, request counts from the server log, xarray/torch outputs and
failure modes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject
from shapely.geometry import Point, box

from tessellum.collection import build_from_files, build_from_stac, build_from_table
from tessellum.errors import DataFormatError, NotFoundError
from tessellum.read.cache import default_tile_cache

# JPEG/WebP: libjpeg-turbo / libwebp versions may round differently by 1 DN; YCbCr JPEG
# chroma is upsampled with libjpeg's smooth filter where libtiff (GDAL) replicates 2x2
# blocks: small on average, larger at sharp colour edges (a documented difference).
LOSSY = {"JPEG": 1, "WEBP": 1}
YCBCR_MAX = 32


@pytest.fixture(autouse=True)
def _no_cache():
    default_tile_cache().clear()


def _files(world, dataset):
    return [f for f in world.files if f.dataset == dataset and not f.spec.get("corrupt")]


def _whole(coll, f, bands):
    with rasterio.open(f.path) as ds:
        bounds = tuple(ds.bounds)
    return coll.read_window(bounds=bounds, bands=bands)


@pytest.mark.parametrize("dataset", ["edge-cases", "cop-dem-glo-30", "naip", "esa-worldcover"])
def test_every_file_over_http_matches_gdal(served, world, dataset):
    for f in _files(world, dataset):
        url = served.href(f.key)
        with rasterio.open(f.path) as ds:
            ref = ds.read()
            count = ds.count
        bands = ["data"] if count == 1 else [f"b{i}" for i in range(count)]
        if count == 1:
            coll = build_from_files([url], name="one", progress=False)
        else:
            coll = build_from_table(
                pa.table({"id": [f.key], "href": [url]}),
                name="one",
                band_index_map={b: i for i, b in enumerate(bands)},
                progress=False,
            )
        assert not coll.errors().num_rows, coll.errors().to_pylist()
        got = _whole(coll, f, bands)
        assert got.shape == ref.shape, f.key
        tol = LOSSY.get(f.spec["compression"])
        if f.spec.get("photometric") == "YCBCR":
            tol = YCBCR_MAX
        if tol is None:
            np.testing.assert_array_equal(got, ref, err_msg=f.key)
        else:
            diff = np.abs(got.astype(int) - ref.astype(int))
            assert diff.max() <= tol and diff.mean() < 1, f.key


@pytest.fixture(scope="module")
def s2(served, tmp_path_factory):
    return build_from_stac(
        name="s2",
        stac_api=served.stac_url,
        collection="sentinel-2-l2a",
        bbox=(-114.6, 41.5, -113.4, 42.5),
        progress=False,
    )


def test_cross_utm_aoi_xarray(s2, world, served):
    aoi = box(-114.02, 42.0, -113.98, 42.03)  # straddles the zone 11/12 boundary at -114
    ds = s2.get_xarray(aoi, ["B04", "SCL"])
    assert set(ds.data_vars) == {"B04", "SCL"}
    assert ds["B04"].dims == ("time", "y", "x")
    assert ds["B04"].dtype == np.uint16 and ds["SCL"].dtype == np.uint8  # no float promotion
    assert ds["B04"].attrs["_FillValue"] == 0
    assert "spatial_ref" in ds.coords and "crs_wkt" in ds["spatial_ref"].attrs
    assert len(ds.time) == len(s2)
    # a record in the grid's own zone is pasted exactly; the other zone is warped (nearest)
    from affine import Affine

    grid_crs = ds.attrs["crs"]
    transform = Affine.from_gdal(*map(float, ds["spatial_ref"].attrs["GeoTransform"].split()))
    for k, rid in enumerate(ds["id"].values):
        f = world.file(f"s2/{rid}/red")
        ref = np.zeros(ds["B04"].shape[1:], dtype="uint16")
        with rasterio.open(f.path) as src:
            reproject(
                rasterio.band(src, 1),
                ref,
                dst_transform=transform,
                dst_crs=grid_crs,
                dst_nodata=0,
                resampling=Resampling.nearest,
            )
        got = ds["B04"].values[k]
        inside = _geom_mask(aoi, transform, grid_crs, got.shape)
        both = inside & (ref != 0) & (got != 0)
        assert both.sum() > 0.3 * inside.sum()
        assert (got[both] == ref[both]).mean() > 0.995, rid  # nearest kernels agree to the pixel
        assert (got[~inside] == 0).all()  # outside the AOI is nodata


def _geom_mask(geom, transform, crs, shape):
    import shapely
    from rasterio.features import geometry_mask
    from rasterio.warp import transform_geom

    dense = shapely.segmentize(geom, 0.0005)  # edges are curves in UTM: densify like the engine
    g = transform_geom("EPSG:4326", crs, dense.__geo_interface__)
    return geometry_mask([g], out_shape=shape, transform=transform, invert=True)


def test_time_series_filters_and_labels(s2):
    aois = [box(-113.95, 42.0, -113.94, 42.01), box(-113.93, 42.0, -113.92, 42.01)]
    res = s2.get_numpy(aois, ["B02", "B08"], date_range=("2024-01-01", "2024-01-31"))
    labels = res.labels.to_pylist()
    assert res.data.ndim == 4 and res.data.shape[1] == 2
    assert len(labels) == res.data.shape[0]
    assert all(lab["datetime"].month == 1 for lab in labels)  # includes the 23:10 item of Jan 31
    assert {lab["geometry_id"] for lab in labels} == {0, 1}


def test_fifty_aois_one_tile_once_in_server_log(served, world, http_log):
    f = world.file("s2/S2B_12TTM_20240105_0_L2A/red")
    coll = build_from_files([served.href(f.key)], name="one", progress=False)
    http_log.reset_log()
    with rasterio.open(f.path) as ds:
        left, top = ds.bounds.left, ds.bounds.top
    rng = np.random.default_rng(0)
    aois = [
        box(x, y - 300, x + 300, y)
        for x, y in zip(
            left + rng.uniform(100, 4800, 50), top - rng.uniform(100, 4800, 50), strict=True
        )
    ]
    res = coll.get_numpy(aois, ["data"], geometry_crs="EPSG:32612")
    assert res.data.shape[0] == 50
    reqs = [r for r in http_log.requests() if r.path.endswith(f.relpath.split("/")[-1])]
    assert len(reqs) == 1, [r.range for r in reqs]  # one 512x512 tile, fetched once for 50 AOIs


def test_rgbn_bands_share_tiles(served, world, http_log):
    f = world.file("naip/rgbn_lerc")
    coll = build_from_stac(name="naip", stac_api=served.stac_url, collection="naip", progress=False)
    coll = coll.where(pa.compute.field("id") == f.item_id)
    assert coll.bands == ["R", "G", "B", "N"]
    http_log.reset_log()
    with rasterio.open(f.path) as ds:
        b = ds.bounds
        ref = ds.read()
    got = coll.read_window(bounds=(b.left, b.bottom, b.right, b.top), bands=["R", "G", "B", "N"])
    np.testing.assert_array_equal(got, ref)
    ranges = [r.range for r in http_log.requests()]
    spans = []
    for rg in ranges:
        s, e = rg.removeprefix("bytes=").split("-")
        spans.append((int(s), int(e)))
    total = sum(e - s + 1 for s, e in spans)
    assert total <= f.path.stat().st_size  # no tile fetched twice for the 4 bands


def test_antimeridian_aoi(served, world):
    f = world.file("edge/antimeridian")
    coll = build_from_files([served.href(f.key)], name="am", progress=False)
    aoi = {"type": "MultiPolygon", "coordinates": [
        [[[179.9, -16.9], [180.0, -16.9], [180.0, -16.7], [179.9, -16.7], [179.9, -16.9]]],
        [[[-180.0, -16.9], [-179.9, -16.9], [-179.9, -16.7], [-180.0, -16.7], [-180.0, -16.9]]],
    ]}  # fmt: skip
    assert len(coll.subset(bbox=(179.9, -16.9, -179.9, -16.7))) == 1
    res = coll.get_numpy(aoi, ["data"])
    with rasterio.open(f.path) as ds:
        win = (
            rasterio.windows.from_bounds(179.9, -16.9, 180.1, -16.7, transform=ds.transform)
            .round_offsets()
            .round_lengths()
        )
        ref = ds.read(1, window=win)
    assert res.data.shape[-2:] == ref.shape
    np.testing.assert_array_equal(res.data[0, 0], ref)


def test_points_near_tile_edges(served, world):
    f = world.file("dem/N42W112")
    coll = build_from_files([served.href(f.key)], name="dem", progress=False)
    with rasterio.open(f.path) as ds:
        t = ds.transform
        # pixel centres on both sides of tile edges (256 px tiles)
        cols = np.array([0, 255, 256, 257, 511, 512, 599, 128])
        rows = np.array([0, 256, 255, 511, 512, 300, 599, 128])
        xs, ys = rasterio.transform.xy(t, rows, cols)
        ref = np.array([v[0] for v in ds.sample(zip(xs, ys, strict=True))])
        nod = ds.nodata
    table = coll.sample_points([Point(x, y) for x, y in zip(xs, ys, strict=True)], ["data"])
    got = np.array(
        [np.nan if v is None else v for v in table.column("value").to_pylist()], dtype="float32"
    )
    expect = np.where(ref == nod, np.nan, ref).astype("float32")
    np.testing.assert_array_equal(got, expect)
    bil = coll.sample_points([Point(xs[-1], ys[-1])], ["data"], method="bilinear")
    assert bil.column("value")[0].as_py() == pytest.approx(float(ref[-1]), rel=1e-6)


def test_truncated_file_is_a_clear_error(tmp_path):
    """A file cut short after the collection was built (a build of a cut file flags it:
    test_collection_headers): the read names the URL and the byte range."""
    from _cogfactory import write_cog
    from tessellum.testing.servers import HttpServer

    path, _ = write_cog(tmp_path / "cut.tif", shape=(600, 700), overviews=())
    with HttpServer(tmp_path) as http:
        coll = build_from_files([f"{http.url}/cut.tif"], name="cut", progress=False)
        assert coll.errors().num_rows == 0
        with rasterio.open(path) as ds:
            b = ds.bounds
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(DataFormatError) as exc:
            coll.read_window(bounds=(b.left, b.bottom, b.right, b.top), bands=["data"])
    assert "cut.tif" in str(exc.value)
    assert "byte range" in str(exc.value) or "offset" in str(exc.value)


def test_missing_file_404_named(served, world):
    f = world.file("edge/lzw")
    coll = build_from_files([served.href(f.key)], name="ok", progress=False)
    bad = coll.table.column("assets").to_pylist()
    bad[0][0] = (
        ("data", {**bad[0][0][1], "href": bad[0][0][1]["href"].replace("lzw", "gone")})
        if isinstance(bad[0], list)
        else bad[0]
    )
    from tessellum.collection import Collection
    from tessellum.collection.schema import ASSETS_TYPE

    table = coll.table.set_column(
        coll.table.column_names.index("assets"), "assets", pa.array(bad, ASSETS_TYPE)
    )
    with rasterio.open(f.path) as ds:
        b = ds.bounds
    with pytest.raises(NotFoundError, match="gone"):
        Collection(table).read_window(bounds=(b.left, b.bottom, b.right, b.top), bands=["data"])


def test_bad_asset_does_not_abort_build(served, world):
    urls = [
        served.href("edge/lzw"),
        served.href("edge/garbage"),
        served.data_url + "/data/nope.tif",
    ]
    with pytest.warns(UserWarning, match="2 of 3"):
        coll = build_from_files(urls, name="mixed", progress=False)
    assert len(coll) == 3 and len(coll.valid()) == 1
    assert coll.errors().num_rows == 2


@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_torch_dataset_with_dataloader_workers(s2, start):
    torch = pytest.importorskip("torch", reason="torch not installed (pip install torch==2.13.0)")
    from torch.utils.data import DataLoader

    ds = s2.to_torchgeo_dataset(
        ["B04", "B03"],
        chip_size=64,
        geometries=[Point(-113.95, 42.0), Point(-113.9, 42.02)],
        time_series=True,
    )
    assert len(ds) == 2
    sample = ds[0]
    assert sample["image"].shape[1:] == (2, 64, 64)
    # forked workers (Linux's default) read over HTTP without the parent's obstore runtime
    loader = DataLoader(ds, batch_size=1, num_workers=2, multiprocessing_context=start)
    batches = list(loader)
    assert len(batches) == 2 and isinstance(batches[0]["image"], torch.Tensor)
    np.testing.assert_array_equal(batches[0]["image"][0].numpy(), sample["image"].numpy())


def test_forked_worker_reads_http_without_the_parents_runtime(s2):
    """A DataLoader worker under the default 'fork' start method: obstore's runtime did
    not survive the fork, the child reads over HTTP through the fork-safe store."""
    pytest.importorskip("torch", reason="torch not installed (pip install torch==2.13.0)")
    import multiprocessing as mp

    ds = s2.to_torchgeo_dataset(["B04"], chip_size=32, geometries=[Point(-113.95, 42.0)])
    want = np.asarray(ds[0]["image"])  # the runtime is now live in this process
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_read_first, (ds,)).get(timeout=60)
    assert not isinstance(got, str), got
    np.testing.assert_array_equal(got, want)


def _read_first(ds):
    default_tile_cache().clear()  # force I/O in the child (the fork copied the cache)
    try:
        return np.asarray(ds[0]["image"])
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def test_sample_points_latest_picks_newest_record(s2):
    pts = [Point(-113.95, 42.01), Point(-113.9, 42.05), Point(-114.1, 42.02)]
    every = s2.sample_points(pts, ["B08"], match="all").to_pylist()
    latest = s2.sample_points(pts, ["B08"], match="latest").to_pylist()
    assert len(latest) == len(pts)  # one record per point and band
    for row in latest:
        mine = [r for r in every if r["point_index"] == row["point_index"]]
        assert row["datetime"] == max(r["datetime"] for r in mine)
        assert row["value"] == next(r["value"] for r in mine if r["datetime"] == row["datetime"])


def test_get_gdf_keeps_aoi_columns_and_crs(s2):
    import geopandas as gpd

    gdf = gpd.GeoDataFrame(
        {"plot": ["a", "b"]},
        geometry=[box(-113.96, 42.0, -113.95, 42.01), box(-113.94, 42.0, -113.93, 42.01)],
        crs="EPSG:4326",
    ).to_crs("EPSG:3857")  # any CRS in, the same CRS out
    out = s2.get_gdf(gdf, ["B04"])
    assert out.crs == gdf.crs and set(out["plot"]) == {"a", "b"}
    assert {"record_id", "datetime", "band", "data", "valid", "transform", "crs"} <= set(
        out.columns
    )
    row = out.iloc[0]
    assert row["data"].dtype == np.uint16 and row["data"].shape == row["valid"].shape


def test_raster_accessor_load_bands_and_intersects(s2):
    import asyncio

    aoi = box(-113.96, 42.0, -113.95, 42.01)
    acc = next(a for a in s2.iterate_rasters() if a.intersects(aoi))
    assert not acc.intersects(box(10, 10, 11, 11))
    # a projected geometry is compared in lon/lat, not as raw numbers
    import shapely
    from pyproj import Transformer

    t = Transformer.from_crs(4326, 3857, always_xy=True)
    assert acc.intersects(
        gpd_like(
            shapely.transform(aoi, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
        )
    )
    ds = asyncio.run(acc.load_bands(aoi, ["B04"]))
    assert ds["B04"].dims == ("time", "y", "x") and list(ds["id"].values) == [acc.id]
    gdf = asyncio.run(acc.load_bands(aoi, ["B04"], for_xarray=False))
    assert len(gdf) == 1 and gdf.iloc[0]["record_id"] == acc.id
    header, url, index = acc.try_get_band_cog_metadata("B04")
    assert index is None  # one-sample asset: no sample index
    assert url.endswith(".tif") and header.levels[0].dtype == "uint16"


def gpd_like(geom):
    import geopandas as gpd

    return gpd.GeoSeries([geom], crs="EPSG:3857")


def test_sample_points_keeps_point_columns(s2):
    import geopandas as gpd

    pts = gpd.GeoDataFrame(
        {"site": [7, 9]}, geometry=[Point(-113.95, 42.01), Point(-113.9, 42.02)], crs=4326
    )
    t = s2.sample_points(pts, ["B08"], match="latest")
    assert t.num_rows == 2 and t.column("site").to_pylist() == [7, 9]


@pytest.mark.parametrize("dataset", ["s2", "dem"])
def test_mosaic_stack_equals_first_valid_of_the_layers(s2, served, world, dataset):
    """``read_stacks_async(mosaic=True)`` gives what mosaicking the per-record layers
    gives, first valid pixel winning newest first: Sentinel-2 dates across two UTM zones
    (one zone warped), and DEM tiles across a seam (one datetime: read order)."""
    import asyncio

    from tessellum.read.stacks import read_stacks_async

    if dataset == "s2":
        coll, band = s2, "B04"
        aois = [box(-114.02, 42.0, -113.98, 42.03), box(-113.95, 42.0, -113.94, 42.01)]
    else:
        files = world.files_of("cop-dem-glo-30")
        coll = build_from_files([served.href(f.key) for f in files], name="dem", progress=False)
        band = coll.bands[0]
        aois = [box(-112.1, 41.9, -111.9, 42.1)]  # over the four tiles' corner
    layers = asyncio.run(read_stacks_async(coll.table, aois, [band], mask=False))
    mosaics = asyncio.run(read_stacks_async(coll.table, aois, [band], mask=False, mosaic=True))
    for per_record, mosaic in zip(layers, mosaics, strict=True):
        assert mosaic.data[band].shape == (1, *per_record.grid.shape)
        assert mosaic.grid == per_record.grid
        dts = per_record.datetimes
        order = list(range(len(dts)))
        if len({d for d in dts if d is not None}) > 1:  # newest first
            order = list(np.argsort([d.timestamp() for d in dts], kind="stable")[::-1])
        assert mosaic.record_ids == [per_record.record_ids[i] for i in order]
        want = per_record.data[band][order[0]].copy()
        have = per_record.valid[band][order[0]].copy()
        for i in order[1:]:
            take = per_record.valid[band][i] & ~have
            want[take] = per_record.data[band][i][take]
            have |= take
        assert have.any()
        np.testing.assert_array_equal(mosaic.valid[band][0], have)
        np.testing.assert_array_equal(mosaic.data[band][0][have], want[have])


def test_reads_reach_the_files_the_way_the_build_did(world, served, tmp_path):
    """A collection built with a ``cloud_config`` reads its pixels through it (the build
    honoured the rewrite, the reads went to the original URLs); filtered collections keep
    it; a loaded one takes it again."""
    from tessellum.collection import Collection
    from tessellum.store import CloudConfig

    cfg = CloudConfig(rewrites={served.data_url + "/data/": f"file://{world.root}/data/"})
    aoi = [box(-113.95, 42.0, -113.94, 42.01)]

    def tif_requests(read):
        served.http.reset_log()
        default_tile_cache().clear()
        read()
        return sum(r.path.endswith(".tif") for r in served.http.requests())

    coll = build_from_stac(name="s2", stac_api=served.stac_url, collection="sentinel-2-l2a",
                           bbox=(-114.2, 41.9, -113.8, 42.2), cloud_config=cfg, progress=False)  # fmt: skip
    assert tif_requests(lambda: coll.get_numpy(aoi, ["B04"])) == 0
    assert tif_requests(lambda: coll.head(2).read_window(
        bounds=(-113.95, 42.0, -113.94, 42.01), bands=["B04"], target_crs="EPSG:4326", res=1e-4,
    )) == 0  # fmt: skip
    path = coll.export(tmp_path / "s2")
    assert tif_requests(lambda: Collection.load(path).get_numpy(aoi, ["B04"])) > 0
    loaded = Collection.load(path, cloud_config=cfg)
    assert tif_requests(lambda: loaded.sample_points([Point(-113.945, 42.005)], ["B04"])) == 0
