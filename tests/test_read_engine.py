"""The read engine against GDAL (rasterio) on local COGs: every codec/layout, aligned and
unaligned windows, overviews, reprojection, mosaics, points, and tile deduplication."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import reproject
from rasterio.windows import Window
from shapely.geometry import LineString, Point, box

from _cogfactory import write_cog
from tessellum.collection import build_from_files
from tessellum.errors import ValidationError
from tessellum.read.cache import default_tile_cache
from tessellum.store import IOStats, collect_stats

UTM = "EPSG:32612"
T0 = from_origin(500000, 4650000, 10, 10)


@pytest.fixture(autouse=True)
def _fresh_cache():
    default_tile_cache().clear()
    yield
    default_tile_cache().clear()


def _coll(paths, name="t"):
    return build_from_files([str(p) for p in paths], name=name, progress=False)


VARIANTS = [
    dict(dtype="uint16", compression="deflate", predictor=2, nodata=0),
    dict(dtype="uint16", compression="zstd", predictor=2),
    dict(dtype="float32", compression="deflate", predictor=3, nodata=-32767.0),
    dict(dtype="float32", compression="lerc_zstd", nodata=float("nan")),
    dict(dtype="int16", compression="lzw", predictor=2, nodata=-9999),
    dict(dtype="uint8", compression="packbits"),
    dict(dtype="int32", compression="lzma"),
    dict(dtype="float64", compression=None),
    dict(dtype="uint16", compression="deflate", byteorder="big"),
    dict(dtype="uint16", compression="deflate", bigtiff=True),
    dict(dtype="uint16", compression="deflate", stripped=True),
    dict(dtype="uint8", compression="deflate", nbits=4),
    dict(dtype="uint16", compression="deflate", nbits=12),
    dict(dtype="uint16", compression="deflate", sparse=True, nodata=0),
    dict(dtype="uint8", compression="deflate", count=3, interleave="band"),
    dict(dtype="uint8", compression="webp", count=3),
]


@pytest.mark.parametrize("spec", VARIANTS, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_window_matches_gdal(tmp_path, spec):
    spec = dict(spec)
    count = spec.pop("count", 1)
    path, _ = write_cog(
        tmp_path / "a.tif", shape=(700, 900), count=count, crs=UTM, transform=T0, **spec
    )
    # unaligned bounds: snapped outward to the source grid, never shifted
    bounds = (500123.4, 4643210.1, 507654.3, 4648765.4)
    with rasterio.open(path) as ds:
        win = rasterio.windows.from_bounds(*bounds, transform=ds.transform)
        win = Window.from_slices(
            (int(np.floor(win.row_off + 1e-6)), int(np.ceil(win.row_off + win.height - 1e-6))),
            (int(np.floor(win.col_off + 1e-6)), int(np.ceil(win.col_off + win.width - 1e-6))),
        )
        ref = ds.read(window=win)
    bands = ["data"]
    if count > 1:
        import pyarrow as pa

        from tessellum.collection import build_from_table

        bands = [f"b{i}" for i in range(count)]
        coll = build_from_table(
            pa.table({"id": ["a"], "href": [str(path)]}),
            name="t",
            band_index_map={b: i for i, b in enumerate(bands)},
            progress=False,
        )
    else:
        coll = _coll([path])
    got = coll.read_window(bounds=bounds, bands=bands)
    assert got.shape == ref.shape
    if spec.get("compression") == "webp":
        assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    else:
        np.testing.assert_array_equal(got, ref)


def test_multiband_pixel_interleaved_each_tile_once(tmp_path):
    """4 bands of a pixel-interleaved file: each tile fetched and decoded once."""
    import pyarrow as pa

    from tessellum.collection import build_from_table

    path, arr = write_cog(
        tmp_path / "rgbn.tif",
        dtype="uint8",
        count=4,
        shape=(512, 512),
        blocksize=256,
        compression="deflate",
        crs=UTM,
        transform=T0,
        overviews=(),
    )
    table = pa.table({"id": ["x"], "href": [str(path)]})
    coll = build_from_table(
        table, name="rgbn", band_index_map={"R": 0, "G": 1, "B": 2, "N": 3}, progress=False
    )
    assert coll.bands == ["R", "G", "B", "N"]
    stats = IOStats()
    with collect_stats(stats):
        out = coll.read_window(
            bounds=(500000, 4644880, 505120, 4650000), bands=["R", "G", "B", "N"]
        )
    # GDAL writes a 4-band Byte file as RGBA: the alpha masks the other bands (as GDAL's
    # masked reads do; tests/test_read_masks.py), and is read from the same tiles
    want = arr.copy()
    want[:3, arr[3] == 0] = 0
    np.testing.assert_array_equal(out, want)
    assert stats.requests == 1  # 4 adjacent tiles coalesced into one request, none fetched twice


def test_fifty_aois_in_one_tile_fetch_it_once(tmp_path):
    path, _ = write_cog(
        tmp_path / "a.tif",
        shape=(1024, 1024),
        blocksize=512,
        compression="deflate",
        crs=UTM,
        transform=T0,
        overviews=(),
    )
    coll = _coll([path])
    rng = np.random.default_rng(1)
    aois = [
        box(x, y, x + 200, y + 200)
        for x, y in zip(
            rng.uniform(500100, 504600, 50), rng.uniform(4645100, 4649600, 50), strict=True
        )
    ]
    stats = IOStats()
    with collect_stats(stats):
        res = coll.get_numpy(aois, ["data"], geometry_crs=UTM)
    assert res.data.shape[0] == 50
    assert stats.requests == 1
    assert stats.bytes < 600_000  # one 512x512 tile, not 50


def test_equal_size_aois_equal_chips(tmp_path):
    path, _ = write_cog(
        tmp_path / "a.tif", shape=(800, 800), crs=UTM, transform=T0, compression="deflate"
    )
    coll = _coll([path])
    lonlat = []
    for dx in (0.0, 0.0123, 0.0371):
        lonlat.append(box(-110.99 + dx, 41.95, -110.98 + dx, 41.96))
    res = coll.get_numpy(lonlat, ["data"])
    assert res.data.shape[0] == 3 and res.data.shape[-2:] == res.data[0].shape[-2:]
    assert list(res.labels.column("geometry_id").to_pylist()) == [0, 1, 2]


def test_overview_read_matches_gdal_overview(tmp_path):
    path, _ = write_cog(
        tmp_path / "a.tif",
        shape=(1024, 1024),
        blocksize=256,
        compression="deflate",
        crs=UTM,
        transform=T0,
        overviews=(2, 4),
    )
    coll = _coll([path])
    bounds = (500000, 4639760, 510240, 4650000)
    stats = IOStats()
    with collect_stats(stats):
        got = coll.read_window(bounds=bounds, bands=["data"], res=40)
    with rasterio.open(path, overview_level=1) as ov:
        ref = ov.read(1)
    assert got.shape == (1, 256, 256)
    np.testing.assert_array_equal(got[0], ref)
    assert stats.bytes < 200_000  # the 4x overview, not the full image


@pytest.mark.parametrize("shape", [(67, 228), (228, 67)])
def test_overview_with_rounded_size_is_read_at_its_own_grid(tmp_path, shape):
    """67 rows / 4 -> a 17-row overview: its pixels are 3% taller than wide (or wider than
    tall). Read on that overview's grid, GDAL reads that overview; so must we (not the
    full resolution, resampled)."""
    path = tmp_path / "ovr.tif"
    data = np.random.default_rng(0).integers(0, 60000, (1, *shape)).astype("uint16")
    profile = dict(driver="GTiff", width=shape[1], height=shape[0], count=1, dtype="uint16",
                   crs=UTM, transform=from_origin(500000, 4650000, 30, 30))  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.build_overviews([4], Resampling.average)  # unlike any full-resolution pixel
    with rasterio.open(path, overview_level=0) as ov:
        ref, t = ov.read(1), ov.transform
    with rasterio.open(path) as ds:  # GDAL's own choice for a read at that size
        assert (ds.read(1, out_shape=ref.shape) == ref).all()
    bounds = rasterio.transform.array_bounds(*ref.shape, t)  # left, bottom, right, top
    got = _coll([path]).read_window(bounds=bounds, bands=["data"], res=(t.a, -t.e))
    np.testing.assert_array_equal(got[0], ref)


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("resampling", ["bilinear", "cubic", "lanczos"])
def test_warp_of_a_type_with_no_free_value_rounds_and_clamps_like_gdal(tmp_path, dtype, resampling):
    """Every value of the type present and no nodata: no value is left to mark no data,
    so the warp runs in float; back in the type it must round and clamp as GDAL's kernel
    does (cubic overshoots wrapped from 127 to -128, and truncation lost a level)."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(1)
    data = rng.integers(info.min, info.max + 1, (1, 160, 160), endpoint=False).astype(dtype)
    data[0, 0, :160] = np.arange(info.min, info.max + 1)[:160].astype(dtype)
    data[0, 1, :96] = np.arange(info.min, info.max + 1)[160:].astype(dtype)
    path, _ = write_cog(tmp_path / "a.tif", data=data, dtype=dtype, shape=(160, 160),
                        crs=UTM, transform=T0, overviews=())  # fmt: skip
    bounds = (-110.995, 41.99, -110.985, 41.998)
    got = _coll([path]).read_window(bounds=bounds, bands=["data"], res=0.00009,
                                    target_crs="EPSG:4326", resampling=resampling)  # fmt: skip
    from tessellum.geo.grid import grid_for_bounds

    grid = grid_for_bounds(bounds, 0.00009, "EPSG:4326")
    ref = np.zeros(grid.shape, dtype)
    covered = np.zeros(grid.shape, "uint8")
    with rasterio.open(path) as ds:  # GDAL warping in the type itself
        reproject(rasterio.band(ds, 1), ref, dst_transform=grid.transform,
                  dst_crs="EPSG:4326", resampling=Resampling[resampling])  # fmt: skip
        reproject(np.ones((160, 160), "uint8"), covered, src_transform=T0, src_crs=UTM,
                  dst_transform=grid.transform, dst_crs="EPSG:4326")  # fmt: skip
    inside = covered == 1
    assert inside.mean() > 0.5
    np.testing.assert_array_equal(got[0][inside], ref[inside])


