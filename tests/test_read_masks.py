"""Internal (per-dataset) masks, as GDAL writes them: masked pixels are no data in every
read path, compared with GDAL's own mask (``read_masks``) at full resolution and in the
overviews."""

from __future__ import annotations

import asyncio

import numpy as np
import pyarrow as pa
import pytest
import rasterio
from rasterio.enums import MaskFlags
from rasterio.transform import from_origin
from rasterio.windows import Window
from shapely.geometry import Point

from _cogfactory import write_cog
from tessellum.collection import build_from_files, build_from_table
from tessellum.read.cache import default_tile_cache
from tessellum.read.engine import Target, read_targets_async
from tessellum.read.sources import record_bands

UTM = "EPSG:32612"
T0 = from_origin(500000, 4650000, 10, 10)
SHAPE = (600, 700)


@pytest.fixture(autouse=True)
def _fresh_cache():
    default_tile_cache().clear()
    yield
    default_tile_cache().clear()


def _blocky_mask(shape: tuple[int, int], seed: int = 3) -> np.ndarray:
    """Masked 20x20 blocks at random, crossing tile edges (0: masked, as GDAL)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((-(-shape[0] // 20), -(-shape[1] // 20))) < 0.35
    m = np.kron(coarse, np.ones((20, 20), bool))[: shape[0], : shape[1]]
    return np.where(m, 0, 255).astype(np.uint8)


def _masked_cog(path, **kw):
    opts = dict(shape=SHAPE, crs=UTM, transform=T0, blocksize=256, overviews=(2, 4))
    opts.update(kw)
    return write_cog(path, mask=_blocky_mask(opts["shape"]), **opts)[0]


def _source(path):
    coll = build_from_files([str(path)], name="m", progress=False)
    return record_bands(coll.table, ["data"])[0].bands["data"]


def _read(grid, sources):
    ((arr, valid),) = asyncio.run(read_targets_async([Target(grid, sources)]))
    return arr, valid


@pytest.mark.parametrize(
    "spec",
    [
        dict(dtype="uint16", compression="deflate", predictor=2, nodata=0),
        dict(dtype="float32", compression="zstd"),
        dict(dtype="int16", compression="lzw", nodata=-9999),
    ],
    ids=["uint16-nodata", "float32", "int16-nodata"],
)
def test_masked_pixels_are_no_data_at_full_resolution(tmp_path, spec):
    path = _masked_cog(tmp_path / "m.tif", **spec)
    src = _source(path)
    assert src.header.mask_levels
    nodata = spec.get("nodata")
    fill = nodata if nodata is not None else (np.nan if spec["dtype"] == "float32" else 0)
    grid = src.grid.window(-40, 500, 500, 300)  # over the top and right edges, unaligned
    arr, valid = _read(grid, [src])
    with rasterio.open(path) as ds:
        win = Window(500, -40, 300, 500)
        ref = ds.read(1, window=win, boundless=True, fill_value=fill)
        kept = ds.read_masks(1, window=win, boundless=True) != 0
    if nodata is not None:
        kept &= ref != nodata
    np.testing.assert_array_equal(valid, kept)
    np.testing.assert_array_equal(arr[kept], ref[kept])
    if np.isnan(fill):
        assert np.isnan(arr[~kept]).all()
    else:
        assert (arr[~kept] == fill).all()


@pytest.mark.parametrize("overview", [0, 1])
def test_overview_reads_use_the_mask_overviews(tmp_path, overview):
    path = _masked_cog(tmp_path / "m.tif", dtype="uint16", compression="deflate", nodata=0)
    src = _source(path)
    assert len(src.header.mask_levels) == 3
    level = overview + 1
    arr, valid = _read(src.level_grid(level), [src])
    with rasterio.open(path, overview_level=overview) as ds:
        ref, kept = ds.read(1), ds.read_masks(1) != 0
    kept &= ref != 0
    np.testing.assert_array_equal(valid, kept)
    np.testing.assert_array_equal(np.where(kept, ref, 0), arr)


def test_mosaic_fills_masked_pixels_from_the_next_record(tmp_path):
    a = _masked_cog(tmp_path / "a.tif", dtype="uint8", compression="deflate",
                    data=np.full((1, *SHAPE), 7, np.uint8))  # fmt: skip
    b, _ = write_cog(tmp_path / "b.tif", dtype="uint8", compression="deflate", shape=SHAPE,
                     crs=UTM, transform=T0, data=np.full((1, *SHAPE), 9, np.uint8))  # fmt: skip
    coll = build_from_files([str(a), str(b)], name="ab", progress=False)
    bounds = (500000, 4650000 - 6000, 507000, 4650000)
    out = coll.read_window(bounds=bounds, bands=["data"], record_ids=["a", "b"])
    kept = _blocky_mask(SHAPE) != 0
    np.testing.assert_array_equal(out[0], np.where(kept, 7, 9))


@pytest.mark.parametrize("method", ["nearest", "bilinear"])
def test_sample_points_skip_masked_pixels(tmp_path, method):
    path = _masked_cog(tmp_path / "m.tif", dtype="uint16", compression="deflate")
    rng = np.random.default_rng(5)
    rows, cols = rng.uniform(0, SHAPE[0], 400), rng.uniform(0, SHAPE[1], 400)
    xs, ys = 500000 + cols * 10, 4650000 - rows * 10
    coll = build_from_files([str(path)], name="m", progress=False)
    table = coll.sample_points([Point(x, y) for x, y in zip(xs, ys, strict=True)], ["data"],
                               geometry_crs=UTM, method=method)  # fmt: skip
    got = table.column("value").to_numpy(zero_copy_only=False)
    with rasterio.open(path) as ds:
        data, kept = ds.read(1).astype(float), ds.read_masks(1) != 0
    if method == "nearest":
        r, c = rows.astype(int), cols.astype(int)
        want = np.where(kept[r, c], data[r, c], np.nan)
    else:  # the kept neighbours, weighted and renormalised
        r0, c0 = np.floor(rows - 0.5).astype(int), np.floor(cols - 0.5).astype(int)
        wy, wx = rows - 0.5 - r0, cols - 0.5 - c0
        acc, wsum = np.zeros(len(rows)), np.zeros(len(rows))
        for dr, dc, w in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx),
                          (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):  # fmt: skip
            rr, cc = r0 + dr, c0 + dc
            inside = (rr >= 0) & (rr < SHAPE[0]) & (cc >= 0) & (cc < SHAPE[1])
            rr, cc = np.clip(rr, 0, SHAPE[0] - 1), np.clip(cc, 0, SHAPE[1] - 1)
            ok = inside & kept[rr, cc]
            acc += np.where(ok, data[rr, cc] * w, 0)
            wsum += np.where(ok, w, 0)
        want = np.where(wsum > 1e-12, acc / np.where(wsum > 1e-12, wsum, 1), np.nan)
    got = np.array([np.nan if v is None else v for v in got], float)
    assert np.isnan(want).any() and (~np.isnan(want)).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=1e-9)


def test_jpeg_rgb_with_a_mask_reads_masked_pixels_as_no_data(tmp_path):
    """The common masked COG: 3-band JPEG (YCbCr) with a 1-bit deflate mask (NAIP-like).
    Kept pixels equal GDAL's within the chroma upsampling difference of
    test_tiff_decode.test_jpeg_ycbcr_matches_gdal (a smooth image)."""
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    smooth = np.stack([128 + 90 * np.sin(xx / 37.0), 128 + 90 * np.cos(yy / 41.0),
                       128 + 80 * np.sin((xx + yy) / 29.0)]).round().astype(np.uint8)  # fmt: skip
    path = _masked_cog(tmp_path / "rgb.tif", dtype="uint8", count=3, compression="jpeg",
                       photometric="ycbcr", overviews=(), data=smooth)  # fmt: skip
    table = pa.table({"href": [str(path)], "id": ["rgb"]})
    coll = build_from_table(table, name="rgb", band_index_map={"r": 0, "g": 1, "b": 2},
                            progress=False)  # fmt: skip
    out = coll.read_window(bounds=(500000, 4650000 - 6000, 507000, 4650000), bands=["r", "g", "b"])
    with rasterio.open(path) as ds:
        ref, kept = ds.read(), ds.read_masks(1) != 0
    np.testing.assert_array_equal(out[:, ~kept], 0)
    diff = np.abs(out[:, kept].astype(np.int16) - ref[:, kept])
    assert diff.mean() < 1.0 and diff.max() <= 12


@pytest.mark.parametrize("interleave", ["pixel", "band"])
def test_alpha_masks_the_other_bands(tmp_path, interleave):
    """An RGBA file (ExtraSamples = alpha): GDAL uses the alpha as every other band's
    mask (``read_masks``); the alpha band itself is data."""
    data = np.full((4, *SHAPE), 200, np.uint8)
    data[3] = _blocky_mask(SHAPE)
    path, _ = write_cog(tmp_path / "rgba.tif", data=data, dtype="uint8", count=4, shape=SHAPE,
                        crs=UTM, transform=T0, blocksize=256, interleave=interleave,
                        photometric="rgb", creation_options={"ALPHA": "YES"})  # fmt: skip
    table = pa.table({"href": [str(path)], "id": ["rgba"]})
    coll = build_from_table(table, name="rgba", band_index_map={"r": 0, "a": 3},
                            progress=False)  # fmt: skip
    out = coll.read_window(bounds=(500000, 4650000 - 6000, 507000, 4650000), bands=["r", "a"])
    with rasterio.open(path) as ds:
        assert ds.mask_flag_enums[0] == [MaskFlags.per_dataset, MaskFlags.alpha]
        kept = ds.read_masks(1) != 0
    np.testing.assert_array_equal(out[0], np.where(kept, 200, 0))
    np.testing.assert_array_equal(out[1], data[3])
    (r0, c0), (r1, c1) = np.argwhere(~kept)[0], np.argwhere(kept)[0]
    pts = [Point(500005 + 10 * c, 4649995 - 10 * r) for r, c in ((r0, c0), (r1, c1))]
    table = coll.sample_points(pts, ["r"], geometry_crs=UTM)
    assert table.column("value").to_pylist() == [None, 200]


@pytest.mark.filterwarnings("ignore::rasterio.errors.NodataShadowWarning")  # what it tests
def test_a_nodata_value_shadows_the_alpha(tmp_path):
    """As in GDAL: an RGBA file that declares nodata is masked by the nodata value, not
    by its alpha."""
    data = np.full((4, *SHAPE), 100, np.uint8)
    data[3] = _blocky_mask(SHAPE)
    path, _ = write_cog(tmp_path / "rgba.tif", data=data, dtype="uint8", count=4, shape=SHAPE,
                        crs=UTM, transform=T0, nodata=255, photometric="rgb",
                        creation_options={"ALPHA": "YES"})  # fmt: skip
    table = pa.table({"href": [str(path)], "id": ["rgba"]})
    coll = build_from_table(table, name="rgba", band_index_map={"r": 0}, progress=False)
    out = coll.read_window(bounds=(500000, 4650000 - 6000, 507000, 4650000), bands=["r"])
    with rasterio.open(path) as ds:
        assert (ds.read_masks(1) != 0).all()
    assert (out == 100).all()
