"""Builders other than STAC: record tables, file listings (folder, URLs, S3 prefix) and
GDAL GTI tile indexes; explicit band maps."""

from __future__ import annotations

import collections
import datetime as dt
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from tessellum.collection import (
    build_from_files,
    build_from_gti,
    build_from_stac,
    build_from_table,
)
from tessellum.errors import ValidationError
from tessellum.store import clear_store_cache
from tessellum.testing.servers import S3Server, ServerUnavailable


def _ids(coll: Any) -> list[str]:
    return sorted(coll.table.column("id").to_pylist())


def _dem_table(world: Any, base_url: str) -> pa.Table:
    files = world.files_of("cop-dem-glo-30")
    return pa.table(
        {
            "id": [f.item_id for f in files],
            "href": [f.href(base_url) for f in files],
            "datetime": ["2021-04-22T00:00:00Z"] * len(files),
            "split": ["train", "train", "val", "test"],
            "label": [1, 2, 3, 4],
        }
    )


# -- record tables ------------------------------------------------------------------------------


def test_table_with_href_column(world: Any, served: Any) -> None:
    table = _dem_table(world, served.data_url)
    coll = build_from_table(table, name="dem", collection="cop-dem-glo-30", progress=False)
    assert _ids(coll) == sorted(table.column("id").to_pylist())
    assert coll.bands == ["data"] and not len(coll.errors())
    # extra columns are kept as properties, footprints come from the headers
    assert set(coll.table.column("split").to_pylist()) == {"train", "val", "test"}
    assert _ids(coll.subset(split="val")) == ["Copernicus_DSM_COG_10_N42_00_W113_00_DEM"]
    w, s, e, n = coll.bounds
    assert (w, s, e, n) == pytest.approx(
        (-113.0 - 1 / 1200, 41 + 1 / 1200, -111 - 1 / 1200, 43 + 1 / 1200)
    )
    assert coll.table.column("datetime")[0].as_py() == dt.datetime(2021, 4, 22, tzinfo=dt.UTC)
    assert coll.crs == ["EPSG:4326"]


@pytest.mark.parametrize("form", ["parquet", "geodataframe", "pandas", "capsule"])
def test_table_forms(world: Any, served: Any, tmp_path: Path, form: str) -> None:
    table = _dem_table(world, served.data_url)
    if form == "parquet":
        pq.write_table(table, tmp_path / "records.parquet")
        src: Any = str(tmp_path / "records.parquet")
    elif form == "geodataframe":
        df = table.to_pandas()
        src = gpd.GeoDataFrame(df, geometry=[shapely.box(-1, -1, 1, 1)] * len(df), crs="EPSG:4326")
    elif form == "pandas":
        src = table.to_pandas()
    else:

        class Stream:
            def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
                return table.__arrow_c_stream__(requested_schema)

        src = Stream()
    coll = build_from_table(src, name="dem", progress=False)
    assert len(coll) == 4 and not len(coll.errors())
    if form == "geodataframe":  # a given geometry column wins over the header footprint
        assert coll.bounds == pytest.approx((-1, -1, 1, 1))


def test_table_with_assets_column(world: Any, served: Any) -> None:
    items = [i for i in world.items(served.data_url) if i["collection"] == "sentinel-2-l2a"]
    table = pa.table(
        {
            "id": [i["id"] for i in items],
            "datetime": [i["properties"]["datetime"] for i in items],
            "assets": [
                {"red": i["assets"]["red"]["href"], "nir": i["assets"]["nir"]["href"]}
                for i in items
            ],
        }
    )
    coll = build_from_table(
        table, name="s2", assets_column="assets", href_column=None, progress=False
    )
    assert sorted(coll.bands) == ["nir", "red"] and len(coll) == 6
    assert not len(coll.errors())
    assert len(coll.crs) == 2  # two UTM zones


def test_table_columns_keep_their_arrow_types(world: Any, tmp_path: Path) -> None:
    """Other columns are kept with their Arrow types and values (a uint64 >= 2**63
    crashed the build with a raw OverflowError; int8/float32/dictionary were re-inferred
    as int64/double/string and list columns dropped), also through export and load."""
    from tessellum.collection import Collection

    files = world.files_of("cop-dem-glo-30")[:2]
    props = {
        "u64": pa.array([2**63, 2**64 - 1], pa.uint64()),
        "i8": pa.array([-3, 7], pa.int8()),
        "f32": pa.array([1.5, None], pa.float32()),
        "cat": pa.array(["a", "b"]).dictionary_encode(),
        "lst": pa.array([[1, 2], []], pa.list_(pa.int16())),
    }
    # ids in reverse order of the datetimes: the build's sort must carry the columns along
    table = pa.table({"href": [str(f.path) for f in files], "id": ["z", "a"],
                      "datetime": ["2021-01-01", "2020-01-01"], **props})  # fmt: skip
    coll = build_from_table(table, name="typed", progress=False)
    assert _ids(coll) == ["a", "z"] and coll.table.column("id").to_pylist() == ["a", "z"]
    want = table.take([1, 0])
    loaded = Collection.load(coll.export(tmp_path / "typed"))
    for got in (coll.table, loaded.table):
        for name in props:
            assert got.schema.field(name).type == table.schema.field(name).type, name
            assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    cat = pd.DataFrame({"href": [str(f.path) for f in files], "id": ["p", "q"],
                        "kind": pd.Categorical(["x", "y"]), "n": np.array([1, 2], "int8")})  # fmt: skip
    from_pandas = build_from_table(cat, name="pd", progress=False).table
    assert pa.types.is_dictionary(from_pandas.schema.field("kind").type)
    assert from_pandas.schema.field("n").type == pa.int8()