@pytest.mark.parametrize(("dtype", "nodata"), [("int32", 2**31 - 1), ("int32", -(2**31)),
                                               ("uint32", 2**32 - 1)])  # fmt: skip
def test_warped_values_next_to_a_large_nodata_stay_data(tmp_path, dtype, nodata):
    """GDAL's warper takes any value within float precision of its nodata for no data
    (2147483646 next to 2147483647): the values of a warped read stay as GDAL reads them."""
    rng = np.random.default_rng(2)
    near = nodata - np.sign(nodata) * rng.integers(1, 1000, (1, 64, 64))
    data = near.astype(dtype)
    data[0, :5] = nodata
    path, _ = write_cog(tmp_path / "a.tif", data=data, dtype=dtype, shape=(64, 64), crs=UTM,
                        transform=T0, nodata=nodata, overviews=())  # fmt: skip
    bounds = (500000, 4649400, 500630, 4650000)
    got = _coll([path]).read_window(bounds=bounds, bands=["data"], res=7)  # not on the grid
    from tessellum.geo.grid import grid_for_bounds

    grid = grid_for_bounds(bounds, 7, UTM, anchor=(T0.c, T0.f))
    ref = np.zeros(grid.shape, "float64")
    reproject(
        data[0].astype("float64"),
        ref,
        src_transform=T0,
        src_crs=UTM,
        dst_transform=grid.transform,
        dst_crs=UTM,
    )  # float64 holds every 32-bit value: exact
    inside = ref != 0
    np.testing.assert_array_equal(got[0][inside], ref[inside].astype(dtype))


