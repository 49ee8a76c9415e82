"""The chip dataset on local files: chips tile every record's extent, mosaics follow the
collection-wide priority, chips without records batch with the others, and arguments
are validated (the fixture-world tests are in test_read_world.py)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import Point

from _cogfactory import write_cog
from tessellum.collection import build_from_table
from tessellum.errors import ValidationError

UTM = "EPSG:32612"
X0, Y0 = 500000, 4650000


@pytest.fixture
def coll(tmp_path):
    """Four 64x64 uint16 rasters at 10 m (nodata 0): a and d share a grid and d is the
    later; b is shifted south-east; c, undated, east. Values: a=1, b=2, c=9, d=4."""
    specs = [("a", 0, 0, dt.datetime(2024, 1, 1, tzinfo=dt.UTC), 1),
             ("b", 320, -320, dt.datetime(2024, 2, 1, tzinfo=dt.UTC), 2),
             ("c", 640, 0, None, 9),
             ("d", 0, 0, dt.datetime(2024, 2, 1, tzinfo=dt.UTC), 4)]  # fmt: skip
    hrefs = []
    for rid, dx, dy, _, value in specs:
        path, _ = write_cog(tmp_path / f"{rid}.tif", data=np.full((1, 64, 64), value, "uint16"),
                            shape=(64, 64), nodata=0, crs=UTM, overviews=(), blocksize=32,
                            transform=from_origin(X0 + dx, Y0 + dy, 10, 10))  # fmt: skip
        hrefs.append(str(path))
    table = pa.table({
        "id": [s[0] for s in specs], "href": hrefs,
        "datetime": pa.array([s[3] for s in specs], pa.timestamp("us", tz="UTC")),
    })  # fmt: skip
    return build_from_table(table, name="chips", progress=False)


def _image(sample):
    return np.asarray(sample["image"])


def test_chips_tile_every_records_extent(coll):
    ds = coll.to_torchgeo_dataset(["data"], chip_size=32)
    left = min(c.bounds[0] for c in ds.chips)
    bottom = min(c.bounds[1] for c in ds.chips)
    right = max(c.bounds[2] for c in ds.chips)
    top = max(c.bounds[3] for c in ds.chips)
    assert (left, bottom, right, top) == (X0, Y0 - 960, X0 + 1280, Y0)
    assert len(ds) == 3 * 4


def test_mosaic_chips_take_the_latest_record_and_undated_last(coll):
    """Latest datetime first, then id ascending, undated last: the rule of every mosaic."""
    cases = [
        (Point(X0 + 100, Y0 - 100), 4),  # a and d: d is the later
        (Point(X0 + 500, Y0 - 500), 2),  # a, b and d: b and d tie on the date, b < d
        (Point(X0 + 800, Y0 - 500), 2),  # b and the undated c
    ]
    for point, value in cases:
        ds = coll.to_torchgeo_dataset(["data"], chip_size=8, geometries=[point],
                                      geometry_crs=UTM)  # fmt: skip
        assert (_image(ds[0]) == value).all(), point


def test_chips_without_records_batch_with_the_others(coll):
    torch = pytest.importorskip("torch", reason="torch is optional")
    from torch.utils.data import DataLoader

    pts = [Point(X0 + 100, Y0 - 100), Point(X0 + 1200, Y0 - 900)]  # the second: no record
    ds = coll.to_torchgeo_dataset(["data"], chip_size=8, geometries=pts, geometry_crs=UTM)
    empty = ds[1]
    assert empty["image"].dtype == ds[0]["image"].dtype and (_image(empty) == 0).all()
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 1, 8, 8) and torch.isnan(batch["time"][1]).all()
    series = coll.to_torchgeo_dataset(["data"], chip_size=8, geometries=pts,
                                      geometry_crs=UTM, time_series=True)  # fmt: skip
    assert _image(series[1]).shape == (0, 1, 8, 8) and len(series[1]["time"]) == 0


def test_target_crs_keeps_the_native_resolution(coll):
    ds = coll.to_torchgeo_dataset(["data"], chip_size=8, target_crs="EPSG:4326")
    assert 5e-5 < ds.res[0] < 2e-4  # 10 m in degrees, not 10 degrees
    assert (_image(ds[0]) > 0).any()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(bands=[]), "bands must be a non-empty list"),
        (dict(chip_size=(5,)), "chip_size must be"),
        (dict(chip_size=2.5), "chip_size must be"),
        (dict(chip_size=0), "chip_size must be"),
        (dict(stride=0), "stride must be"),
        (dict(res=0), "res must be"),
        (dict(res=float("nan")), "res must be"),
        (dict(geometries=[Point(float("nan"), 0)]), "non-finite"),
    ],
)
def test_bad_arguments_are_named(coll, kwargs, match):
    args = {"bands": ["data"], "chip_size": 8, **kwargs}
    with pytest.raises(ValidationError, match=match):
        coll.to_torchgeo_dataset(args.pop("bands"), **args)


def test_chip_centres_west_of_the_grid_origin_round_down(coll):
    for x in (X0 + 5.0, X0 - 5.0):  # half a pixel inside and outside the left edge
        ds = coll.to_torchgeo_dataset(["data"], chip_size=8, geometries=[Point(x, Y0 - 105)],
                                      geometry_crs=UTM)  # fmt: skip
        assert (x - ds.chips[0].bounds[0]) // 10 == 4


def _mosaic_on(grid, paths):
    """GDAL's pixels of ``paths`` on ``grid`` (nearest), the first valid one winning."""
    from rasterio.warp import Resampling, reproject

    out = np.zeros(grid.shape, "uint16")
    for path in reversed(paths):  # later ones are overwritten by earlier ones
        layer = np.zeros(grid.shape, "uint16")
        with rasterio.open(path) as ds:
            reproject(rasterio.band(ds, 1), layer, dst_transform=grid.transform,
                      dst_crs=grid.crs, dst_nodata=0, resampling=Resampling.nearest)  # fmt: skip
        out = np.where(layer != 0, layer, out)
    return out


def test_chips_are_read_on_their_own_grid(tmp_path):
    """Every chip is exactly ``chip_size`` on the dataset's grid, as GDAL reads it there:
    with pixels that are not square (7.3 x 10 m), and over a coarser record whose pixel
    edges are not on the dataset's grid (chips there came out 33x33, shifted)."""
    rng = np.random.default_rng(0)
    specs = [("a-fine", from_origin(X0, Y0, 10, 10)),
             ("b-coarse", from_origin(X0 + 3007, Y0 - 2007, 30, 30)),
             ("c-aniso", rasterio.Affine(7.3, 0, X0 - 9000, 0, -10, Y0))]  # fmt: skip
    paths = []
    for name, transform in specs:
        data = rng.integers(1, 60000, (1, 150, 200)).astype("uint16")
        path, _ = write_cog(tmp_path / f"{name}.tif", data=data, shape=(150, 200), nodata=0,
                            crs=UTM, overviews=(), blocksize=64, transform=transform)  # fmt: skip
        paths.append(str(path))
    for group in (paths[:2], paths[2:]):
        coll = build_from_table(pa.table({"id": [p.rsplit("/", 1)[1] for p in group],
                                          "href": group}), name="g", progress=False)  # fmt: skip
        ds = coll.to_torchgeo_dataset(["data"], chip_size=(24, 32), stride=41)
        assert len(ds) > 10
        for i, chip in enumerate(ds.chips):
            got = _image(ds[i])
            assert got.shape == (1, 24, 32), (i, chip)
            np.testing.assert_array_equal(got[0], _mosaic_on(chip, group), err_msg=f"chip {i}")
