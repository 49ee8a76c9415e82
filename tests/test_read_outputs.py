"""The read outputs' contracts (get_xarray, get_numpy, get_gdf, sample_points,
read_window) on small GDAL-written rasters: fill values, geometry masks of every kind,
CRS of the input, resampling, time axes, carried attribute columns, argument checks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import rasterio
import shapely
from rasterio.features import geometry_mask
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject

from tessellum.collection import Collection, build_from_table
from tessellum.errors import ValidationError
from tessellum.read.cache import default_tile_cache

UTM = "EPSG:32611"
T0 = from_origin(500000, 4600000, 10, 10)
UTC = dt.UTC


@pytest.fixture(autouse=True)
def _fresh_cache():
    default_tile_cache().clear()
    yield
    default_tile_cache().clear()


def _write(path: Path, arr: np.ndarray, *, nodata=None, crs=UTM, transform=T0) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0],
                       count=1, dtype=arr.dtype, crs=crs, transform=transform,
                       nodata=nodata) as ds:  # fmt: skip
        ds.write(arr, 1)
    return str(path)


def _coll(hrefs: list[str], ids: list[str], when: list[dt.datetime | None]) -> Collection:
    table = pa.table(
        {"href": hrefs, "id": ids, "datetime": pa.array(when, pa.timestamp("us", tz="UTC"))}
    )
    return build_from_table(table, name="t", progress=False)


def test_records_with_different_nodata_share_the_stack_fill(tmp_path: Path) -> None:
    """Each layer's no-data pixels hold the one ``_FillValue`` of the band (a record's own
    65535 stayed in its layer while ``_FillValue`` said 0: a CF reader took it as data)."""
    a = np.full((64, 64), 7, "uint16")
    a[:8] = 0
    b = np.full((64, 64), 9, "uint16")
    b[:8] = 65535
    coll = _coll([_write(tmp_path / "a.tif", a, nodata=0), _write(tmp_path / "b.tif", b, nodata=65535)],
                 ["a", "b"], [dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 2, 1, tzinfo=UTC)])  # fmt: skip
    aoi = shapely.Polygon([(500005, 4599995), (500600, 4599995), (500005, 4599400)])
    ds = coll.get_xarray(aoi, ["data"], geometry_crs=UTM)
    fill = ds["data"].attrs["_FillValue"]
    assert fill == 0
    layers = ds["data"].values
    assert set(np.unique(layers[0])) == {0, 7} and set(np.unique(layers[1])) == {0, 9}
    gdf = coll.get_gdf(aoi, ["data"], geometry_crs=UTM)
    for _, row in gdf.iterrows():
        assert row["nodata"] == fill and (row["data"][~row["valid"]] == fill).all()
    # read_window's groups and the torch time series: one fill per band too
    grouped = coll.read_window(bounds=aoi.bounds, bands=["data"], group_by="id")
    assert [set(np.unique(layer)) for layer in grouped[:, 0]] == [{0, 7}, {0, 9}]
    ts = coll.to_torchgeo_dataset(["data"], chip_size=16, time_series=True)
    images = np.concatenate([np.asarray(ts[i]["image"]).ravel() for i in range(len(ts))])
    assert set(np.unique(images)) == {0, 7, 9}


def test_every_kind_of_geometry_masks_its_pixels(tmp_path: Path) -> None:
    """A point reads the one pixel it falls in, a line the pixels it crosses (as GDAL
    rasterizes them), a geometry collection its parts, an invalid polygon its repaired
    area without the collapsed spike; everything else is nodata."""
    arr = np.arange(1, 64 * 64 + 1, dtype="uint16").reshape(64, 64)
    coll = _coll([_write(tmp_path / "a.tif", arr, nodata=0)], ["a"], [None])
    point = shapely.Point(500123.0, 4599877.0)  # inside pixel (12, 12), off its centre
    ds = coll.get_xarray(point, ["data"], geometry_crs=UTM)
    assert ds["data"].shape == (1, 1, 1) and ds["data"].values[0, 0, 0] == arr[12, 12]
    line = shapely.LineString([(500005, 4599795), (500305, 4599995)])
    collection = shapely.GeometryCollection([
        shapely.box(500005, 4599905, 500105, 4599995), shapely.LineString([(500005, 4599805), (500635, 4599805)]),
    ])  # fmt: skip
    spike = shapely.Polygon([(500000, 4600000), (500200, 4600000), (500200, 4599900),
                             (500100, 4599900), (500100, 4599500), (500100, 4599900),
                             (500000, 4599900)])  # fmt: skip
    area = shapely.box(500000, 4599900, 500200, 4600000)  # the spike repaired as an area
    for geom, expect in ((line, [line]), (collection, list(collection.geoms)), (spike, [area])):
        ds = coll.get_xarray(geom, ["data"], geometry_crs=UTM)
        t = rasterio.transform.from_origin(float(ds.x[0]) - 5, float(ds.y[0]) + 5, 10, 10)
        inside = np.zeros(ds["data"].shape[1:], bool)
        for part in expect:  # GDAL's rasterization: lines burn every pixel they touch
            inside |= geometry_mask([part], out_shape=inside.shape, transform=t, invert=True,
                                    all_touched=part.geom_type != "Polygon")  # fmt: skip
        got = ds["data"].values[0]
        assert ((got != 0) == inside).all(), geom.geom_type


def test_a_frame_is_read_in_its_own_crs(tmp_path: Path) -> None:
    """``geometry_crs`` is for geometries without a CRS: a GeoDataFrame's own CRS wins,
    and a different ``geometry_crs`` is an error (UTM metres were read as degrees)."""
    coll = _coll(
        [_write(tmp_path / "a.tif", np.full((32, 32), 5, "uint8"), nodata=0)], ["a"], [None]
    )
    frame = gpd.GeoDataFrame(geometry=[shapely.box(500050, 4599750, 500150, 4599850)], crs=UTM)
    ds = coll.get_xarray(frame, ["data"])
    assert ds[0]["data"].shape == (1, 10, 10)
    assert coll.get_xarray(frame, ["data"], geometry_crs=UTM)[0]["data"].shape == (1, 10, 10)
    with pytest.raises(ValidationError, match="carry their own CRS"):
        coll.get_xarray(frame, ["data"], geometry_crs="OGC:CRS84")
    with pytest.raises(ValidationError, match="carry their own CRS"):
        coll.get_gdf(frame.to_crs(3857), ["data"], geometry_crs=UTM)


def test_resampling_is_applied_to_integer_bands_as_asked(tmp_path: Path) -> None:
    """get_xarray and read_window apply the asked kernel to integer data alike, as
    rasterio does (get_xarray forced nearest on integers, read_window did not)."""
    rng = np.random.default_rng(3)
    arr = (rng.integers(1, 6, (60, 60)) * 10).astype("uint8")
    coll = _coll([_write(tmp_path / "a.tif", arr)], ["a"], [None])
    box = (500000, 4599400, 500600, 4600000)
    ds = coll.get_xarray(shapely.box(*box), ["data"], geometry_crs=UTM, resolution=30,
                         resampling="bilinear")  # fmt: skip
    win = coll.read_window(bounds=box, bands=["data"], res=30, resampling="bilinear")
    np.testing.assert_array_equal(ds["data"].values[0], win[0])
    ref = np.zeros((20, 20), "uint8")
    reproject(arr, ref, src_transform=T0, src_crs=UTM, dst_transform=from_origin(500000, 4600000, 30, 30),
              dst_crs=UTM, resampling=Resampling.bilinear)  # fmt: skip
    np.testing.assert_array_equal(win[0], ref)
    assert set(np.unique(win[0])) - {10, 20, 30, 40, 50}  # interpolated, as asked
    with pytest.raises(ValidationError, match="resampling"):
        coll.get_xarray(shapely.box(*box), ["data"], geometry_crs=UTM, resampling="foo")


def test_time_axis_is_utc_with_undated_records_last(tmp_path: Path) -> None:
    """get_xarray's time is the UTC instant whatever zone the table's column carries
    (the zone was dropped: 5 h off), and records without a datetime come last, as in
    sample_points and every mosaic (they came first)."""
    href = _write(tmp_path / "a.tif", np.full((32, 32), 5, "uint16"), nodata=0)
    jan = dt.datetime(2024, 1, 31, 23, 10, tzinfo=UTC)
    coll = _coll(
        [href] * 3, ["undated", "mar", "jan"], [None, dt.datetime(2024, 3, 1, tzinfo=UTC), jan]
    )
    table = coll.table
    i = table.column_names.index("datetime")
    local = table.set_column(i, "datetime", pc.cast(table.column("datetime"),
                                                    pa.timestamp("us", tz="America/New_York")))  # fmt: skip
    aoi = shapely.box(500050, 4599750, 500150, 4599850)
    for c in (coll, Collection(local, name="ny")):
        ds = c.get_xarray(aoi, ["data"], geometry_crs=UTM)
        assert list(ds["id"].values) == ["jan", "mar", "undated"]
        assert ds.time.values[0] == np.datetime64("2024-01-31T23:10")
        labels = c.get_numpy(aoi, ["data"], geometry_crs=UTM).labels
        assert labels.column("record_id").to_pylist() == ["jan", "mar", "undated"]


def test_attribute_columns_keep_their_types_and_never_clobber_outputs(tmp_path: Path) -> None:
    """get_gdf and sample_points carry the AOI table's columns in their own dtypes; a
    column named like an output column is kept as ``<name>_aoi`` (it was overwritten in
    get_gdf and dropped in sample_points)."""
    coll = _coll(
        [_write(tmp_path / "a.tif", np.full((32, 32), 5, "uint8"), nodata=0)], ["a"], [None]
    )
    frame = gpd.GeoDataFrame({
        "plot": pd.array([1, None], dtype="Int64"), "cls": pd.Categorical(["forest", "crop"]),
        "i8": np.array([1, 2], "int8"), "band": ["label-a", "label-b"],
        "datetime": [pd.Timestamp("2019-06-01"), pd.Timestamp("2019-07-01")],
    }, geometry=[shapely.box(500050, 4599750, 500150, 4599850), shapely.box(500160, 4599750, 500200, 4599850)],
       crs=UTM)  # fmt: skip
    gdf = coll.get_gdf(frame, ["data"])
    assert str(gdf["plot"].dtype) == "Int64" and str(gdf["cls"].dtype) == "category"
    assert gdf["i8"].dtype == np.int8 and list(gdf["band_aoi"]) == ["label-a", "label-b"]
    assert list(gdf["band"]) == ["data", "data"] and list(gdf["datetime_aoi"]) == list(
        frame["datetime"]
    )
    pts = gpd.GeoDataFrame(frame.drop(columns="geometry"), geometry=frame.centroid, crs=UTM)
    table = coll.sample_points(pts, ["data"])
    assert table.column("band_aoi").to_pylist() == ["label-a", "label-b"]
    assert table.column("i8").type == pa.int8() and table.column("band").to_pylist() == [
        "data",
        "data",
    ]
    # an iterator of geometries is read once (get_gdf coerced it twice: "geometries is empty")
    assert len(coll.get_gdf(iter(frame.geometry), ["data"], geometry_crs=UTM)) == 2


def test_read_window_checks_its_box(tmp_path: Path) -> None:
    """Bounds and resolutions are checked and named: inverted projected boxes, NaN, a
    string resolution, an output larger than the machine (a 1-pixel mosaic, a bare
    ValueError/TypeError, a MemoryError before); numpy scalars are numbers."""
    coll = _coll(
        [_write(tmp_path / "a.tif", np.full((32, 32), 5, "uint8"), nodata=0)], ["a"], [None]
    )
    good = (500000, 4599700, 500100, 4599800)
    assert coll.read_window(bounds=good, bands=["data"], res=np.int64(20)).shape == (1, 5, 5)
    cases = [
        (dict(bounds=(500100, 4599700, 500000, 4599800)), "left > right"),
        (dict(bounds=(500000, 4599800, 500100, 4599700)), "enclose no area"),
        (dict(bounds=(500000, float("nan"), 500100, 4599800)), "finite"),
        (dict(bounds=good, res="10m"), "res"),
        (dict(bounds=good, res=float("nan")), "finite and > 0"),
        (dict(bounds=(-1e9, -1e9, 1e9, 1e9), res=0.5), "more than this machine's memory"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValidationError, match=match):
            coll.read_window(bands=["data"], **kwargs)


def test_read_window_across_the_antimeridian(tmp_path: Path) -> None:
    """A lon/lat box with left > right crosses ±180 (as the collection's bbox does): one
    grid 179.5 .. 180.5 with both sides' pixels (it was a 1-pixel-wide mosaic)."""
    east = _write(tmp_path / "e.tif", np.full((100, 100), 1, "uint8"), nodata=0, crs="EPSG:4326",
                  transform=from_origin(179.0, 0.5, 0.01, 0.01))  # fmt: skip
    west = _write(tmp_path / "w.tif", np.full((100, 100), 2, "uint8"), nodata=0, crs="EPSG:4326",
                  transform=from_origin(-180.0, 0.5, 0.01, 0.01))  # fmt: skip
    coll = _coll([east, west], ["e", "w"], [None, None])
    out = coll.read_window(bounds=(179.5, -0.5, -179.5, 0.5), bands=["data"], res=0.01,
                           target_crs="EPSG:4326")  # fmt: skip
    assert out.shape == (1, 100, 100)
    assert (out[0, :, :50] == 1).all() and (out[0, :, 50:] == 2).all()


def test_integer_data_without_nodata_masked_by_a_geometry_becomes_nan(tmp_path: Path) -> None:
    """An integer band without a nodata value under a polygon: get_xarray and get_gdf
    return float32 with NaN outside the polygon (seed 001's rule for load_bands; the
    pixels were 0, which nothing told from data); a box on the grid keeps uint16, and
    get_numpy keeps the file's type."""
    arr = np.arange(10, 10 + 64 * 64, dtype="uint16").reshape(64, 64)
    coll = _coll([_write(tmp_path / "a.tif", arr)], ["a"], [None])
    tri = shapely.Polygon([(500000, 4600000), (500640, 4600000), (500000, 4599360)])
    ds = coll.get_xarray(tri, ["data"], geometry_crs=UTM)
    got = ds["data"].values[0]
    assert got.dtype == np.float32 and np.isnan(ds["data"].attrs["_FillValue"])
    inside = geometry_mask([tri], out_shape=got.shape, transform=T0, invert=True)
    np.testing.assert_array_equal(got[inside], arr[inside])
    assert np.isnan(got[~inside]).all() and (~inside).any()
    row = coll.get_gdf(tri, ["data"], geometry_crs=UTM).iloc[0]
    assert row["data"].dtype == np.float32 and np.isnan(row["nodata"])
    box = coll.get_xarray(shapely.box(500000, 4599800, 500200, 4600000), ["data"], geometry_crs=UTM)
    assert box["data"].dtype == np.uint16 and "_FillValue" not in box["data"].attrs
    assert coll.get_numpy(tri, ["data"], geometry_crs=UTM).data.dtype == np.uint16


def _write_scaled(path: Path, arr: np.ndarray, scale: float, offset: float) -> str:
    _write(path, arr, nodata=0)
    with rasterio.open(path, "r+") as ds:
        ds.scales, ds.offsets = (scale,), (offset,)
    return str(path)


def test_scale_and_offset_are_cf_attributes_as_rasterio_reads_them(tmp_path: Path) -> None:
    """A band's SCALE/OFFSET reach get_xarray as CF ``scale_factor``/``add_offset`` (the
    stored values are kept, as rioxarray keeps them); records that disagree get one per
    layer along ``time`` instead of one attribute that is wrong for some layers."""
    arr = np.full((32, 32), 1200, "uint16")
    when = [dt.datetime(2021, 1, 1, tzinfo=UTC), dt.datetime(2023, 1, 1, tzinfo=UTC)]
    same = [_write_scaled(tmp_path / f"s{i}.tif", arr, 0.0001, -0.1) for i in range(2)]
    aoi = shapely.box(500005, 4599700, 500300, 4599995)
    with rasterio.open(same[0]) as src:
        want = (src.scales[0], src.offsets[0])
    ds = _coll(same, ["a", "b"], when).get_xarray(aoi, ["data"], geometry_crs=UTM)
    da = ds["data"]
    assert (da.attrs["scale_factor"], da.attrs["add_offset"]) == want
    assert da.dtype == np.uint16 and int(da.values.max()) == 1200  # stored values
    decoded = da.values * da.attrs["scale_factor"] + da.attrs["add_offset"]
    np.testing.assert_allclose(decoded[da.values != 0], 1200 * 0.0001 - 0.1)
    # a processing baseline change: the later record has another offset
    mixed = [same[0], _write_scaled(tmp_path / "m.tif", arr, 0.0001, 0.0)]
    ds = _coll(mixed, ["a", "b"], when).get_xarray(aoi, ["data"], geometry_crs=UTM)
    assert "scale_factor" not in ds["data"].attrs and "add_offset" not in ds["data"].attrs
    assert list(ds["data_add_offset"].values) == [-0.1, 0.0]
    assert list(ds["data_scale_factor"].values) == [0.0001, 0.0001]
    # no SCALE/OFFSET: no attributes
    plain = [_write(tmp_path / "p.tif", arr, nodata=0)]
    ds = _coll(plain, ["p"], when[:1]).get_xarray(aoi, ["data"], geometry_crs=UTM)
    assert "scale_factor" not in ds["data"].attrs and "data_add_offset" not in ds.coords


def test_latest_point_takes_the_record_a_mosaic_takes(tmp_path: Path) -> None:
    """sample_points(match="latest") picks per point the first record in mosaic order
    (latest datetime; ties: the smaller id; undated last), as read_window's mosaic does
    (ties went to the later table row; naive datetimes were read in local time)."""
    arr = {k: np.full((16, 16), v, "uint16") for k, v in (("a", 1), ("b", 2), ("c", 3))}
    same = dt.datetime(2024, 5, 1, tzinfo=UTC)
    # rows: b then a, same datetime (a wins by id); c undated (last)
    coll = _coll([_write(tmp_path / f"{k}.tif", arr[k], nodata=0) for k in ("b", "a", "c")],
                 ["b", "a", "c"], [same, same, None])  # fmt: skip
    pts = gpd.GeoDataFrame(geometry=[shapely.Point(500055, 4599945)], crs=UTM)
    got = coll.sample_points(pts, ["data"], match="latest")
    mosaic = coll.read_window(bounds=(500050, 4599940, 500060, 4599950), bands=["data"])
    assert got.column("record_id").to_pylist() == ["a"]
    assert got.column("value").to_pylist() == [int(mosaic[0, 0, 0])] == [1]
    # undated records come after every dated one
    late = _coll([_write(tmp_path / "c2.tif", arr["c"], nodata=0), str(tmp_path / "b.tif")],
                 ["c", "b"], [None, dt.datetime(2001, 1, 1, tzinfo=UTC)])  # fmt: skip
    got = late.sample_points(pts, ["data"], match="latest")
    assert got.column("record_id").to_pylist() == ["b"]