@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
def test_reprojected_read_matches_rasterio_warp(tmp_path, resampling):
    path, _ = write_cog(
        tmp_path / "a.tif",
        dtype="float32",
        shape=(600, 600),
        crs=UTM,
        transform=T0,
        compression="deflate",
        predictor=3,
        nodata=-9999.0,
    )
    coll = _coll([path])
    bounds = (-110.99, 41.955, -110.94, 41.995)
    res = 0.0002
    got = coll.read_window(
        bounds=bounds, bands=["data"], res=res, target_crs="EPSG:4326", resampling=resampling
    )
    from tessellum.geo.grid import grid_for_bounds

    grid = grid_for_bounds(bounds, res, "EPSG:4326")
    ref = np.full(grid.shape, -9999.0, dtype="float32")
    with rasterio.open(path) as ds:
        reproject(
            rasterio.band(ds, 1),
            ref,
            dst_transform=grid.transform,
            dst_crs="EPSG:4326",
            dst_nodata=-9999.0,
            resampling=Resampling[resampling],
        )
    assert got.shape == (1, *grid.shape)
    valid = (ref != -9999.0) & (got[0] != -9999.0)
    assert valid.mean() > 0.95
    np.testing.assert_allclose(got[0][valid], ref[valid], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(
    "transform",
    [
        Affine.translation(500000, 4650000) * Affine.rotation(20) * Affine.scale(10, -10),
        Affine(10, 2, 500000, 0, -10, 4650000),  # skewed
    ],
    ids=["rotated", "skewed"],
)
def test_rotated_source_is_warped_like_gdal(tmp_path, transform):
    """A rotated or skewed geotransform (GDAL reads it; GCP-less): reads warp it onto a
    north-up grid as rasterio.warp does; read_window without ``res`` says why it needs one."""
    path, _ = write_cog(tmp_path / "rot.tif", shape=(80, 100), blocksize=32, crs=UTM,
                        transform=transform, nodata=0, overviews=())  # fmt: skip
    coll = _coll([path])
    with rasterio.open(path) as ds:
        bounds = tuple(ds.bounds)
    with pytest.raises(ValidationError, match=r"rotated or skewed.*rot\.tif"):
        coll.read_window(bounds=bounds, bands=["data"])
    got = coll.read_window(bounds=bounds, bands=["data"], res=7)
    from tessellum.geo.grid import grid_for_bounds

    grid = grid_for_bounds(bounds, 7, UTM)
    ref = np.zeros(grid.shape, "uint16")
    with rasterio.open(path) as ds:
        reproject(rasterio.band(ds, 1), ref, dst_transform=grid.transform, dst_crs=UTM,
                  dst_nodata=0, resampling=Resampling.nearest)  # fmt: skip
    assert (ref != 0).mean() > 0.4
    np.testing.assert_array_equal(got[0], ref)
    aoi = box(bounds[0] + 200, bounds[1] + 150, bounds[0] + 700, bounds[1] + 600)
    ds = coll.get_xarray(aoi, ["data"], geometry_crs=UTM)  # on a grid of about 10 m
    assert ds["data"].count() > 1000


def test_mosaic_first_valid_wins(tmp_path):
    a_data = np.full((1, 100, 100), 7, dtype="uint16")
    a_data[:, :50, :] = 0  # nodata hole: filled from the next record
    b_data = np.full((1, 100, 100), 9, dtype="uint16")
    a, _ = write_cog(
        tmp_path / "a.tif",
        data=a_data,
        shape=(100, 100),
        nodata=0,
        crs=UTM,
        transform=T0,
        overviews=(),
    )
    b, _ = write_cog(
        tmp_path / "b.tif",
        data=b_data,
        shape=(100, 100),
        nodata=0,
        crs=UTM,
        transform=T0,
        overviews=(),
    )
    coll = _coll([a, b])
    bounds = (500000, 4649000, 501000, 4650000)
    out = coll.read_window(bounds=bounds, bands=["data"], record_ids=["a", "b"])
    assert (out[0, :50] == 9).all() and (out[0, 50:] == 7).all()
    stack = coll.read_window(bounds=bounds, bands=["data"], group_by="id")
    assert stack.shape == (2, 1, 100, 100)


def test_sample_points_match_rasterio(tmp_path):
    path, _ = write_cog(
        tmp_path / "a.tif", shape=(700, 900), crs=UTM, transform=T0, compression="deflate", nodata=0
    )
    coll = _coll([path])
    rng = np.random.default_rng(3)
    xs, ys = rng.uniform(500000, 509000, 300), rng.uniform(4643000, 4650000, 300)
    pts = [Point(x, y) for x, y in zip(xs, ys, strict=True)]
    table = coll.sample_points(pts, ["data"], geometry_crs=UTM)
    with rasterio.open(path) as ds:
        ref = np.array([v[0] for v in ds.sample(zip(xs, ys, strict=True))])
    got = np.array(table.column("value").to_pylist(), dtype=float)
    idx = np.array(table.column("point_index").to_pylist())
    expect = ref[idx].astype(float)
    expect[expect == 0] = np.nan
    np.testing.assert_array_equal(got, expect)


def _bilinear_by_hand(data, keep, row, col):
    """docs/reading.md's bilinear: the 2x2 pixel centres around (row, col), weighted by
    distance, neighbours that are not data (or off the raster) left out; None if none is."""
    r0, c0 = int(np.floor(row - 0.5)), int(np.floor(col - 0.5))
    wy, wx = row - 0.5 - r0, col - 0.5 - c0
    acc = total = 0.0
    for dr, dc, w in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx),
                      (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):  # fmt: skip
        r, c = r0 + dr, c0 + dc
        if 0 <= r < data.shape[0] and 0 <= c < data.shape[1] and keep[r, c] and w > 0:
            acc, total = acc + w * float(data[r, c]), total + w
    return acc / total if total > 0 else None


def test_bilinear_points_at_edges_and_next_to_nodata(tmp_path):
    """Inside, in the outer half of edge pixels, at corners, beside and on nodata pixels,
    and between four nodata pixels (null): as docs/reading.md describes."""
    data = (np.arange(48, dtype="float32").reshape(1, 6, 8) * 3.5) ** 1.3
    data[0, 2, 3] = data[0, 4, 6] = data[0, 4, 7] = data[0, 5, 6] = data[0, 5, 7] = -1
    path, _ = write_cog(tmp_path / "a.tif", data=data, dtype="float32", shape=(6, 8),
                        nodata=-1, crs=UTM, transform=T0, overviews=(), blocksize=16)  # fmt: skip
    rows = [2.7, 0.1, 5.9, 0.05, 5.99, 2.5, 3.2, 2.4, 5.5, 4.2]
    cols = [4.4, 3.3, 7.95, 0.05, 0.2, 3.5, 3.9, 0.3, 7.5, 6.6]
    pts = [Point(*(T0 * (c, r))) for r, c in zip(rows, cols, strict=True)]
    table = _coll([path]).sample_points(pts, ["data"], geometry_crs=UTM, method="bilinear")
    got = dict(zip(*(table.column(k).to_pylist() for k in ("point_index", "value")), strict=True))
    for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
        want = _bilinear_by_hand(data[0], data[0] != -1, r, c)
        assert (got[i] is None) == (want is None), (i, got[i], want)
        if want is not None:
            assert got[i] == pytest.approx(want, rel=1e-6), (i, r, c)
    assert got[8] is None  # the 2x2 around (5.5, 7.5) are all nodata
    assert got[5] is None  # on a nodata pixel's centre: no other pixel has any weight
    assert got[6] is not None  # beside it: the others


def test_bad_arguments_named(tmp_path):
    path, _ = write_cog(tmp_path / "a.tif", shape=(100, 100), crs=UTM, transform=T0, overviews=())
    coll = _coll([path])
    with pytest.raises(ValidationError, match="nope"):
        coll.get_numpy(box(500000, 4649000, 500500, 4649500), ["nope"], geometry_crs=UTM)
    with pytest.raises(ValidationError, match="group_by"):
        coll.read_window(
            bounds=(500000, 4649000, 500500, 4649500), bands=["data"], group_by="month"
        )
    with pytest.raises(ValidationError, match="resampling"):
        coll.read_window(
            bounds=(500000, 4649000, 500500, 4649500), bands=["data"], resampling="fancy"
        )


def _band_source(path):
    from tessellum.read.sources import record_bands

    return record_bands(_coll([path]).table, ["data"])[0].bands["data"]


@pytest.fixture(params=["fresh", "reused-garbage"])
def output_memory(request, monkeypatch):
    """Outputs on fresh memory, or on pooled memory full of garbage (a reused output
    must have every pixel written or filled)."""
    from tessellum.read import _pool

    if request.param == "reused-garbage":
        pool = _pool.OutputPool(1 << 30)
        monkeypatch.setattr(_pool, "MIN_POOLED_BYTES", 0)
        monkeypatch.setattr(_pool, "output_pool", lambda: pool)

        def garbage(nbytes: int) -> None:
            raw = np.full(nbytes, 0xAB, np.uint8)
            pool._give_back(raw)

        return garbage
    return lambda nbytes: None