def test_table_columns_named_like_collection_columns_are_kept(world: Any, tmp_path: Path) -> None:
    """A crop-year label "year" [2019, 2020] became the datetime's year [2024, 2024] and
    user columns named crs, collection, bbox ... were dropped. Now year/month keep the
    user's values (and an export does not partition on them); columns the collection
    owns are kept under their name + "_user"."""
    from tessellum.collection import Collection

    files = world.files_of("cop-dem-glo-30")[:2]
    base = {"href": [str(f.path) for f in files], "id": ["a", "b"],
            "datetime": pa.array([dt.datetime(2024, 1, 15), dt.datetime(2024, 3, 1)],
                                 pa.timestamp("us", tz="UTC"))}  # fmt: skip
    mine = {"year": [2019, 2020], "month": ["jun", "jul"], "crs": ["mine-a", "mine-b"],
            "collection": ["c1", "c2"], "bbox": [1, 2], "data_metadata": ["m", "n"]}  # fmt: skip
    coll = build_from_table(pa.table({**base, **mine}), name="t", collection="dem",
                            progress=False)  # fmt: skip
    t = coll.table
    assert t.column("year").to_pylist() == [2019, 2020]
    assert t.column("month").to_pylist() == ["jun", "jul"]
    assert t.column("crs").to_pylist() == ["EPSG:4326"] * 2  # the raster's, as always
    assert t.column("collection").to_pylist() == ["dem"] * 2
    for name in ("crs", "collection", "bbox", "data_metadata"):
        assert t.column(f"{name}_user").to_pylist() == mine[name], name
    assert coll.bands == ["data"]  # "data_metadata_user" is not a band
    path = coll.export(tmp_path / "labels")
    assert [p.name for p in path.iterdir()] == ["part-0.parquet"]  # not partitioned on them
    back = Collection.load(path).table
    assert back.column("year").to_pylist() == [2019, 2020]
    assert back.schema.field("year").type == pa.int64()
    assert back.column("month").to_pylist() == ["jun", "jul"]
    # without such columns: derived from datetime, and the export partitions on them
    plain = build_from_table(pa.table(base), name="p", progress=False)
    assert plain.table.column("year").to_pylist() == [2024, 2024]
    assert plain.table.column("month").to_pylist() == [1, 3]
    ppath = plain.export(tmp_path / "plain")
    assert sorted(p.name for p in ppath.iterdir()) == ["year=2024"]
    assert Collection.load(ppath).table.column("month").to_pylist() == [1, 3]


