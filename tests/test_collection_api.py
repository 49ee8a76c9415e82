"""The ``Collection`` surface: filtering, records, Arrow export, persistence that other
tools (GeoPandas, DuckDB, pyarrow) read without tessellum."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import shapely

from tessellum.collection import Collection, RasterAccessor, build_from_stac, load
from tessellum.errors import CollectionError, ValidationError
from tessellum.tiff import TiffHeader

S2_BANDS = ["B02", "B03", "B04", "B05", "B08", "SCL"]


@pytest.fixture(scope="module")
def s2(served: Any) -> Collection:
    return build_from_stac(
        name="s2", stac_api=served.stac_url, collection="sentinel-2-l2a", progress=False
    )


@pytest.fixture(scope="module")
def saved(s2: Collection, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return s2.export(tmp_path_factory.mktemp("saved") / "s2")


def _ids(coll: Any) -> list[str]:
    return sorted(coll.table.column("id").to_pylist())


# -- description ---------------------------------------------------------------------------------


def test_len_bands_crs_bounds_describe(s2: Collection) -> None:
    assert len(s2) == 6
    assert s2.bands == S2_BANDS
    assert sorted(s2.crs) == ["EPSG:32611", "EPSG:32612"]
    w, s, e, n = s2.bounds
    assert -114.2 < w < e < -113.8 and 41.9 < s < n < 42.2
    d = s2.describe()
    assert d["records"] == 6 and d["bands"] == S2_BANDS
    assert d["time_range"][0] == dt.datetime(2024, 1, 5, 18, 24, 31, tzinfo=dt.UTC)
    assert d["cloud_cover"] == (0.0, 60.0)
    assert d["band_details"]["B04"]["dtype"] == "uint16"
    assert d["band_details"]["SCL"]["dtype"] == "uint8"
    assert all(b["errors"] == 0 for b in d["band_details"].values())
    assert "records=6" in repr(s2)


def test_schema_columns(s2: Collection) -> None:
    t = s2.table
    for col in ("id", "datetime", "geometry", "bbox", "assets", "proj:epsg", "proj:code", "crs",
                "collection", "eo:cloud_cover", "platform"):  # fmt: skip
        assert col in t.column_names, col
    assert t.schema.field("datetime").type == pa.timestamp("us", tz="UTC")
    assert pa.types.is_map(t.schema.field("assets").type)
    assert sorted(set(t.column("proj:epsg").to_pylist())) == [32611, 32612]


# -- filtering -----------------------------------------------------------------------------------


def test_subset_cloud_cover_and_dates(s2: Collection) -> None:
    assert _ids(s2.subset(cloud_cover_lt=10)) == [
        "S2A_11TQG_20240107_0_L2A",
        "S2B_12TTM_20240131_0_L2A",
    ]
    jan = s2.subset(date_range=("2024-01-20", "2024-01-31"))
    assert _ids(jan) == ["S2A_12TTM_20240120_0_L2A", "S2B_12TTM_20240131_0_L2A"]
    # Every ISO 8601 date-only form (basic, week) and numpy day values end at the end of
    # that day, keeping the 23:10 scene of the 31st (basic/week were taken as midnight).
    for rng in [("20240120", "20240131"), ("2024-W03-6", "2024-W05-3"),
                (np.datetime64("2024-01-20"), np.datetime64("2024-01-31"))]:  # fmt: skip
        assert _ids(s2.subset(date_range=rng)) == _ids(jan), rng
    t2310 = np.datetime64("2024-01-31T23:10:00", "ns")
    assert _ids(s2.subset(date_range=(t2310, t2310))) == ["S2B_12TTM_20240131_0_L2A"]
    for bad, match in [(np.datetime64("NaT"), "NaT"), (np.datetime64("2024-01"), "unit 'M'")]:
        with pytest.raises(ValidationError, match=match):
            s2.subset(date_range=(None, bad))
    assert _ids(s2.subset(date_range=("2024-02-01", None))) == ["S2A_11TQG_20240201_0_L2A"]
    both = s2.subset(cloud_cover_lt=25, date_range=("2024-01-06", "2024-02-28"))
    assert _ids(both) == ["S2A_11TQG_20240107_0_L2A", "S2A_11TQG_20240201_0_L2A",
                          "S2B_12TTM_20240131_0_L2A"]  # fmt: skip


def test_subset_bbox_and_geometries_in_any_crs(s2: Collection) -> None:
    west = s2.subset(bbox=(-114.2, 41.9, -114.1, 42.2))
    assert {i.split("_")[1] for i in _ids(west)} == {"12TTM"}
    pt = shapely.Point(-113.9, 42.0)  # only zone 11 scenes reach east of -113.95
    assert {i.split("_")[1] for i in _ids(s2.subset(geometries=pt))} == {"11TQG"}
    utm = gpd.GeoSeries([pt], crs="EPSG:4326").to_crs("EPSG:32612")
    assert _ids(s2.subset(geometries=utm)) == _ids(s2.subset(geometries=pt))
    geojson = {"type": "Point", "coordinates": [-113.9, 42.0]}
    assert _ids(s2.subset(geometries=geojson)) == _ids(s2.subset(geometries=pt))
    assert not len(s2.subset(bbox=(0, 0, 1, 1)))


_AOI_CASES = {  # CRS: (AOI centre range in that CRS, footprint lon range, lat range)
    "EPSG:3413": ((-3e6, -3e6, 3e6, 3e6), (-180, 180), (40, 88)),  # north polar
    "EPSG:3031": ((-3e6, -3e6, 3e6, 3e6), (-180, 180), (-90, -52)),  # south polar
    "EPSG:32612": ((2e5, 3e6, 8e5, 6e6), (-117, -105), (25, 53)),
    "EPSG:3832": ((-2e6, -2e6, 2e6, 2e6), (150, 210), (-20, 18)),  # across 180
}


@pytest.mark.parametrize("crs", sorted(_AOI_CASES))
def test_subset_geometries_in_another_crs_as_intersected_there(crs: str, tmp_path: Path) -> None:
    """subset(geometries=...) in a projected CRS keeps the records whose footprints meet
    the geometries in that CRS (reference: footprints densified and transformed there).
    The geometries' vertices alone were transformed: a box around a pole became a band
    that misses it, and straight UTM edges missed footprints beside them."""
    from pyproj import Transformer
    from rasterio.transform import from_origin

    from _cogfactory import write_cog
    from tessellum.collection import build_from_table

    href, _ = write_cog(tmp_path / "a.tif", shape=(16, 16), blocksize=16, overviews=(),
                        crs="EPSG:4326", transform=from_origin(0, 1, 0.01, 0.01))  # fmt: skip
    (x0, y0, x1, y1), lons, lats = _AOI_CASES[crs]
    rng = np.random.default_rng(3)
    footprints = []
    for _ in range(150):
        lon, lat = rng.uniform(*lons), rng.uniform(lats[0], lats[1] - 2)
        lon = (lon + 180) % 360 - 180
        east = min(lon + rng.uniform(0.1, 3), 180)
        footprints.append(shapely.box(lon, lat, east, lat + rng.uniform(0.1, 2)))
    table = pa.table({"id": [f"r{i}" for i in range(len(footprints))], "href": [str(href)] * len(footprints),
                      "geometry": shapely.to_wkb(footprints)})  # fmt: skip
    coll = build_from_table(table, name="fp", progress=False)
    to_crs = Transformer.from_crs("OGC:CRS84", crs, always_xy=True)
    there = [
        shapely.transform(shapely.segmentize(g, 0.02), lambda xy: np.column_stack(
            to_crs.transform(xy[:, 0], xy[:, 1])))
        for g in footprints
    ]  # fmt: skip
    hits = 0
    for _ in range(12):
        cx, cy, half = rng.uniform(x0, x1), rng.uniform(y0, y1), rng.uniform(1e4, (x1 - x0) / 2)
        aoi = shapely.box(max(cx - half, x0), max(cy - half, y0), min(cx + half, x1),
                          min(cy + half, y1))  # fmt: skip
        expected = sorted(f"r{i}" for i, g in enumerate(there) if g.intersects(aoi))
        got = _ids(coll.subset(geometries=gpd.GeoSeries([aoi], crs=crs)))
        assert got == expected, aoi.bounds
        hits += len(expected)
        for record in coll.where(
            pc.field("id").isin(pa.array(expected, pa.string()))
        ).iterate_rasters():
            assert record.intersects(gpd.GeoSeries([aoi], crs=crs)), (record.id, aoi.bounds)
    assert hits > 20  # the AOIs do select records


def test_get_numpy_with_a_polar_aoi_reads_the_records_it_covers(tmp_path: Path) -> None:
    """A read whose AOI (EPSG:3413) circles the North Pole finds the raster it covers
    (its vertices alone, in lon/lat, made a band that missed it: "no record of the
    collection intersects the geometries")."""
    import rasterio
    from rasterio.transform import from_origin

    from _cogfactory import write_cog
    from tessellum.collection import build_from_files

    path, _ = write_cog(tmp_path / "a.tif", shape=(100, 100), blocksize=32, overviews=(),
                        crs="EPSG:3413", transform=from_origin(600000, 0, 1000, 1000))  # fmt: skip
    coll = build_from_files([str(path)], name="polar", progress=False)
    aoi = gpd.GeoSeries([shapely.box(-1e6, -1e6, 1e6, 1e6)], crs="EPSG:3413")
    chips = coll.get_numpy(aoi, ["data"])
    with rasterio.open(path) as ds:
        expected = ds.read(1)
    # the AOI's grid is the raster's: x from -1e6 (col 1600 is x=600 km), y from 1e6
    np.testing.assert_array_equal(chips.data[0, 0, 1000:1100, 1600:1700], expected)


def test_bounds_is_the_smallest_arc_covering_every_record() -> None:
    """Collection bounds take the smallest longitude arc covering every record's bbox:
    tiles on both sides of ±180 that do not cross it (1° DEM tiles around Fiji) give
    bounds across it (they gave the whole globe, -179.9 to 179.9)."""
    from tessellum.geo.bbox import lon_extent

    def arc(w: float, e: float) -> float:
        return (e - w) % 360

    assert lon_extent([178.0, -180.0], [180.0, -178.0]) == (178.0, -178.0)
    rng = np.random.default_rng(11)
    for _ in range(500):
        lo = rng.uniform(-180, 180, rng.integers(1, 5))
        hi = lo + rng.uniform(0, 60, len(lo))
        hi = np.where(hi > 180, hi - 360, hi)
        w, e = lon_extent(lo, hi)
        # reference: the arc from some record's west edge that covers them all
        best = min(max(arc(s, a) + arc(a, b) for a, b in zip(lo, hi, strict=True)) for s in lo)
        assert arc(w, e) == pytest.approx(best)
        assert all(arc(w, a) + arc(a, b) <= arc(w, e) + 1e-9 for a, b in zip(lo, hi, strict=True))


def test_subset_lonlat_geometries_past_180(tmp_path: Path) -> None:
    """Lon/lat geometries written past ±180 (a Pacific AOI from 179 to 181, a point at
    180.5) select the records on both sides, as the same AOI split at ±180 does (they
    selected the east side only, or nothing)."""
    from rasterio.transform import from_origin

    from _cogfactory import write_cog
    from tessellum.collection import build_from_table

    href, _ = write_cog(tmp_path / "a.tif", shape=(16, 16), blocksize=16, overviews=(),
                        crs="EPSG:4326", transform=from_origin(0, 1, 0.01, 0.01))  # fmt: skip
    fps = {"west": shapely.box(-179.6, 0, -179.4, 1), "east": shapely.box(179.4, 0, 179.6, 1),
           "far": shapely.box(0, 0, 1, 1)}  # fmt: skip
    coll = build_from_table(pa.table({"id": list(fps), "href": [str(href)] * 3,
                                      "geometry": shapely.to_wkb(list(fps.values()))}),
                            name="pacific", progress=False)  # fmt: skip
    both = ["east", "west"]
    split = shapely.MultiPolygon(
        [shapely.box(179, 0.2, 180, 0.4), shapely.box(-180, 0.2, -179, 0.4)]
    )
    assert _ids(coll.subset(geometries=split)) == both
    assert _ids(coll.subset(geometries=shapely.box(179, 0.2, 181, 0.4))) == both
    assert _ids(coll.subset(geometries=shapely.box(-181, 0.2, -179, 0.4))) == both
    assert _ids(coll.subset(geometries=shapely.Point(180.5, 0.5))) == ["west"]
    assert _ids(coll.subset(geometries=shapely.box(179, 0.2, 180, 0.4))) == ["east"]


@pytest.mark.parametrize("keys", [("west", "south", "east", "north"),
                                  ("min_lon", "min_lat", "max_lon", "max_lat"),
                                  ("minx", "miny", "maxx", "maxy"),
                                  ("xmin", "ymin", "xmax", "ymax")])  # fmt: skip
def test_bbox_as_mapping_or_object_with_any_key_set(s2: Collection, keys: tuple) -> None:
    """docs/raster-mode.md: a bbox may be a dict with these keys "or an object with those
    attributes" (objects with minx/... attributes were rejected)."""
    from types import SimpleNamespace

    box = (-114.2, 41.9, -114.1, 42.2)
    want = _ids(s2.subset(bbox=box))
    assert _ids(s2.subset(bbox=dict(zip(keys, box, strict=True)))) == want
    assert _ids(s2.subset(bbox=SimpleNamespace(**dict(zip(keys, box, strict=True))))) == want
    with pytest.raises(ValidationError, match="minx"):
        s2.subset(bbox=SimpleNamespace(left=0, bottom=0, right=1, top=1))


def test_subset_split_and_errors(s2: Collection) -> None:
    t = s2.table.append_column("split", pa.array(["train", "val"] * 3))
    with_split = Collection(t, name="s2")
    assert len(with_split.subset(split="val")) == 3
    assert len(with_split.subset(split=["train", "val"])) == 6
    with pytest.raises(ValidationError, match="split"):
        s2.subset(split="train")
    with pytest.raises(ValidationError, match="date"):
        s2.subset(date_range=("2024-02-01", "2024-01-01"))


def test_where_head_valid(s2: Collection) -> None:
    a = s2.where(pc.field("platform") == "sentinel-2a")
    assert len(a) == 3 and isinstance(a, Collection) and a.name == "s2"
    assert len(s2.where(pc.field("eo:cloud_cover") >= 40)) == 2
    mask = pc.equal(s2.table.column("proj:epsg"), 32611)
    assert len(s2.where(mask)) == 3
    assert len(s2.where([True, False] * 3)) == 3
    assert _ids(s2.head(2)) == _ids(s2.where(pc.field("datetime") < dt.datetime(
        2024, 1, 8, tzinfo=dt.UTC)))  # fmt: skip
    assert len(s2.valid()) == 6 and len(s2.valid(["B04"])) == 6
    assert len(s2.head(0)) == 0 and s2.head(0).bounds is None


# -- records -------------------------------------------------------------------------------------


def test_iterate_rasters_attributes(s2: Collection) -> None:
    accs = list(s2.where(pc.field("id") == "S2B_12TTM_20240131_0_L2A").iterate_rasters())
    (acc,) = accs
    assert isinstance(acc, RasterAccessor)
    assert acc.id == "S2B_12TTM_20240131_0_L2A"
    assert acc.datetime == dt.datetime(2024, 1, 31, 23, 10, tzinfo=dt.UTC)
    assert acc.collection == "sentinel-2-l2a" and acc.data_source == "sentinel-2-l2a"
    assert acc.cloud_cover == 0.0 and acc.crs == "EPSG:32612"
    assert acc.geometry is acc.footprint and acc.footprint.geom_type == "Polygon"
    assert acc.bbox == pytest.approx(acc.footprint.bounds)
    assert acc.available_bands == S2_BANDS
    assert set(acc.assets) == set(S2_BANDS) and acc.assets["B04"]["asset_key"] == "red"
    assert set(acc.band_metadata) == {f"{b}_metadata" for b in S2_BANDS}
    assert acc.intersects(shapely.Point(-114.0, 42.0))
    assert acc.intersects(shapely.box(-114.5, 41.0, -114.1, 43.0))
    assert not acc.intersects(shapely.Point(10, 10))
    assert "S2B_12TTM_20240131_0_L2A" in repr(acc)


def test_try_get_band_cog_metadata(s2: Collection, world: Any, served: Any) -> None:
    acc = next(iter(s2.iterate_rasters()))
    hdr, url, idx = acc.try_get_band_cog_metadata("B04")
    assert isinstance(hdr, TiffHeader) and idx is None
    f = next(x for x in world.files_of("sentinel-2-l2a")
             if x.item_id == acc.id and x.asset_key == "red")  # fmt: skip
    assert url == served.href(f.key)
    assert (hdr.width, hdr.height, hdr.dtype) == (f.spec["width"], f.spec["height"], "uint16")
    assert hdr.geo.crs_epsg == int(f.spec["crs"].split(":")[1])
    assert len(hdr.levels) == len(f.spec["overviews"]) + 1
    assert acc.try_get_band_cog_metadata("B99") == (None, None, None)


def test_try_get_band_cog_metadata_takes_the_stac_asset_key(s2: Collection, served: Any) -> None:
    """Seed 001: a band code or its STAC asset key ("B02" or "blue"); the asset key gave
    (None, None, None) though the record maps it. Records keyed by asset key (no
    built-in map applied) answer band codes through the built-in map."""
    acc = next(iter(s2.iterate_rasters()))
    assert acc.assets["B02"]["asset_key"] == "blue"
    hdr, url, idx = acc.try_get_band_cog_metadata("blue")
    ref = acc.try_get_band_cog_metadata("B02")
    assert url == ref[1] and url.endswith("/B02.tif") and idx is None
    assert (hdr.width, hdr.levels[0].tile_offsets.tolist()) == (
        ref[0].width, ref[0].levels[0].tile_offsets.tolist())  # fmt: skip
    by_key = build_from_stac(name="s2k", stac_api=served.stac_url, collection="sentinel-2-l2a",
                             band_map={"blue": "blue", "red": "red"}, progress=False)  # fmt: skip
    k = next(a for a in by_key.iterate_rasters() if a.id == acc.id)
    assert sorted(k.assets) == ["blue", "red"] and k.try_get_band_cog_metadata("B02")[1] == url
    # several bands read one asset (NAIP "image"): the key alone does not say which
    naip = build_from_stac(name="naip", stac_api=served.stac_url, collection="naip",
                           progress=False)  # fmt: skip
    with pytest.raises(ValidationError, match=r"asset key 'image' holds bands \['R', 'G', 'B'"):
        next(iter(naip.iterate_rasters())).try_get_band_cog_metadata("image")


def test_accessor_made_from_info_loads_its_record(s2: Collection) -> None:
    """Seed 001's constructor RasterAccessor(info, data_source): load_bands raised a bare
    ValueError ("not attached to a collection"); it now reads the record in ``info``,
    the same pixels as the accessor iterate_rasters() yields."""
    import asyncio

    from tessellum.collection import RasterInfo

    x = next(iter(s2.iterate_rasters()))
    aoi = shapely.box(-114.02, 42.0, -113.98, 42.03)
    info = RasterInfo(x.id, x.datetime, x.bbox, x.footprint, x.crs, x.cloud_cover, x.assets,
                      x.band_metadata, x.collection)  # fmt: skip
    want = asyncio.run(x.load_bands(aoi, ["B04", "SCL"]))
    got = asyncio.run(RasterAccessor(info, "sentinel-2-l2a").load_bands(aoi, ["B04", "SCL"]))
    assert got.identical(want)
    gdf = asyncio.run(RasterAccessor(info, "s").load_bands(aoi, ["B04"], for_xarray=False))
    assert len(gdf) == 1 and (gdf["data"][0] == want["B04"].values[0]).all()
    bare = RasterInfo(x.id, x.datetime, x.bbox, x.footprint, x.crs, None, {}, {}, None)
    with pytest.raises(ValidationError, match="iterate_rasters"):
        asyncio.run(RasterAccessor(bare, "s").load_bands(aoi, ["B04"]))


# -- Arrow ---------------------------------------------------------------------------------------


def test_arrow_pycapsule_export(s2: Collection) -> None:
    t = pa.table(s2)
    assert t.num_rows == 6 and t.schema == s2.table.schema
    sub = s2.subset(cloud_cover_lt=10)
    assert pa.table(sub).num_rows == 2
    import duckdb

    stream = s2.to_table()  # noqa: F841 - DuckDB finds the local by name
    rows = duckdb.sql("select count(*) from stream where platform = 'sentinel-2b'").fetchall()
    assert rows == [(3,)]


def test_to_geopandas(s2: Collection) -> None:
    gdf = s2.to_geopandas()
    assert len(gdf) == 6 and gdf.crs.to_string() == "OGC:CRS84"
    assert gdf.geometry.geom_type.unique().tolist() == ["Polygon"]
    assert isinstance(gdf["B04_metadata"].iloc[0], dict)


def test_filter_speed_on_10k_rows(s2: Collection) -> None:
    big = pa.concat_tables([s2.table] * 1700).combine_chunks()  # 10,200 rows
    coll = Collection(big, name="big")
    assert len(coll) == 10_200
    assert len(coll.subset(cloud_cover_lt=10)) == 3400
    assert len(coll.subset(date_range=("2024-01-01", "2024-01-31"))) == 5 * 1700
    assert len(coll.subset(bbox=(-114.2, 41.9, -114.1, 42.2))) == 3 * 1700
    assert len(coll.subset(geometries=shapely.Point(-113.9, 42.0))) == 3 * 1700
    assert len(coll.where(pc.field("platform") == "sentinel-2a")) == 3 * 1700
    assert len(coll.valid()) == 10_200
    assert coll.describe()["records"] == 10_200


# -- persistence ---------------------------------------------------------------------------------


def test_export_load_round_trip(s2: Collection, saved: Path) -> None:
    back = load(saved)
    assert back.name == "s2" and back.data_source == "sentinel-2-l2a"
    assert _ids(back) == _ids(s2) and back.bands == s2.bands
    assert back.table.schema.field("datetime").type == s2.table.schema.field("datetime").type
    assert back.table.column("year").type == pa.int16()
    assert back.bounds == pytest.approx(s2.bounds)
    assert back.describe()["band_details"] == s2.describe()["band_details"]
    # partitioned by year/month, zstd
    parts = sorted(p.relative_to(saved).parts[:2] for p in saved.rglob("*.parquet"))
    assert {p for p in parts} == {("year=2024", "month=1"), ("year=2024", "month=2")}
    meta = pq.ParquetFile(next(saved.rglob("*.parquet"))).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_export_writes_only_the_filtered_view(s2: Collection, tmp_path: Path) -> None:
    path = s2.subset(cloud_cover_lt=10).export(tmp_path / "low")
    assert len(Collection.load(path)) == 2
    path = s2.export(tmp_path / "low")  # overwritten atomically, no leftovers
    assert len(Collection.load(path)) == 6
    assert [p.name for p in tmp_path.iterdir()] == ["low"]


def test_export_and_load_refuse_urls_and_take_file_urls(
    s2: Collection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """export/load of an s3:// URL is a ValidationError naming it (export made a local
    folder 's3:' in the cwd, then failed with a bare ArrowInvalid); a file:// URL is
    its local path (it was the relative folder 'file:')."""
    monkeypatch.chdir(tmp_path)
    for call in (lambda: s2.export("s3://bucket/coll"), lambda: load("s3://bucket/coll")):
        with pytest.raises(ValidationError, match="s3://bucket/coll"):
            call()
    assert not list(tmp_path.iterdir())
    path = s2.export(f"file://{tmp_path}/saved")
    assert path == tmp_path / "saved"
    assert len(load(f"file://{tmp_path}/saved")) == len(s2)


def test_load_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CollectionError, match="no collection"):
        load(tmp_path / "nothing")


def test_geoparquet_readable_by_geopandas(saved: Path) -> None:
    gdf = gpd.read_parquet(saved)
    assert len(gdf) == 6
    assert gdf.crs.equals("OGC:CRS84")
    assert gdf.geometry.is_valid.all()
    assert set(gdf["platform"]) == {"sentinel-2a", "sentinel-2b"}
    f = next(saved.rglob("*.parquet"))
    geo = json.loads(pq.read_schema(f).metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    assert geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]


def test_export_with_some_undated_records_readable_by_geopandas(
    s2: Collection, tmp_path: Path
) -> None:
    """Records with and without a datetime: written unpartitioned (a null hive partition
    broke ``geopandas.read_parquet``), loaded back equal."""
    table = s2.table
    dates = table.column("datetime").to_pylist()
    dates[0] = None
    undated = table.set_column(
        table.column_names.index("datetime"), "datetime",
        pa.array(dates, table.schema.field("datetime").type),
    )  # fmt: skip
    for col in ("year", "month"):
        values = undated.column(col).to_pylist()
        values[0] = None
        i = undated.column_names.index(col)
        undated = undated.set_column(i, col, pa.array(values, undated.schema.field(col).type))
    path = Collection(undated, name="mixed").export(tmp_path / "mixed")
    assert len(gpd.read_parquet(path)) == len(s2)
    assert Collection.load(path).table.column("datetime").null_count == 1


def test_geoparquet_readable_by_duckdb(saved: Path) -> None:
    import duckdb

    con = duckdb.connect()
    glob = f"{saved}/**/*.parquet"
    rows = con.execute(
        f"""select id, "eo:cloud_cover", bbox.xmin, "B04_metadata".width, month
            from read_parquet('{glob}', hive_partitioning=true)
            where "eo:cloud_cover" < 10 order by id"""
    ).fetchall()
    assert [r[0] for r in rows] == ["S2A_11TQG_20240107_0_L2A", "S2B_12TTM_20240131_0_L2A"]
    assert all(r[3] > 0 for r in rows) and {r[4] for r in rows} == {1}
    levels = con.execute(
        f"""select len("B04_metadata".levels) from read_parquet('{glob}')"""
    ).fetchall()
    assert len(levels) == 6 and all(n >= 1 for (n,) in levels)


def test_collection_without_dates_round_trips(world: Any, tmp_path: Path) -> None:
    from tessellum.collection import build_from_files

    coll = build_from_files(
        world.root / "data" / "naip", name="naip", band_index_map={"data": 0}, progress=False
    )
    assert coll.table.column("datetime").null_count == len(coll) == 5
    path = coll.export(tmp_path / "naip")
    assert len(load(path)) == 5
    assert len(gpd.read_parquet(path)) == 5  # no all-null hive partitions


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": ""}, "name"),
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"prefix_size": 0}, "prefix_size"),
        ({"bbox": (10, 50, 5, 40)}, "south"),
        ({"date_range": ("2024-02-01", "2024-01-01")}, "date_range"),
    ],
)
def test_build_from_stac_validates_before_any_request(kwargs, match):
    """Bad options fail fast, naming the value, before the (unreachable) API is contacted."""
    from tessellum.collection import build_from_stac
    from tessellum.errors import ValidationError

    args = {"name": "x", "stac_api": "http://127.0.0.1:9", "collection": "c", **kwargs}
    with pytest.raises(ValidationError, match=match):
        build_from_stac(**args)