@pytest.mark.parametrize("nodata", [0, None, float("nan")])
def test_window_beyond_the_image_marks_margins_and_nodata(tmp_path, nodata, output_memory):
    """A window hanging over two image edges: margins get the fill and are invalid,
    inside pixels equal GDAL's boundless read and are valid exactly where not nodata
    (the mask is built per tile in the decode threads). Also on reused memory."""
    import asyncio

    from tessellum.read.engine import Target, read_targets_async

    dtype = "float32" if nodata is not None and nodata != nodata else "uint16"
    output_memory(800 * 120 * np.dtype(dtype).itemsize)  # the output
    output_memory(800 * 120)  # its validity mask
    data = (np.arange(700 * 900).reshape(1, 700, 900) % 5000 + 1).astype(dtype)
    data[0, 600:640, 100:150] = 0 if nodata is None else nodata  # nodata inside the image
    path, _ = write_cog(
        tmp_path / "a.tif", shape=(700, 900), crs=UTM, transform=T0, dtype=dtype,
        compression="deflate", predictor=2, nodata=nodata, data=data,
    )  # fmt: skip
    src = _band_source(path)
    grid = src.grid.window(-30, 850, 800, 120)  # above the top, past the right edge
    ((got, valid),) = asyncio.run(read_targets_async([Target(grid, [src])]))
    with rasterio.open(path) as ds:
        fill = 0 if nodata is None else nodata
        ref = ds.read(1, window=Window(850, -30, 120, 800), boundless=True, fill_value=fill)
    np.testing.assert_array_equal(got, ref)
    inside = np.zeros(got.shape, dtype=bool)
    inside[30:730, :50] = True
    if nodata is None:
        want = inside
    elif nodata != nodata:
        want = inside & ~np.isnan(ref)
    else:
        want = inside & (ref != nodata)
    np.testing.assert_array_equal(valid, want)
    assert not valid[:30].any() and not valid[:, 50:].any()


def test_inflight_byte_budget(tmp_path):
    """A read keeps at most ``max_inflight_bytes`` of requests in flight (one at a time
    when a request is larger) and returns the same pixels; a bad budget is named."""
    import asyncio

    from tessellum.read.engine import Target, read_targets_async
    from tessellum.read.fetch import FetchOptions, _ByteBudget
    from tessellum.store import CoalescePolicy

    path, _ = write_cog(
        tmp_path / "a.tif", shape=(700, 900), crs=UTM, transform=T0, dtype="uint16",
        compression="deflate", predictor=2,
    )  # fmt: skip
    src = _band_source(path)
    grid = src.grid.window(0, 0, 700, 900)
    one_per_tile = CoalescePolicy(max_gap=0, max_request=1)
    ((want, _),) = asyncio.run(read_targets_async([Target(grid, [src])]))
    default_tile_cache().clear()
    opts = FetchOptions(max_inflight_bytes=1, policy=one_per_tile, cache=False)
    ((got, _),) = asyncio.run(read_targets_async([Target(grid, [src])], opts))
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValidationError, match="max_inflight_bytes must be >= 1, got 0"):
        asyncio.run(read_targets_async([Target(grid, [src])], FetchOptions(max_inflight_bytes=0)))

    async def run_budget() -> tuple[int, list[int]]:
        budget, used, peak, order = _ByteBudget(100), [0], [0], []

        async def req(i: int, n: int) -> None:
            held = await budget.acquire(n)
            used[0] += n
            peak[0] = max(peak[0], used[0])
            order.append(i)
            await asyncio.sleep(0.001)
            used[0] -= n
            budget.release(held)

        await asyncio.gather(*(req(i, n) for i, n in enumerate([40, 40, 40, 250, 10])))
        return peak[0], order

    peak, order = asyncio.run(run_budget())
    assert order == [0, 1, 2, 3, 4]  # in the order asked
    assert peak == 250  # the oversized request ran alone; otherwise <= 100


def test_candidate_pairs_of_points_equal_the_tree_query(monkeypatch):
    """Points are matched to footprints by a direct test per distinct footprint; the
    pairs (and their order) equal the STRtree query's, for points inside, on edges and
    vertices, outside, a record without a footprint, a footprint repeated (a time
    series), and points in a projected CRS."""
    import pyarrow as pa
    import shapely
    from pyproj import Transformer

    from tessellum.read import stacks

    fps = [
        box(0, 0, 2, 2), None, box(1, 1, 3, 3), shapely.Polygon([(5, 5), (6, 5), (5, 6)]),
        box(0, 0, 2, 2),
    ]  # fmt: skip
    table = pa.table(
        {"geometry": pa.array([None if f is None else f.wkb for f in fps], pa.binary())}
    )
    pts = np.array(
        [Point(0.5, 0.5), Point(2, 2), Point(1, 1), Point(3, 1.5), Point(9, 9), Point(5.5, 5.5),
         Point(5.5, 5.49), Point(6, 5), Point(2.5, 2.5)],
        dtype=object,
    )  # fmt: skip
    fast = stacks.candidate_pairs(table, pts, "OGC:CRS84")
    monkeypatch.setattr(stacks, "POINT_TESTS", 0)
    tree = stacks.candidate_pairs(table, pts, "OGC:CRS84")
    assert [a.tolist() for a in fast] == [a.tolist() for a in tree]
    assert list(zip(*(a.tolist() for a in fast), strict=True)) == [
        (0, 0), (0, 4), (1, 0), (1, 2), (1, 4), (2, 0), (2, 2), (2, 4), (3, 2), (5, 3),
        (6, 3), (7, 3), (8, 2),
    ]  # fmt: skip
    to_3857 = Transformer.from_crs("OGC:CRS84", "EPSG:3857", always_xy=True)
    projected = shapely.transform(pts, lambda xy: np.column_stack(to_3857.transform(*xy.T)))
    tree = stacks.candidate_pairs(table, projected, "EPSG:3857")
    monkeypatch.setattr(stacks, "POINT_TESTS", 20_000_000)
    fast = stacks.candidate_pairs(table, projected, "EPSG:3857")
    assert [a.tolist() for a in fast] == [a.tolist() for a in tree]
    assert (0, 0) in set(zip(*(a.tolist() for a in fast), strict=True))


def test_geometry_arrays_are_taken_as_they_are():
    """A numpy array of shapely geometries (``shapely.points(x, y)``) is taken without a
    per-element check; a missing one is named by its position (in a list, by its
    value), and an array of WKT strings still parses."""
    import shapely

    from tessellum.geo.geometry import coerce_geometries

    pts = shapely.points([0.5, 1.5, 2.5], [0.5, 1.5, 2.5])
    got = coerce_geometries(pts, crs="EPSG:32612")
    assert got.geoms.tolist() == pts.tolist() and got.geoms is not pts
    with_none = pts.copy()
    with_none[1] = None
    with pytest.raises(ValidationError, match=r"empty or missing geometries at positions \[1\]"):
        coerce_geometries(with_none)
    with pytest.raises(ValidationError, match="element None"):
        coerce_geometries(with_none.tolist())
    wkt = np.array(["POINT (1 2)", "POINT (3 4)"], dtype=object)
    assert [g.x for g in coerce_geometries(wkt).geoms] == [1.0, 3.0]


