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


def test_table_without_href_is_a_clear_error(world: Any) -> None:
    with pytest.raises(ValidationError, match="href"):
        build_from_table(pa.table({"id": ["a"], "url": ["x"]}), name="x", progress=False)


# -- file listings ------------------------------------------------------------------------------


def test_files_local_folder(world: Any) -> None:
    folder = world.root / "data" / "naip"
    coll = build_from_files(folder, name="naip", progress=False)
    assert _ids(coll) == sorted(Path(f.relpath).stem for f in world.files_of("naip"))
    assert coll.table.column("crs").to_pylist() == ["EPSG:26912"] * 5


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


def test_files_s3_prefix(world: Any, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    clear_store_cache()
    with pytest.warns(Warning, match="2 of 24 band assets failed"):
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
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    clear_store_cache()
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