def test_bad_arguments_are_named(s2: Collection, tmp_path: Path) -> None:
    """Wrong types and values give a ValidationError naming them (they surfaced as bare
    TypeError/KeyError/Arrow/GEOS errors, or were accepted)."""
    from tessellum.collection import build_from_files, build_from_gti, build_from_table
    from tessellum.errors import ValidationError

    href = s2.table.column("assets").to_pylist()[0][0][1]["href"]
    cases = [
        (lambda: s2.subset(cloud_cover_lt="20"), "cloud_cover_lt must be a number"),
        (lambda: s2.subset(date_range=5), "date_range must be a"),
        (lambda: s2.valid(["nope"]), "unknown bands"),
        (lambda: s2.head("2"), "n must be a non-negative int"),
        (lambda: s2.where([True, False]), f"a mask must be {len(s2)} booleans"),
        (lambda: build_from_stac(name="x", stac_api="http://127.0.0.1:9", collection="c",
                                 date_range=5, progress=False), "date_range must be"),
        (lambda: build_from_stac(name="x", stac_api="http://127.0.0.1:9", collection="c",
                                 band_map=["B04"], progress=False), "band_map must map"),
        (lambda: build_from_table(pa.table({"href": [href]}), name="x",
                                  band_index_map={"r": "zero"}), "band_index_map must map"),
        (lambda: build_from_table(pa.table({"href": [href], "geometry": ["POLYGON oops"]}),
                                  name="x"), "'geometry'"),
        (lambda: build_from_table(pa.table({"id": ["a"], "assets": [{"b": 5}]}), name="x",
                                  assets_column="assets", href_column=None), "asset 'b'"),
        (lambda: build_from_table(pa.table({"href": [5]}), name="x"), "non-empty path or URL"),
        (lambda: build_from_table(pa.table({"href": [href]}), name="x", id_column="zz"),
         "no id_column 'zz'"),
        (lambda: build_from_table(pa.table({"href": [href]}), name="x", datetime_column="when"),
         "no datetime_column 'when'"),
        (lambda: build_from_gti(5, name="x"), "must be a path or a GeoDataFrame"),
        (lambda: build_from_gti(str(tmp_path / "none.gpkg"), name="x"), "no such vector table"),
        (lambda: build_from_files(b"/tmp", name="x"), "source must be"),
    ]  # fmt: skip
    for call, match in cases:
        with pytest.raises(ValidationError, match=match):
            call()