@pytest.mark.parametrize("method", ["nearest", "bilinear"])
def test_records_on_one_grid_share_placement_not_values(tmp_path, method):
    """Records on one grid place the points once (one computation per grid and point
    set) but each keeps its own values: the result of every file equals sampling that
    file alone, and nearest values equal rasterio's."""
    rng = np.random.default_rng(8)
    paths = []
    for k, transform in enumerate([T0, T0, T0, from_origin(500005, 4650000, 10, 10)]):
        data = rng.integers(1, 5000, (1, 300, 400), dtype=np.uint16)
        path, _ = write_cog(
            tmp_path / f"s{k}.tif", shape=(300, 400), crs=UTM, transform=transform, data=data
        )
        paths.append(path)
    xs, ys = rng.uniform(500020, 503900, 200), rng.uniform(4647050, 4649980, 200)
    pts = [Point(x, y) for x, y in zip(xs, ys, strict=True)]
    table = _coll(paths).sample_points(pts, ["data"], geometry_crs=UTM, method=method)
    assert table.num_rows == 4 * len(pts)
    for path in paths:
        alone = _coll([path]).sample_points(pts, ["data"], geometry_crs=UTM, method=method)
        rid = alone.column("record_id")[0].as_py()
        mine = table.filter(pc.equal(table.column("record_id"), rid))
        assert mine.column("point_index").to_pylist() == alone.column("point_index").to_pylist()
        assert mine.column("value").to_pylist() == alone.column("value").to_pylist()
        if method == "nearest":
            with rasterio.open(path) as ds:
                ref = [v[0] for v in ds.sample(zip(xs, ys, strict=True))]
            got = mine.column("value").to_pylist()
            assert got == [ref[i] for i in mine.column("point_index").to_pylist()]


def test_run_all_in_waits_for_every_call_and_raises_the_first_error():
    """The decode batch helper: one future for many pool calls; an error is raised
    after the batch, cancelling the future drops the calls not yet started."""
    import asyncio
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from tessellum.read.fetch import run_all_in

    ran: list[int] = []

    def call(i: int) -> None:
        time.sleep(0.01)
        if i == 2:
            raise ValueError("tile 2 is corrupt")
        ran.append(i)

    async def main() -> None:
        with ThreadPoolExecutor(2) as pool:
            await run_all_in(pool, call, [(i,) for i in (0, 1, 3)])
            assert sorted(ran) == [0, 1, 3]
            with pytest.raises(ValueError, match="tile 2"):
                await run_all_in(pool, call, [(i,) for i in range(5)])
            await run_all_in(pool, call, [])  # nothing to run: done at once
            gate = threading.Event()
            started: list[int] = []

            def blocked(i: int) -> None:
                started.append(i)
                gate.wait(5)

            fut = run_all_in(pool, blocked, [(i,) for i in range(6)])
            await asyncio.sleep(0.05)
            fut.cancel()
            await asyncio.sleep(0)  # the loop runs the future's callbacks
            gate.set()
        assert sorted(started) == [0, 1]  # two workers; the other four never started

    asyncio.run(main())


@pytest.mark.parametrize("warped", [False, True], ids=["pasted", "warped"])
def test_targets_write_into_the_layers_they_are_given(tmp_path, warped):
    """Target.out / valid_out: the read lands in the caller's (garbage-filled) buffers,
    by the streamed paste and by the assembly path alike, equal to a fresh read."""
    import asyncio

    from tessellum.geo.grid import Grid
    from tessellum.read.engine import Target, read_targets_async

    data = (np.arange(700 * 900).reshape(1, 700, 900) % 5000 + 1).astype("uint16")
    data[0, 100:140, 100:150] = 0
    path, _ = write_cog(
        tmp_path / "a.tif", shape=(700, 900), crs=UTM, transform=T0, nodata=0, data=data
    )
    src = _band_source(path)
    grid = src.grid.window(-30, 60, 200, 150)  # over the top edge
    if warped:  # the same area on a grid of 15 m pixels: not the file's pixels
        grid = Grid(140, 100, from_origin(500600, 4650300, 15, 15), UTM)
    layers = np.full((2, *grid.shape), 7777, dtype="uint16")
    valid = np.ones((2, *grid.shape), dtype=bool)
    (want, want_ok), (got, got_ok) = asyncio.run(
        read_targets_async(
            [Target(grid, [src]), Target(grid, [src], out=layers[1], valid_out=valid[1])]
        )
    )
    assert np.shares_memory(got, layers) and np.shares_memory(got_ok, valid)
    np.testing.assert_array_equal(layers[1], want)
    np.testing.assert_array_equal(valid[1], want_ok)
    assert (layers[0] == 7777).all() and valid[0].all()  # the other layer untouched
    assert not want_ok.all() and want_ok.any()


def test_target_buffers_are_checked(tmp_path):
    from tessellum.read.engine import Target

    path, _ = write_cog(tmp_path / "a.tif", shape=(300, 300), crs=UTM, transform=T0)
    src = _band_source(path)
    grid = src.grid.window(0, 0, 40, 50)
    with pytest.raises(ValidationError, match=r"out has shape \(50, 40\)"):
        Target(grid, [src], out=np.empty((50, 40), "uint16"))
    with pytest.raises(ValidationError, match="valid_out must be bool"):
        Target(grid, [src], valid_out=np.empty((40, 50), "uint8"))
    with pytest.raises(ValidationError, match=r"Target\.out is uint8, dtype is float32"):
        Target(grid, [src], dtype=np.dtype("float32"), out=np.empty((40, 50), "uint8"))


def test_records_of_different_types_stack_in_their_common_type(tmp_path):
    """A band stored as uint8 in one record and uint16 in another: get_numpy and
    get_xarray hold both in uint16, each equal to its file (nothing narrowed)."""
    small = (np.arange(300 * 300).reshape(1, 300, 300) % 250 + 1).astype("uint8")
    wide = (np.arange(300 * 300).reshape(1, 300, 300) * 7 % 60000 + 1).astype("uint16")
    a, _ = write_cog(tmp_path / "a.tif", shape=(300, 300), crs=UTM, transform=T0, data=small)
    b, _ = write_cog(tmp_path / "b.tif", shape=(300, 300), crs=UTM, transform=T0, data=wide)
    coll = _coll([a, b])
    aoi = box(500100, 4648000, 501500, 4649500)  # rows 50-200, cols 10-150
    res = coll.get_numpy([aoi, aoi], ["data"], geometry_crs=UTM)
    assert res.data.dtype == np.uint16 and res.data.shape == (4, 1, 150, 140)
    ds = coll.get_xarray(aoi, ["data"], geometry_crs=UTM)
    assert ds["data"].dtype == np.uint16
    files = {"a": small[0, 50:200, 10:150], "b": wide[0, 50:200, 10:150]}
    for n, rid in enumerate(res.labels.column("record_id").to_pylist()):
        want = files[rid.split("/")[-1][0]]
        np.testing.assert_array_equal(res.data[n, 0], want)
        np.testing.assert_array_equal(ds["data"].sel(time=ds["id"] == rid).values[0], want)