def test_record_table_at_a_url(
    world: Any, served: Any, s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A (Geo)Parquet record table at an https:// or s3:// URL is read as the same file on
    disk is (a bare ArrowInvalid: 'Unrecognized filesystem type in URI: https:/...');
    a URL that is no Parquet file is a ValidationError naming it."""
    edge = world.files_of("esa-worldcover")
    table = pa.table({"id": [f.key.rsplit("/", 1)[-1] for f in edge],
                      "href": [served.href(f.key) for f in edge], "label": [1, 2][: len(edge)]})  # fmt: skip
    site = tmp_path / "site"
    site.mkdir()
    pq.write_table(table, site / "records.parquet")
    local = build_from_table(site / "records.parquet", name="t", progress=False)
    s3.upload_dir(site, bucket="world", prefix="tables/")
    _use_s3(s3, monkeypatch)
    from tessellum.testing.servers import HttpServer

    try:
        with HttpServer(site) as http:
            for url in (f"{http.url}/records.parquet", "s3://world/tables/records.parquet"):
                remote = build_from_table(url, name="t", progress=False)
                assert remote.table.select(["id", "label", "data_metadata"]).equals(
                    local.table.select(["id", "label", "data_metadata"])
                ), url
            with pytest.raises(ValidationError, match=r"records\.csv"):
                build_from_table(f"{http.url}/records.csv", name="t", progress=False)
    finally:
        clear_store_cache()


def test_table_without_href_is_a_clear_error(world: Any) -> None:
    with pytest.raises(ValidationError, match="href"):
        build_from_table(pa.table({"id": ["a"], "url": ["x"]}), name="x", progress=False)


# -- file listings ------------------------------------------------------------------------------


def test_files_local_folder(world: Any) -> None:
    folder = world.root / "data" / "naip"
    with pytest.warns(Warning, match="5 file.s. hold up to 4 samples"):  # R, G, B, NIR
        coll = build_from_files(folder, name="naip", progress=False)
    assert _ids(coll) == sorted(Path(f.relpath).stem for f in world.files_of("naip"))
    assert coll.table.column("crs").to_pylist() == ["EPSG:26912"] * 5
    rgbn = build_from_files(folder, name="naip", band_index_map={"red": 0, "nir": 3})
    assert rgbn.bands == ["red", "nir"]
    # the world's one 3-band tile has no NIR: that band of that record is an error
    assert rgbn.errors().column("band").to_pylist() == ["nir"]


def test_files_list_of_urls(world: Any, served: Any) -> None:
    urls = [served.href(f.key) for f in world.files_of("esa-worldcover")]
    served.http.reset_log()
    coll = build_from_files(urls, name="wc", collection="esa-worldcover", progress=False)
    assert len(coll) == 2 and coll.describe()["band_details"]["data"]["dtype"] == "uint8"
    per_path = collections.Counter(r.path for r in served.http.requests())
    assert sorted(per_path.values()) == [1, 1]
    assert set(coll.table.column("collection").to_pylist()) == {"esa-worldcover"}


@pytest.fixture(scope="module")
def s3(world: Any) -> Iterator[S3Server]:
    server = S3Server()
    try:
        server.start()
    except ServerUnavailable as exc:
        pytest.skip(f"S3 server unavailable: {exc}")
    server.upload_dir(world.root / "data" / "edge-cases", bucket="world", prefix="edge/")
    yield server
    server.stop()


def _use_s3(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point obstore at the test's S3 server (credentials, endpoint) for this test."""
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    clear_store_cache()  # stores are cached with the environment they were made in


def test_files_s3_prefix(world: Any, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    _use_s3(s3, monkeypatch)
    with (
        pytest.warns(Warning, match="2 of 24 band assets failed"),
        pytest.warns(Warning, match="hold up to 3 samples"),
    ):
        coll = build_from_files("s3://world/edge/", name="edge-s3", progress=False)
    clear_store_cache()
    assert len(coll) == len(world.files_of("edge-cases"))
    hrefs = [a[0][1]["href"] for a in coll.table.column("assets").to_pylist()]
    assert all(h.startswith("s3://world/edge/") for h in hrefs)
    # the truncated file is larger than the header prefix: its size comes from the
    # prefix response's Content-Range
    errors = {e["id"]: e["error"] for e in coll.errors().to_pylist()}
    assert set(errors) == {"corrupt_garbage", "corrupt_truncated"}
    assert "truncated file: tile data ends at byte" in errors["corrupt_truncated"]
    ok = coll.valid()
    bigtiff = next(a for a in ok.iterate_rasters() if a.id == "bigtiff")
    hdr, url, _ = bigtiff.try_get_band_cog_metadata("data")
    assert hdr.bigtiff and url == "s3://world/edge/bigtiff.tif"


def test_s3_keys_with_hash_and_question_marks(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'#' and '?' are key characters in s3:// URLs (as GDAL's /vsis3/ reads them): such
    objects are listed and read (every read 404ed, the key cut at the mark); listing a
    bucket that does not exist is a tessellum error (a bare obstore error before)."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from tessellum.errors import TessellumError

    for name, value in (("scene#1.tif", 1), ("scene?v=2.tif", 2)):
        with rasterio.open(tmp_path / name, "w", driver="GTiff", width=16, height=16, count=1,
                           dtype="uint8", crs="EPSG:32612",
                           transform=from_origin(500000, 4650000, 10, 10)) as ds:  # fmt: skip
            ds.write(np.full((1, 16, 16), value, "uint8"))
    s3.upload_dir(tmp_path, bucket="world", prefix="marks/")
    _use_s3(s3, monkeypatch)
    coll = build_from_files("s3://world/marks/", name="marks", progress=False)
    assert not len(coll.errors()) and len(coll) == 2
    got = coll.read_window(bounds=(500000, 4649840, 500160, 4650000), bands=["data"], group_by="id")
    assert sorted(np.unique(got).tolist()) == [1, 2]
    with pytest.raises(TessellumError) as info:
        build_from_files("s3://no-such-bucket/p/", name="x", progress=False)
    assert "no-such-bucket" in str(info.value)
    clear_store_cache()


def test_files_empty_listing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no files"):
        build_from_files(tmp_path, name="none", progress=False)


# -- GTI tile indexes ---------------------------------------------------------------------------


def _write_gti(world: Any, served: Any, path: Path, driver: str) -> gpd.GeoDataFrame:
    files = world.files_of("cop-dem-glo-30")
    gdf = gpd.GeoDataFrame(
        {
            "location": [f"/vsicurl/{served.href(f.key)}" for f in files],
            "acquired": ["2021-04-22"] * len(files),
            "quality": [1, 2, 3, 4],
        },
        geometry=[shapely.box(*_lonlat_bounds(f)) for f in files],
        crs="EPSG:4326",
    )
    if driver == "parquet":
        gdf.to_parquet(path)
    else:
        gdf.to_file(path, driver=driver)
    return gdf


def _lonlat_bounds(f: Any) -> tuple[float, float, float, float]:
    x0, dx, _, y0, _, dy = f.spec["transform"]
    return (x0, y0 + dy * f.spec["height"], x0 + dx * f.spec["width"], y0)


@pytest.mark.parametrize(
    ("driver", "suffix"), [("GPKG", "gpkg"), ("parquet", "parquet"), ("FlatGeobuf", "fgb")]
)
def test_gti_index(world: Any, served: Any, tmp_path: Path, driver: str, suffix: str) -> None:
    index = tmp_path / f"index.{suffix}"
    _write_gti(world, served, index, driver)
    coll = build_from_gti(index, name="gti", datetime_column="acquired", progress=False)
    assert len(coll) == 4 and not len(coll.errors())
    hrefs = {a[0][1]["href"] for a in coll.table.column("assets").to_pylist()}
    assert hrefs == {served.href(f.key) for f in world.files_of("cop-dem-glo-30")}  # no /vsicurl/
    assert sorted(coll.table.column("quality").to_pylist()) == [1, 2, 3, 4]
    assert coll.table.column("datetime")[0].as_py().date() == dt.date(2021, 4, 22)


def test_gti_geodataframe_query_and_missing_location(
    world: Any, served: Any, tmp_path: Path
) -> None:
    gdf = _write_gti(world, served, tmp_path / "i.gpkg", "GPKG")
    coll = build_from_gti(gdf, name="gti", query="quality >= 3", progress=False)
    assert len(coll) == 2
    with pytest.raises(ValidationError, match="location"):
        build_from_gti(gdf.rename(columns={"location": "path"}), name="gti", progress=False)


def test_gti_relative_locations_are_relative_to_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative ``location`` is opened against the index file's folder, as GDAL's GTI
    driver does, whatever the working directory (it was taken relative to the cwd)."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    (tmp_path / "idx" / "tiles").mkdir(parents=True)
    (tmp_path / "elsewhere" / "tiles").mkdir(parents=True)
    t = from_origin(500000, 4650000, 10, 10)
    for folder, value in (("idx", 7), ("elsewhere", 9)):  # a decoy where the cwd points
        with rasterio.open(tmp_path / folder / "tiles" / "a.tif", "w", driver="GTiff",
                           width=8, height=8, count=1, dtype="uint8", crs="EPSG:32612",
                           transform=t) as ds:  # fmt: skip
            ds.write(np.full((1, 8, 8), value, "uint8"))
    index = tmp_path / "idx" / "index.gti.gpkg"
    gpd.GeoDataFrame(
        {"location": ["tiles/a.tif"]}, geometry=[shapely.box(500000, 4649920, 500080, 4650000)],
        crs="EPSG:32612",
    ).to_file(index, driver="GPKG")  # fmt: skip
    monkeypatch.chdir(tmp_path / "elsewhere")
    with rasterio.open(index) as gti:  # GDAL's reading of the same index
        expected = gti.read(1)
    coll = build_from_gti(Path("..") / "idx" / "index.gti.gpkg", name="gti", progress=False)
    assert not len(coll.errors())
    got = coll.read_window(bounds=(500000, 4649920, 500080, 4650000), bands=["data"])
    np.testing.assert_array_equal(got[0], expected)
    assert (expected == 7).all()


def test_gti_layer_metadata_location_field_and_filter_as_gdal(tmp_path: Path) -> None:
    """The index layer's LOCATION_FIELD and FILTER metadata items are applied as GDAL's
    GTI driver applies them (the build failed: no 'location' column, and would have
    indexed the rows FILTER leaves out)."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    (tmp_path / "tiles").mkdir()
    boxes = []
    for i in range(3):
        x0 = 500000 + 80 * i
        with rasterio.open(tmp_path / "tiles" / f"t{i}.tif", "w", driver="GTiff", width=8,
                           height=8, count=1, dtype="uint8", crs="EPSG:32612",
                           transform=from_origin(x0, 4650000, 10, 10)) as ds:  # fmt: skip
            ds.write(np.full((1, 8, 8), i + 1, "uint8"))
        boxes.append(shapely.box(x0, 4649920, x0 + 80, 4650000))
    index = tmp_path / "index.gti.gpkg"
    gpd.GeoDataFrame(
        {"path": [f"tiles/t{i}.tif" for i in range(3)], "location": ["nowhere.tif"] * 3,
         "quality": [5, 1, 4]},
        geometry=boxes, crs="EPSG:32612",
    ).to_file(index, driver="GPKG", metadata={"LOCATION_FIELD": "path", "FILTER": "quality >= 3"})  # fmt: skip
    bounds = (500000, 4649920, 500240, 4650000)
    with rasterio.open(index) as gti:  # GDAL's reading of the same index
        expected = gti.read(1, window=gti.window(*bounds))
    coll = build_from_gti(index, name="gti", progress=False)
    assert sorted(coll.table.column("id").to_pylist()) == ["t0", "t2"]
    assert not len(coll.errors())
    got = coll.read_window(bounds=bounds, bands=["data"])
    np.testing.assert_array_equal(np.nan_to_num(got[0]).astype("uint8"), expected)
    assert set(np.unique(expected)) == {0, 1, 3}
    # the same index by URL: its layer metadata applies too (it was not read)
    from tessellum.testing.servers import HttpServer

    with HttpServer(tmp_path) as http:
        remote = build_from_gti(f"{http.url}/index.gti.gpkg", name="gti", progress=False)
        assert sorted(remote.table.column("id").to_pylist()) == ["t0", "t2"]
        assert not len(remote.errors())
        hrefs = [a[0][1]["href"] for a in remote.table.column("assets").to_pylist()]
        assert all(h.startswith(f"{http.url}/tiles/") for h in hrefs)


def test_gti_tiles_of_one_name_in_two_folders_get_distinct_ids(tmp_path: Path) -> None:
    """Two tiles named alike in different folders are two records with distinct ids
    (both were 'tile': group_by="id" merged them), and read as GDAL's GTI reads them."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    boxes = []
    for i, sub in enumerate(("north", "south")):
        (tmp_path / sub).mkdir()
        y0 = 4650000 - 80 * i
        with rasterio.open(tmp_path / sub / "tile.tif", "w", driver="GTiff", width=8, height=8,
                           count=1, dtype="uint8", crs="EPSG:32612",
                           transform=from_origin(500000, y0, 10, 10)) as ds:  # fmt: skip
            ds.write(np.full((1, 8, 8), i + 1, "uint8"))
        boxes.append(shapely.box(500000, y0 - 80, 500080, y0))
    index = tmp_path / "index.gti.gpkg"
    gpd.GeoDataFrame({"location": ["north/tile.tif", "south/tile.tif"]}, geometry=boxes,
                     crs="EPSG:32612").to_file(index, driver="GPKG")  # fmt: skip
    coll = build_from_gti(index, name="gti", progress=False)
    assert sorted(coll.table.column("id").to_pylist()) == ["north/tile", "south/tile"]
    bounds = (500000, 4649840, 500080, 4650000)
    layers = coll.read_window(bounds=bounds, bands=["data"], group_by="id")
    assert layers.shape[0] == 2
    with rasterio.open(index) as gti:
        expected = gti.read(1)
    np.testing.assert_array_equal(np.asarray(coll.read_window(bounds=bounds, bands=["data"]))[0],
                                  expected)  # fmt: skip


# -- band maps ---------------------------------------------------------------------------------


def test_naip_rgbn_explicit_band_maps(served: Any) -> None:
    coll = build_from_stac(
        name="naip-rgbn", stac_api=served.stac_url, collection="naip", data_source="my/naip",
        band_map={"red": "image", "green": "image", "blue": "image", "nir": "image"},
        band_index_map={"red": 0, "green": 1, "blue": 2, "nir": 3}, progress=False,
    )  # fmt: skip
    assert coll.bands == ["red", "green", "blue", "nir"]
    acc = next(iter(coll.iterate_rasters()))
    assert acc.data_source == "my/naip"
    assert [acc.try_get_band_cog_metadata(b)[2] for b in coll.bands] == [0, 1, 2, 3]
    urls = {acc.try_get_band_cog_metadata(b)[1] for b in coll.bands}
    assert len(urls) == 1  # one pixel-interleaved file


def test_band_index_map_alone_uses_the_single_raster_asset(served: Any) -> None:
    coll = build_from_stac(
        name="naip-rn", stac_api=served.stac_url, collection="naip", data_source="other",
        band_index_map={"R": 0, "N": 3}, progress=False,
    )  # fmt: skip
    assert coll.bands == ["R", "N"]


def test_band_index_beyond_the_files_samples_is_a_build_error(served: Any) -> None:
    """NAIP files hold 3 or 4 samples: index 4 is an error of every record (and a
    warning, as no record has it), and reads skip it instead of reading another sample.
    A sample only some files lack is a band those records lack (no warning)."""
    from tessellum.errors import TessellumWarning

    with pytest.warns(TessellumWarning, match="band index 4 is outside the file's . sample"):
        coll = build_from_stac(
            name="naip-oob", stac_api=served.stac_url, collection="naip", data_source="other",
            band_index_map={"R": 0, "X": 4}, progress=False,
        )  # fmt: skip
    errors = coll.errors().to_pylist()
    assert len(errors) == coll.table.num_rows and {e["band"] for e in errors} == {"X"}
    assert coll.valid().table.num_rows == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rgbn = build_from_stac(
            name="naip-rgbn-all", stac_api=served.stac_url, collection="naip",
            data_source="other", band_index_map={"R": 0, "N": 3}, progress=False,
        )  # fmt: skip
    lacking = [e for e in rgbn.errors().to_pylist() if e["band"] == "N"]
    assert 0 < len(lacking) < rgbn.table.num_rows  # the 3-band (RGB) tiles
    assert "outside the file's 3 sample(s) (0-2)" in lacking[0]["error"]


def test_band_index_map_code_outside_a_multi_asset_band_map_is_named(served: Any) -> None:
    with pytest.raises(ValidationError, match="band 'XX' of band_index_map is not in"):
        build_from_stac(
            name="s2-xx", stac_api=served.stac_url, collection="sentinel-2-l2a",
            band_index_map={"B04": 0, "XX": 0}, progress=False,
        )  # fmt: skip


def test_band_map_selects_assets(served: Any) -> None:
    coll = build_from_stac(
        name="s2-rn", stac_api=served.stac_url, collection="sentinel-2-l2a",
        band_map={"B04": "red", "B08": "nir"}, progress=False,
    )  # fmt: skip
    assert coll.bands == ["B04", "B08"]
    keys = {v["asset_key"] for row in coll.table.column("assets").to_pylist() for _, v in row}
    assert keys == {"red", "nir"}


def test_bands_sharing_an_asset_need_sample_indexes(served: Any) -> None:
    """Seed 002: band_index_map is "required when multiple requested bands map to the same
    STAC asset key". Without it red and nir both read sample 0 of NAIP's one 4-sample
    asset; now that is refused before any request, naming the bands and the asset key,
    unless the built-in NAIP index map gives every such code a sample."""
    kw = {"name": "n", "collection": "naip", "progress": False}
    for api in ("http://127.0.0.1:9", served.stac_url):  # unreachable: no request is sent
        with pytest.raises(ValidationError, match=r"\['red', 'nir'\] all map to asset key 'image'"):
            build_from_stac(stac_api=api, band_map={"red": "image", "nir": "image"}, **kw)
    with pytest.raises(ValidationError, match=r"\['nir'\] have no sample index"):
        build_from_stac(stac_api=served.stac_url, band_map={"red": "image", "nir": "image"},
                        band_index_map={"red": 0}, **kw)  # fmt: skip
    # the built-in NAIP index map names R and N: their samples are 0 and 3
    coll = build_from_stac(stac_api=served.stac_url, band_map={"R": "image", "N": "image"}, **kw)
    acc = next(iter(coll.iterate_rasters()))
    assert [acc.assets[b]["band_index"] for b in ("R", "N")] == [0, 3]
    # one band per asset needs no index
    one = build_from_stac(stac_api=served.stac_url, band_map={"red": "image"}, **kw)
    assert one.bands == ["red"]


def test_band_map_asset_key_no_item_has_is_named(served: Any) -> None:
    """A band_map asset key that no matched item has (a typo) built a collection without
    that band, silently; now a ValidationError names the band, the key and the items' keys."""
    kw = {"name": "x", "stac_api": served.stac_url, "collection": "sentinel-2-l2a"}
    for band_map, band, key in [({"RED": "rde"}, "RED", "rde"),
                                ({"B04": "red", "NIR": "nri"}, "NIR", "nri")]:  # fmt: skip
        with pytest.raises(ValidationError, match=rf"band_map\['{band}'\] = '{key}'") as exc:
            build_from_stac(band_map=band_map, progress=False, **kw)
        assert "'blue', 'green', 'nir', 'red', 'rededge1', 'scl'" in str(exc.value)
    # no item matched at all: an empty collection, as without a band_map
    empty = build_from_stac(band_map={"RED": "rde"}, bbox=(0, 0, 1, 1), progress=False, **kw)
    assert len(empty) == 0


def test_band_map_asset_key_some_items_lack_warns(world: Any, served: Any) -> None:
    """Items lacking a band_map asset others have: those records lack the band (an error
    row in errors(), skipped by valid()), and a warning names them."""
    import copy

    from tessellum.errors import TessellumWarning
    from tessellum.testing.servers import RustacServer

    cols = world.collections(served.data_url)
    items = copy.deepcopy(world.items(served.data_url, collection="sentinel-2-l2a"))
    gappy = sorted(i["id"] for i in items)[:2]
    for item in items:
        if item["id"] in gappy:
            del item["assets"]["nir"]
    try:
        server = RustacServer(cols, items).start()
    except ServerUnavailable as exc:
        pytest.skip(f"rustac unavailable: {exc}")
    try:
        with pytest.warns(TessellumWarning, match=r"band 'B08': 2 of 6 items have no asset 'nir'"):
            coll = build_from_stac(name="g", stac_api=server.url, collection="sentinel-2-l2a",
                                   band_map={"B04": "red", "B08": "nir"}, progress=False)  # fmt: skip
    finally:
        server.stop()
    assert len(coll) == 6 and coll.bands == ["B04", "B08"]
    errors = coll.errors().to_pylist()
    assert sorted(e["id"] for e in errors) == gappy and {e["band"] for e in errors} == {"B08"}


def test_projected_geodataframe_footprints_are_stored_in_lonlat(tmp_path: Path) -> None:
    """A GeoDataFrame in a projected CRS: its geometries are footprints, stored (and
    filtered) in lon/lat like every other collection's (they were kept in metres)."""
    import numpy as np
    from rasterio.transform import from_origin
    from shapely.geometry import box

    from _cogfactory import write_cog
    from tessellum.collection import build_from_table

    path, _ = write_cog(tmp_path / "a.tif", shape=(100, 100), crs="EPSG:32612",
                        transform=from_origin(500000, 4600000, 40, 40),
                        data=np.ones((1, 100, 100), "uint16"))  # fmt: skip
    gdf = gpd.GeoDataFrame({"href": [str(path)], "id": ["a"]},
                           geometry=[box(500000, 4596000, 504000, 4600000)], crs="EPSG:32612")  # fmt: skip
    coll = build_from_table(gdf, name="proj", progress=False)
    west, south, east, north = coll.bounds
    assert -111.01 < west < east < -110.9 and 41.5 < south < north < 41.6
    assert len(coll.subset(bbox=(-112, 41, -110, 42))) == 1
    with pytest.raises(ValidationError, match="no record table at"):
        build_from_table(str(tmp_path / "missing.parquet"), name="x", progress=False)


def test_projected_geoparquet_footprints_are_stored_in_lonlat(tmp_path: Path) -> None:
    """A GeoParquet file (or the Arrow table read from it) in a projected CRS gives the
    footprints the same GeoDataFrame gives (they were kept in metres and every bbox
    filter missed them); footprints in metres without a CRS are an error naming the row."""
    import numpy as np
    import pyarrow.parquet as pq
    from rasterio.transform import from_origin
    from shapely.geometry import box

    from _cogfactory import write_cog
    from tessellum.collection import build_from_table

    path, _ = write_cog(tmp_path / "a.tif", shape=(100, 100), crs="EPSG:32612",
                        transform=from_origin(500000, 4600000, 40, 40),
                        data=np.ones((1, 100, 100), "uint16"))  # fmt: skip
    gdf = gpd.GeoDataFrame({"href": [str(path)], "id": ["a"]},
                           geometry=[box(500000, 4596000, 504000, 4600000)], crs="EPSG:32612")  # fmt: skip
    gdf.to_parquet(tmp_path / "records.parquet")
    expected = gdf.to_crs("OGC:CRS84").geometry.iloc[0]
    for source in (tmp_path / "records.parquet", pq.read_table(tmp_path / "records.parquet")):
        coll = build_from_table(source, name="proj", progress=False)
        got = shapely.from_wkb(coll.table.column("geometry")[0].as_py())
        assert got.equals_exact(expected, tolerance=1e-9), source
        assert len(coll.subset(bbox=(-112, 41, -110, 42))) == 1
    with pytest.raises(ValidationError, match=r"row 'a'.*not lon/lat"):
        build_from_table(gdf.set_crs(None, allow_override=True), name="x", progress=False)


def test_dataframe_named_index_is_a_column(world: Any) -> None:
    """A (Geo)DataFrame indexed by its ids (``set_index("id")``) keeps them: the index
    was dropped and the records were named by row number ('0', '1')."""
    edge = world.files_of("edge-cases")[:2]
    df = pd.DataFrame({"id": ["first", "second"], "href": [str(f.path) for f in edge],
                       "label": [3, 4]}).set_index("id")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some edge-case files are meant to fail
        coll = build_from_table(df, name="indexed", progress=False)
        geo = build_from_table(
            gpd.GeoDataFrame(df, geometry=[shapely.box(-111, 41, -110, 42)] * 2, crs=4326),
            name="indexed", progress=False,
        )  # fmt: skip
    for c in (coll, geo):
        rows = {r["id"]: r["label"] for r in c.table.select(["id", "label"]).to_pylist()}
        assert rows == {"first": 3, "second": 4}


@pytest.mark.parametrize("encoding", ["WKB", "geoarrow"])
def test_geoarrow_tables_keep_their_crs(tmp_path: Path, encoding: str) -> None:
    """GeoDataFrame.to_arrow() (GeoArrow WKB or native, its CRS in the extension
    metadata), given as an Arrow table or as a PyCapsule stream, gives the footprints the
    GeoDataFrame gives (native GeoArrow was refused: 'must be WKB, WKT or a geometry';
    projected WKB was stored in metres)."""
    import numpy as np
    import pyarrow as pa
    from rasterio.transform import from_origin
    from shapely.geometry import box

    from _cogfactory import write_cog
    from tessellum.collection import build_from_table

    path, _ = write_cog(tmp_path / "a.tif", shape=(100, 100), crs="EPSG:32612",
                        transform=from_origin(500000, 4600000, 40, 40),
                        data=np.ones((1, 100, 100), "uint16"))  # fmt: skip
    gdf = gpd.GeoDataFrame({"href": [str(path)], "id": ["a"]},
                           geometry=[box(500000, 4596000, 504000, 4600000)], crs="EPSG:32612")  # fmt: skip
    expected = build_from_table(gdf, name="gdf", progress=False).table.column("geometry")
    for source in (gdf.to_arrow(geometry_encoding=encoding),
                   pa.table(gdf.to_arrow(geometry_encoding=encoding))):  # fmt: skip
        coll = build_from_table(source, name="arrow", progress=False)
        got = shapely.from_wkb(coll.table.column("geometry")[0].as_py())
        assert got.equals_exact(shapely.from_wkb(expected[0].as_py()), tolerance=1e-9)


def test_table_footprints_past_180_are_split(world: Any) -> None:
    """Footprints written with longitudes past ±180 (179.5 to 180.5, -181 to -179) are
    split at the antimeridian and found on both sides (they were found on one side)."""
    href = str(world.files_of("esa-worldcover")[0].path)
    table = pa.table({"id": ["east", "west"], "href": [href, href],
                      "geometry": [shapely.box(179.5, 0, 180.5, 1).wkb,
                                   shapely.box(-181, 0, -179, 1).wkb]})  # fmt: skip
    coll = build_from_table(table, name="am", progress=False)
    for box in [(-179.9, 0.2, -179.7, 0.4), (179.6, 0.2, 179.7, 0.4)]:
        assert sorted(coll.subset(bbox=box).table.column("id").to_pylist()) == ["east", "west"]
    for fp in shapely.from_wkb(coll.table.column("geometry").to_pylist()):
        assert fp.bounds[0] >= -180 and fp.bounds[2] <= 180


def test_file_ids_are_distinct_for_distinct_files(tmp_path: Path) -> None:
    """Files of one name in folders of one name get ids with as many folders as it takes
    (``2023/01/scene`` and ``2024/01/scene`` were both ``01/scene``, and group_by="id"
    merged them); a local ``?`` is part of a file name; a file listed twice is one record."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    paths = []
    for k, sub in enumerate(("2023/01", "2024/01", "2024/02", "odd")):
        for name in ("s?a.tif", "s?b.tif") if sub == "odd" else ("scene.tif",):
            p = tmp_path / sub / name
            p.parent.mkdir(parents=True, exist_ok=True)
            with rasterio.open(p, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8",
                               crs="EPSG:32612", transform=from_origin(500000, 4650000, 10, 10)) as ds:  # fmt: skip
                ds.write(np.full((1, 8, 8), k + 1, "uint8"))
            paths.append(str(p))
    coll = build_from_files(paths + paths[:1], name="ids", progress=False)
    ids = coll.table.column("id").to_pylist()
    assert sorted(ids) == ["02/scene", "2023/01/scene", "2024/01/scene", "s?a", "s?b"]
    layers = coll.read_window(bounds=(500000, 4649920, 500080, 4650000), bands=["data"],
                              group_by="id")  # fmt: skip
    assert layers.shape[0] == 5


def test_file_ids_over_http_and_s3_are_the_names_on_disk(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files with spaces, unicode, '%', '#', '?' ... get the same ids from a local
    folder, from nginx URLs (percent-encoded: the ids were too, 'with%20space') and from
    an S3 prefix (a '?' in a key is part of the name: 'q?mark' was 'q'); URLs that differ
    only in their query string get distinct ids (they were one id)."""
    import urllib.parse

    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from tessellum.testing.servers import HttpServer

    names = ["with space", "ünïcødé", "per%20cent", "hash#1", "q?mark", "plus+sign", "a&b"]
    for k, name in enumerate(names):
        with rasterio.open(tmp_path / f"{name}.tif", "w", driver="GTiff", width=8, height=8,
                           count=1, dtype="uint8", crs="EPSG:32612",
                           transform=from_origin(500000, 4650000, 10, 10)) as ds:  # fmt: skip
            ds.write(np.full((1, 8, 8), k + 1, "uint8"))
    local = build_from_files(tmp_path, name="odd", progress=False)
    assert sorted(local.table.column("id").to_pylist()) == sorted(names)
    with HttpServer(tmp_path) as http:
        urls = [f"{http.url}/{urllib.parse.quote(n)}.tif" for n in names]
        remote = build_from_files(urls, name="odd", progress=False)
        signed = build_from_files(
            [f"{urls[0]}?sig=1", f"{urls[0]}?sig=2"], name="odd", progress=False
        )
    assert sorted(remote.table.column("id").to_pylist()) == sorted(names)
    assert not len(remote.errors())
    assert len(set(signed.table.column("id").to_pylist())) == 2
    s3.upload_dir(tmp_path, bucket="world", prefix="odd names/")
    _use_s3(s3, monkeypatch)
    try:
        listed = build_from_files("s3://world/odd names/", name="odd", progress=False)
    finally:
        clear_store_cache()
    assert sorted(listed.table.column("id").to_pylist()) == sorted(names)
    assert not len(listed.errors())


def test_one_file_url_is_one_file_as_a_local_path_is(
    world: Any, served: Any, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """build_from_files("https://host/a.tif") or ("s3://bucket/key.tif") is that file, as
    a local file path is (HTTP tried to list it as a folder: 403 from PROPFIND; S3
    listed the prefix 'key.tif/': no files); an HTTP folder names the way out."""
    from tessellum.errors import TessellumError

    one = world.files_of("esa-worldcover")[0]
    http = build_from_files(served.href(one.key), name="one", progress=False)
    assert len(http) == 1 and not len(http.errors())
    _use_s3(s3, monkeypatch)
    try:
        key = build_from_files("s3://world/edge/bigtiff.tif", name="one", progress=False)
    finally:
        clear_store_cache()
    assert key.table.column("id").to_pylist() == ["bigtiff"] and not len(key.errors())
    with pytest.raises(TessellumError, match="list of file URLs"):
        build_from_files(f"{served.data_url}/data/", name="folder", progress=False)


def test_an_empty_file_is_a_truncated_header_over_http_as_on_disk(tmp_path: Path) -> None:
    """A 0-byte file is reported as a truncated header whether read from disk or from
    nginx (over HTTP the error said the server did not support Range requests)."""
    import warnings

    from tessellum.testing.servers import HttpServer

    (tmp_path / "empty.tif").write_bytes(b"")
    with HttpServer(tmp_path) as http, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for href in (str(tmp_path / "empty.tif"), f"{http.url}/empty.tif"):
            coll = build_from_files([href], name="x", progress=False)
            (row,) = coll.errors().to_pylist()
            assert "truncated TIFF header" in row["error"], row


def test_files_with_several_samples_read_the_bands_asked(tmp_path: Path) -> None:
    """build_from_files reads the samples band_index_map names (as build_from_table
    does), equal to rasterio's bands; without it, the one band it reads is warned about."""
    import rasterio
    from rasterio.transform import from_origin

    from tessellum.errors import TessellumWarning

    path = tmp_path / "rgbn.tif"
    rng = np.random.default_rng(5)
    data = rng.integers(1, 60000, size=(4, 96, 80), dtype=np.uint16)
    with rasterio.open(
        path, "w", driver="COG", width=80, height=96, count=4, dtype="uint16",
        crs="EPSG:32612", transform=from_origin(500000, 4600000, 10, 10), blocksize=32,
    ) as dst:  # fmt: skip
        dst.write(data)
    with pytest.warns(TessellumWarning, match="up to 4 samples"):
        plain = build_from_files([str(path)], name="plain", progress=False)
    assert plain.bands == ["data"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", TessellumWarning)  # all samples named: no warning
        coll = build_from_files(
            [str(path)], name="rgbn", progress=False,
            band_index_map={"red": 0, "green": 1, "blue": 2, "nir": 3},
        )  # fmt: skip
    bounds = (500000, 4600000 - 960, 500800, 4600000)
    got = coll.read_window(bounds=bounds, bands=["nir", "red"])
    np.testing.assert_array_equal(got, data[[3, 0]])
    with pytest.raises(ValidationError, match="band_index_map"):
        build_from_files([str(path)], name="bad", progress=False, band_index_map={"x": "one"})
    # a sample the file lacks is a row error, as in build_from_table
    with pytest.warns(TessellumWarning, match="outside the file's 4 sample"):
        bad = build_from_files([str(path)], name="b", progress=False, band_index_map={"x": 7})
    assert bad.errors().num_rows == 1