def test_export_never_replaces_what_is_not_a_collection(s2: Collection, tmp_path: Path) -> None:
    """An export replaces a collection written there before, never a user's folder or
    file (a folder of notes was renamed away and deleted); new folders get the umask's
    mode, not 0700."""
    from tessellum.errors import ValidationError

    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "notes.txt").write_text("mine")
    with pytest.raises(ValidationError, match="not a collection"):
        s2.export(victim)
    assert (victim / "sub" / "notes.txt").read_text() == "mine"
    a_file = tmp_path / "file.txt"
    a_file.write_text("mine")
    with pytest.raises(ValidationError, match="is a file"):
        s2.export(a_file)
    assert a_file.read_text() == "mine"
    tables = tmp_path / "tables"  # Parquet files, but not a collection's
    tables.mkdir()
    pq.write_table(pa.table({"sales": [1, 2]}), tables / "sales.parquet")
    with pytest.raises(ValidationError, match="not a collection"):
        s2.export(tables)
    assert pq.read_table(tables / "sales.parquet").num_rows == 2
    out = s2.export(tmp_path / "coll")
    s2.head(2).export(out)  # a collection is replaced
    assert len(Collection.load(out)) == 2
    link = tmp_path / "link"
    link.symlink_to(out, target_is_directory=True)
    s2.head(1).export(link)  # what the link points at is replaced; the link stays
    assert link.is_symlink() and len(Collection.load(out)) == 1
    link.unlink()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    ref = tmp_path / "plain"
    ref.mkdir()  # what the umask gives any folder
    assert out.stat().st_mode & 0o777 == ref.stat().st_mode & 0o777