def test_read_window_holds_records_of_different_types_in_their_common_type(tmp_path):
    """A mosaic whose first record is uint8 (with a nodata hole) over a uint16 one: the
    uint16 values showing through the hole are not narrowed."""
    small = (np.arange(300 * 300).reshape(1, 300, 300) % 250 + 1).astype("uint8")
    small[0, 60:100, 20:80] = 0  # nodata: the next record shows through
    wide = (np.arange(300 * 300).reshape(1, 300, 300) * 7 % 60000 + 1).astype("uint16")
    a, _ = write_cog(
        tmp_path / "a.tif", shape=(300, 300), crs=UTM, transform=T0, data=small, nodata=0
    )
    b, _ = write_cog(tmp_path / "b.tif", shape=(300, 300), crs=UTM, transform=T0, data=wide)
    coll = _coll([a, b])
    small_first = sorted(coll.table.column("id").to_pylist(), key=lambda r: r.split("/")[-1])
    bounds = (500100, 4648000, 501500, 4649500)  # rows 50-200, cols 10-150
    win = np.s_[50:200, 10:150]
    layers = coll.read_window(bounds=bounds, bands=["data"], record_ids=small_first, group_by="id")
    assert layers.dtype == np.uint16 and layers.shape == (2, 1, 150, 140)
    np.testing.assert_array_equal(layers[0, 0], small[0][win])
    np.testing.assert_array_equal(layers[1, 0], wide[0][win])
    mosaic = coll.read_window(bounds=bounds, bands=["data"], record_ids=small_first)
    want = np.where(small[0] != 0, small[0], wide[0])[win]
    assert mosaic.dtype == np.uint16
    np.testing.assert_array_equal(mosaic[0], want)


@pytest.mark.parametrize(
    "case", ["one source", "two sources", "fill differs", "geometry mask", "warped"]
)
def test_targets_without_a_wanted_mask_read_the_same_pixels(tmp_path, case):
    """want_valid=False returns no mask and the pixels a full read returns, also where
    the assembly needs the mask itself (priority between sources, another fill value,
    a geometry mask)."""
    import asyncio

    from tessellum.geo.grid import Grid
    from tessellum.read.engine import Target, read_targets_async

    data = (np.arange(700 * 900).reshape(1, 700, 900) % 5000 + 1).astype("uint16")
    data[0, 100:140, 100:150] = 0
    a, _ = write_cog(
        tmp_path / "a.tif", shape=(700, 900), crs=UTM, transform=T0, nodata=0, data=data
    )
    b, _ = write_cog(
        tmp_path / "b.tif", shape=(700, 900), crs=UTM, transform=T0, nodata=0, data=data[:, ::-1]
    )
    src_a, src_b = _band_source(a), _band_source(b)
    grid = src_a.grid.window(-30, 60, 200, 150)
    kw: dict = {}
    sources = [src_a]
    if case == "two sources":
        sources = [src_a, src_b]
    elif case == "fill differs":
        kw["nodata"] = 9
    elif case == "geometry mask":
        mask = np.ones(grid.shape, bool)
        mask[:, :20] = False
        kw["mask"] = mask
    elif case == "warped":
        grid = Grid(140, 100, from_origin(500600, 4650300, 15, 15), UTM)
    (full, full_ok), (lean, none) = asyncio.run(
        read_targets_async(
            [Target(grid, sources, **kw), Target(grid, sources, want_valid=False, **kw)]
        )
    )
    assert none is None and full_ok is not None
    np.testing.assert_array_equal(lean, full)


def test_nan_validity_on_one_pixel_wide_tile_columns(tmp_path, output_memory):
    """A float image one pixel wider than its tiles: the last tile column pastes a
    one-pixel-wide (strided) region of the validity mask. numpy 2.4 writes only part
    of a strided ``out=`` of ``np.isnan``, which left the rest of the mask as garbage."""
    import asyncio

    from tessellum.read.engine import Target, read_targets_async

    output_memory(300 * 257)  # the validity mask, on reused memory full of garbage
    data = np.full((1, 300, 257), 5.0, dtype="float32")
    data[0, ::3, 256] = np.nan  # every third pixel of the last column is nodata
    path, _ = write_cog(
        tmp_path / "a.tif", shape=(300, 257), crs=UTM, transform=T0, dtype="float32",
        nodata=float("nan"), data=data, overviews=(),
    )  # fmt: skip
    src = _band_source(path)
    for _ in range(3):
        ((_, valid),) = asyncio.run(read_targets_async([Target(src.grid, [src])]))
        np.testing.assert_array_equal(valid, ~np.isnan(data[0]))


def test_nan_is_no_data_without_a_nodata_value(tmp_path):
    """A float raster without nodata holds no data where it holds NaN: the next record
    fills those pixels in a mosaic (streamed and held paths alike), and they are not
    valid; so do values equal to another nodata."""
    import asyncio

    from tessellum.read.engine import Target, read_targets_async

    a_data = np.full((1, 64, 64), 1.5, dtype="float32")
    a_data[0, :10] = np.nan
    b_data = np.full((1, 64, 64), 2.5, dtype="float32")
    a, _ = write_cog(tmp_path / "a.tif", data=a_data, shape=(64, 64), dtype="float32",
                     crs=UTM, transform=T0, overviews=())  # fmt: skip
    b, _ = write_cog(tmp_path / "b.tif", data=b_data, shape=(64, 64), dtype="float32",
                     crs=UTM, transform=T0, overviews=())  # fmt: skip
    sa, sb = _band_source(a), _band_source(b)
    ((_, valid),) = asyncio.run(read_targets_async([Target(sa.grid, [sa])]))
    assert not valid[:10].any() and valid[10:].all()
    ((mosaic, valid),) = asyncio.run(read_targets_async([Target(sa.grid, [sa, sb])]))
    assert (mosaic[:10] == 2.5).all() and (mosaic[10:] == 1.5).all() and valid.all()
    table = _coll([a]).sample_points(
        [Point(500005, 4649995), Point(500005, 4649995 - 300)], ["data"], geometry_crs=UTM
    )
    assert table.column("value").to_pylist() == [None, 1.5]


def test_stacks_mosaic_ties_take_the_lowest_id(tmp_path):
    """Records of one datetime overlap: the mosaic (zonal statistics, get_xarray with
    mosaic) takes the lowest id, as raster mode does, whatever the table's order."""
    import asyncio

    from tessellum.collection import build_from_table
    from tessellum.read.stacks import read_stacks_async

    paths = {}
    for rid, value in (("b", 2), ("a", 1), ("c", 3)):
        data = np.full((1, 32, 32), value, dtype="uint8")
        paths[rid], _ = write_cog(tmp_path / f"{rid}.tif", data=data, shape=(32, 32),
                                  dtype="uint8", crs=UTM, transform=T0, overviews=())  # fmt: skip
    table = pa.table({
        "href": [str(paths[k]) for k in ("b", "a", "c")], "id": ["b", "a", "c"],
        "datetime": ["2022-06-01T00:00:00Z", "2022-06-01T00:00:00Z", "2021-01-01T00:00:00Z"],
    })  # fmt: skip
    coll = build_from_table(table, name="ties", progress=False)
    (stack,) = asyncio.run(read_stacks_async(
        coll.table, [box(500000, 4649700, 500300, 4650000)], ["data"],
        geometry_crs=UTM, mosaic=True,
    ))  # fmt: skip
    assert stack.record_ids == ["a", "b", "c"]
    assert (stack.data["data"] == 1).all()


@pytest.mark.parametrize(
    ("crs", "res", "origin"),
    [("EPSG:32611", 30.0, (300000, 6000000)), ("EPSG:3413", 1000.0, (500000, 1500000))],
)
def test_points_just_inside_a_raster_edge_are_sampled(tmp_path, crs, res, origin):
    """Points a fraction of a pixel inside the raster's edge: its lon/lat footprint is
    straight between vertices and cuts inside curved edges (1.5 px on a 1,500 km polar
    raster), so points are matched to rasters in the raster's own grid."""
    n = 1500
    transform = from_origin(*origin, res, res)
    path = tmp_path / "edge.tif"
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="uint8",
                       crs=crs, transform=transform, tiled=True) as ds:  # fmt: skip
        ds.write(np.full((1, n, n), 9, "uint8"))
    k = np.arange(0, n, 7) + 0.5
    cols, rows = [], []
    for inset in (0.001, 0.5, 1.5):
        cols += [k, k, np.full_like(k, inset), np.full_like(k, n - inset)]
        rows += [np.full_like(k, inset), np.full_like(k, n - inset), k, k]
    xs, ys = transform * (np.concatenate(cols), np.concatenate(rows))
    outside = [Point(origin[0] - res * 0.01, origin[1] - res * 5)]  # just past the left edge
    pts = [Point(x, y) for x, y in zip(xs, ys, strict=True)] + outside
    table = _coll([path]).sample_points(pts, ["data"], geometry_crs=crs)
    assert table.column("point_index").to_pylist() == list(range(len(xs)))
    assert set(table.column("value").to_pylist()) == {9}


def test_equal_size_padding_is_nodata_for_points_and_lines(tmp_path):
    """Smaller chips are padded to the common shape with nodata: also for points and
    lines, which have no polygon mask (the padding held the raster's pixels)."""
    path, _ = write_cog(tmp_path / "a.tif", data=np.full((1, 100, 100), 1234, "uint16"),
                        shape=(100, 100), nodata=0, crs=UTM, transform=T0, overviews=())  # fmt: skip
    geoms = [
        box(500100, 4649500, 500200, 4649600),  # 10 x 10
        Point(500305, 4649405),  # 1 x 1
        LineString([(500505, 4649205), (500535, 4649205)]),  # 1 x 4 (touched)
    ]
    r = _coll([path]).get_numpy(geoms, ["data"], geometry_crs=UTM)
    assert r.data.shape == (3, 1, 10, 10)
    assert [int((chip != 0).sum()) for chip in r.data[:, 0]] == [100, 1, 4]
    assert (r.data[1, 0, 0, 0] == 1234) and (r.data[2, 0, 0, :4] == 1234).all()


def test_warped_zeros_of_a_file_without_nodata_are_data(tmp_path):
    """Integer data without nodata, warped: its zeros are data (GDAL's src_nodata was
    given the fill value 0, so they came back invalid and a later record replaced
    them); nearest and mode equal rasterio.warp.reproject."""
    import asyncio

    from tessellum.geo.grid import Grid
    from tessellum.read.engine import Target, read_targets_async

    data = np.full((1, 200, 200), 5, "uint8")
    data[0, :, :100] = 0
    a, _ = write_cog(tmp_path / "a.tif", data=data, shape=(200, 200), dtype="uint8",
                     crs=UTM, transform=T0, overviews=())  # fmt: skip
    b, _ = write_cog(tmp_path / "b.tif", data=np.full((1, 200, 200), 77, "uint8"),
                     shape=(200, 200), dtype="uint8", crs=UTM, transform=T0, overviews=())  # fmt: skip
    sa, sb = _band_source(a), _band_source(b)
    from rasterio.warp import transform_bounds

    left, _, _, top = transform_bounds(UTM, "EPSG:32613", 500300, 4648300, 501700, 4649700)
    dst = Grid(40, 40, from_origin(left, top, 20, 20), "EPSG:32613")  # another UTM zone
    for resampling in ("nearest", "mode"):
        ((got, valid),) = asyncio.run(
            read_targets_async([Target(dst, [sa, sb], resampling=resampling)])
        )
        ref = np.full(dst.shape, 77, "uint8")
        with rasterio.open(a) as ds:
            reproject(ds.read(1), ref, src_transform=ds.transform, src_crs=ds.crs,
                      dst_transform=dst.transform, dst_crs="EPSG:32613",
                      resampling=Resampling[resampling])  # fmt: skip
        assert valid.all()
        np.testing.assert_array_equal(got, ref)
        assert (got == 0).any() and (got == 5).any()


def test_antimeridian_aoi_read_into_lonlat_stays_small(tmp_path):
    """A small AOI across 180° read into EPSG:4326: the output grid runs 179.99..180.01
    (geographic grids may pass ±180), not -180..180 at a billionth of a degree (which
    tried to allocate petabytes), and its pixels are the raster's."""
    from pyproj import Transformer

    crs = "EPSG:32660"
    cx, cy = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(180.0, 60.0)
    path = tmp_path / "am.tif"
    with rasterio.open(path, "w", driver="GTiff", width=200, height=200, count=1, dtype="uint8",
                       crs=crs, transform=from_origin(round(cx) - 3000, round(cy) + 3000, 30, 30),
                       nodata=0) as ds:  # fmt: skip
        ds.write(np.full((1, 200, 200), 5, "uint8"))
    aoi = box(cx - 300, cy - 150, cx + 300, cy + 150)  # 600 m x 300 m
    ds = _coll([path]).get_xarray(aoi, ["data"], geometry_crs=crs, target_crs="EPSG:4326")
    arr = ds["data"].values[0]
    assert arr.size < 2000 and 179.9 < float(ds.x.min()) < 180 < float(ds.x.max()) < 180.1
    assert (arr == 5).mean() > 0.6 and set(np.unique(arr)) <= {0, 5}


def test_point_matching_narrowed_by_footprints_gives_the_same_rows(tmp_path, monkeypatch):
    """Jobs too large for a test per (point, grid) are narrowed by the footprints first,
    then tested in each raster's grid: the same rows, for rasters on different grids."""
    from tessellum.read import points as points_module

    a, _ = write_cog(tmp_path / "a.tif", shape=(300, 300), crs=UTM, transform=T0, overviews=())
    b, _ = write_cog(tmp_path / "b.tif", shape=(200, 250), crs=UTM, overviews=(),
                     transform=from_origin(501000, 4649000, 10, 10))  # fmt: skip
    rng = np.random.default_rng(9)
    pts = [Point(x, y) for x, y in zip(rng.uniform(499900, 503600, 500),
                                       rng.uniform(4646900, 4650100, 500), strict=True)]  # fmt: skip
    coll = _coll([a, b])
    direct = coll.sample_points(pts, ["data"], geometry_crs=UTM)
    monkeypatch.setattr(points_module, "POINT_TESTS", 0)
    narrowed = coll.sample_points(pts, ["data"], geometry_crs=UTM)
    assert direct.num_rows > 300 and direct.equals(narrowed)


def test_nan_pixels_of_a_float_file_with_nodata_read_as_its_fill(tmp_path):
    """NaN is no data even where the file declares another nodata value: one record's
    read holds the fill there (it held NaN), as masked and nodata pixels do."""
    data = np.full((1, 64, 64), 3.5, "float32")
    data[0, 5, 7] = np.nan
    data[0, 9, 9] = -9999.0
    path, _ = write_cog(tmp_path / "a.tif", data=data, shape=(64, 64), dtype="float32",
                        nodata=-9999.0, crs=UTM, transform=T0, overviews=())  # fmt: skip
    out = _coll([path]).read_window(bounds=(500000, 4649360, 500640, 4650000), bands=["data"])
    assert out[0, 5, 7] == -9999.0 and out[0, 9, 9] == -9999.0
    assert (out[0] == 3.5).sum() == 64 * 64 - 2


def test_get_xarray_returns_what_it_was_given_one_or_a_collection(tmp_path):
    """One geometry gives a Dataset (an error naming the problem when no record meets it);
    a collection of geometries gives a list, even a list of one, with None where no
    record meets a geometry."""
    import xarray as xr

    path, _ = write_cog(tmp_path / "a.tif", shape=(64, 64), crs=UTM, transform=T0, overviews=())
    coll = _coll([path])
    inside = box(500100, 4649500, 500300, 4649700)
    outside = box(600000, 4000000, 600100, 4000100)
    ds = coll.get_xarray(inside, ["data"], geometry_crs=UTM)
    assert isinstance(ds, xr.Dataset)
    one = coll.get_xarray([inside], ["data"], geometry_crs=UTM)
    assert isinstance(one, list) and len(one) == 1
    np.testing.assert_array_equal(one[0]["data"].values, ds["data"].values)
    both = coll.get_xarray([outside, inside], ["data"], geometry_crs=UTM)
    assert both[0] is None and isinstance(both[1], xr.Dataset)
    with pytest.raises(ValidationError, match="no record"):
        coll.get_xarray(outside, ["data"], geometry_crs=UTM)


def test_a_file_rewritten_and_indexed_again_is_read_anew(tmp_path):
    """Decoded tiles are cached per parsed header: a file rewritten in place (same layout,
    same tile sizes) and indexed again reads its new pixels (the process-wide tile cache
    returned the old ones), while repeated reads of one collection still hit the cache."""
    path = tmp_path / "same.tif"

    def write(value):
        with rasterio.open(path, "w", driver="GTiff", width=512, height=512, count=1,
                           dtype="uint8", crs=UTM, transform=T0, tiled=True, blockxsize=256,
                           blockysize=256, compress="deflate") as ds:  # fmt: skip
            ds.write(np.full((1, 512, 512), value, "uint8"))

    bounds = (500000, 4644880, 505120, 4650000)
    write(1)
    first = _coll([path])
    assert np.unique(first.read_window(bounds=bounds, bands=["data"])).tolist() == [1]
    cache = default_tile_cache()
    hits = cache.hits
    first.subset().read_window(bounds=bounds, bands=["data"])  # one lineage: cached
    assert cache.hits - hits == 4
    write(2)
    again = _coll([path])
    assert np.unique(again.read_window(bounds=bounds, bands=["data"])).tolist() == [2]


@pytest.mark.parametrize("resampling", ["average", "max", "mode"])
def test_coarsened_mosaic_seams_take_no_pixel_from_the_neighbour_tile(tmp_path, resampling):
    """A coarse target pixel whose edge meets a tile's edge: float noise made GDAL's area
    kernels see a ~1e-13 px overlap with the tile beyond the seam and give the pixel that
    tile's edge values (first valid wins, so they replaced the right ones). Two
    Copernicus-style tiles (half-pixel offset), the right one first in priority."""
    import asyncio

    from tessellum.geo.grid import Grid
    from tessellum.read.engine import Target, read_targets_async

    res, half = 1 / 1200, 1 / 2400
    rng = np.random.default_rng(0)
    data = rng.integers(1, 5000, (1, 120, 240)).astype("float32")
    paths = []
    for k in range(2):  # tiles of 0.1 degree: left (k=0) and right (k=1)
        p, _ = write_cog(
            tmp_path / f"t{k}.tif", dtype="float32", shape=(120, 120), crs="EPSG:4326",
            transform=from_origin(10.0 + 0.1 * k - half, 47.0 + half, res, res),
            nodata=-32767.0, data=data[:, :, 120 * k : 120 * (k + 1)], overviews=(),
        )  # fmt: skip
        paths.append(p)
    left, right = (_band_source(p) for p in paths)
    grid = Grid(60, 120, from_origin(10.0 - half, 47.0 + half, 2 * res, 2 * res), "EPSG:4326")
    ((got, ok),) = asyncio.run(
        read_targets_async([Target(grid, [right, left], resampling=resampling)])
    )
    want = np.full(grid.shape, -32767.0, dtype="float32")
    reproject(
        data[0], want, src_transform=from_origin(10.0 - half, 47.0 + half, res, res),
        src_crs="EPSG:4326", dst_transform=grid.transform, dst_crs="EPSG:4326",
        resampling=Resampling[resampling],
    )  # fmt: skip
    assert ok.all()
    np.testing.assert_array_equal(got[:, 59], want[:, 59])  # the left tile's last pixels
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("resampling", "factor"), [("bilinear", 3), ("cubic", 3), ("cubic", 4), ("lanczos", 4)]
)
def test_downsampling_kernels_do_not_depend_on_the_tiling(tmp_path, resampling, factor):
    """GDAL widens its bilinear/cubic/lanczos kernels by the downsampling factor, which
    it guessed per warp from the target's size over the source window clipped to the
    source: a tile warped onto a target spanning several tiles got a wrong factor on
    every pixel (and windows padded by 3 px cut wider kernels short). Four tiles of one
    raster against the raster warped whole, away from the seams (there each tile's
    kernel stops at its edge and the first valid tile wins, as with rasterio.merge)."""
    import asyncio

    from tessellum.geo.grid import Grid
    from tessellum.read.engine import Target, read_targets_async

    res, f = 1 / 1200, factor
    rng = np.random.default_rng(1)
    data = rng.normal(0, 5, (240, 480)) + np.linspace(0, 100, 480)[None, :]
    data = data.astype("float32")
    sources = []
    for k in range(4):
        p, _ = write_cog(
            tmp_path / f"t{k}.tif", dtype="float32", shape=(240, 120), crs="EPSG:4326",
            transform=from_origin(10 + 0.1 * k, 47, res, res), nodata=-32767.0,
            data=np.ascontiguousarray(data[None, :, 120 * k : 120 * (k + 1)]), overviews=(),
        )  # fmt: skip
        sources.append(_band_source(p))
    grid = Grid(240 // f - 2, 480 // f - 2, from_origin(10 + f * res, 47 - f * res, f * res, f * res),
                "EPSG:4326")  # fmt: skip
    ((got, ok),) = asyncio.run(read_targets_async([Target(grid, sources, resampling=resampling)]))
    want = np.full(grid.shape, -32767.0, dtype="float32")
    reproject(
        data, want, src_transform=from_origin(10, 47, res, res), src_crs="EPSG:4326",
        dst_transform=grid.transform, dst_crs="EPSG:4326", resampling=Resampling[resampling],
    )  # fmt: skip
    seams = [(120 * k - f) / f for k in (1, 2, 3)]  # target columns of the tile edges
    cols = np.arange(grid.width)
    away = np.all([np.abs(cols + 0.5 - s) > 5 for s in seams], axis=0)
    assert ok.all()
    np.testing.assert_allclose(got[:, away], want[:, away], atol=1e-3)
