"""Headers parsed through a collection build equal what GDAL (rasterio) and tifffile report.

Every non-corrupt file of the fixture world is indexed through the STAC API (rustac) over
HTTP (nginx), the collection is exported and loaded back, and each band header struct is
compared with the file opened locally. The nginx log gives the requests per asset.
"""

from __future__ import annotations

import collections
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import rasterio
import tifffile
from pyproj import CRS

from tessellum.collection import Collection, build_from_files, build_from_stac
from tessellum.tiff import TiffHeader

DATASETS = ("cop-dem-glo-30", "esa-worldcover", "sentinel-2-l2a", "naip", "edge-cases")


@pytest.fixture(scope="session")
def stac_builds(world: Any, served: Any, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One build per dataset through rustac + nginx, with the request log of each build,
    and the collection after an export/load round trip."""
    out: dict[str, tuple[Collection, list, Collection]] = {}
    root = tmp_path_factory.mktemp("headers")
    for ds in DATASETS:
        served.http.reset_log()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no asset of these datasets may fail
            coll = build_from_stac(name=ds, stac_api=served.stac_url, collection=ds, progress=False)
        log = served.http.requests()
        loaded = Collection.load(coll.export(root / ds))
        out[ds] = (coll, log, loaded)
    return out


def _headers_by_href(coll: Collection) -> dict[str, tuple[TiffHeader, int | None]]:
    """href -> (header, band_index) for every band asset of every record."""
    out = {}
    for acc in coll.iterate_rasters():
        for band in acc.available_bands:
            hdr, url, idx = acc.try_get_band_cog_metadata(band)
            out.setdefault(url, (hdr, idx))
    return out


def _good_files(world: Any) -> list[Any]:
    return [f for f in world.files if not f.spec.get("corrupt")]


def test_every_good_file_indexed(world: Any, served: Any, stac_builds: dict) -> None:
    hrefs: set[str] = set()
    for _, _, loaded in stac_builds.values():
        hrefs |= set(_headers_by_href(loaded))
    expected = {served.href(f.key) for f in _good_files(world)}
    assert expected == hrefs


def _assert_matches_gdal(path: Path, hdr: TiffHeader) -> None:
    with rasterio.open(path) as ds:
        assert hdr.geo.transform == pytest.approx(ds.transform.to_gdal(), rel=0, abs=1e-9)
        # GDAL 3.10 has no Float16 type: it exposes IEEE half samples as float32
        gdal_dtype = "float32" if hdr.dtype == "float16" else hdr.dtype
        assert gdal_dtype == ds.dtypes[0]
        assert hdr.count == ds.count
        assert (hdr.width, hdr.height) == (ds.width, ds.height)
        assert (hdr.levels[0].tile_height, hdr.levels[0].tile_width) == ds.block_shapes[0]
        if ds.crs is not None:
            assert CRS.from_wkt(hdr.geo.crs_wkt).equals(
                CRS.from_wkt(ds.crs.to_wkt()), ignore_axis_order=True
            )
            if ds.crs.to_epsg() is not None and ds.crs.is_epsg_code:
                assert hdr.geo.crs_epsg == ds.crs.to_epsg()
        nd = hdr.nodata_value()
        if ds.nodata is None:
            assert nd is None
        elif np.isnan(ds.nodata):
            assert np.isnan(nd)
        else:
            assert nd == np.array(ds.nodata).astype(hdr.dtype)
        for b in range(ds.count):
            assert hdr.scale(b) == ds.scales[b]
            assert hdr.offset(b) == ds.offsets[b]
        factors = ds.overviews(1)
    assert len(hdr.levels) == len(factors) + 1
    for i in range(len(factors)):
        with rasterio.open(path, overview_level=i) as ov:
            lv = hdr.levels[i + 1]
            assert (lv.height, lv.width) == ov.shape
            assert (lv.tile_height, lv.tile_width) == ov.block_shapes[0]


def _assert_matches_tifffile(path: Path, hdr: TiffHeader) -> None:
    with tifffile.TiffFile(path) as tf:
        pages = list(tf.pages)
        for p in list(pages):
            pages.extend(p.pages or [])  # SubIFDs
        mine = list(hdr.levels) + list(hdr.mask_levels)
        assert len(mine) == len(pages)
        by_key = {(lv.width, lv.height, lv.is_mask): lv for lv in mine}
        for page in pages:
            is_mask = bool(page.subfiletype & 4) or page.photometric == 4
            lv = by_key[(page.imagewidth, page.imagelength, is_mask)]
            np.testing.assert_array_equal(lv.tile_offsets, np.asarray(page.dataoffsets, np.uint64))
            np.testing.assert_array_equal(
                lv.tile_byte_counts, np.asarray(page.databytecounts, np.uint64)
            )
            if page.is_tiled:
                assert (lv.tile_width, lv.tile_height) == (page.tilewidth, page.tilelength)
            assert lv.compression == int(page.compression)
            assert lv.predictor == int(page.predictor)
            assert lv.planar_config == int(page.planarconfig)
            assert lv.photometric == int(page.photometric)
            assert lv.jpeg_tables == page.jpegtables
        assert hdr.bigtiff == tf.is_bigtiff
        assert hdr.byte_order == tf.byteorder


def test_headers_equal_gdal_and_tifffile(world: Any, served: Any, stac_builds: dict) -> None:
    """Every good file, read back from the exported-and-loaded collection tables."""
    headers: dict[str, tuple[TiffHeader, int | None]] = {}
    for _, _, loaded in stac_builds.values():
        headers.update(_headers_by_href(loaded))
    failures = []
    for f in _good_files(world):
        hdr, _ = headers[served.href(f.key)]
        for check in (_assert_matches_gdal, _assert_matches_tifffile):
            try:
                check(f.path, hdr)
            except AssertionError as exc:
                failures.append(f"{f.key} ({check.__name__}): {exc}")
    assert not failures, "\n".join(failures)


def test_round_trip_keeps_header_structs(stac_builds: dict) -> None:
    for coll, _, loaded in stac_builds.values():
        assert len(loaded) == len(coll)
        for band in coll.bands:
            col = f"{band}_metadata"
            assert loaded.table.schema.field(col) == coll.table.schema.field(col)
            # JSON text compares NaN nodata equal to itself (Arrow equality does not)
            assert _as_text(loaded.table.column(col)) == _as_text(coll.table.column(col))


def _as_text(col: Any) -> str:
    return json.dumps(col.to_pylist(), default=repr)


def test_one_request_per_asset_at_most_two(world: Any, stac_builds: dict) -> None:
    for ds, (_, log, _) in stac_builds.items():
        per_path = collections.Counter(r.path for r in log if r.path.endswith(".tif"))
        files = {f"/{f.relpath}" for f in world.files_of(ds) if not f.spec.get("corrupt")}
        assert set(per_path) == files, ds
        assert max(per_path.values()) <= 2, (ds, per_path.most_common(3))
        # all but a few layouts (tag arrays beyond the 64 KiB prefix) take one request
        assert sum(per_path.values()) <= len(files) + max(1, len(files) // 4), ds
        assert all(r.method == "GET" and r.range for r in log if r.path in files)


def test_naip_rgbn_bands_share_one_header_read(world: Any, stac_builds: dict) -> None:
    coll, log, _ = stac_builds["naip"]
    assert coll.bands == ["R", "G", "B", "N"]
    per_path = collections.Counter(r.path for r in log)
    assert all(per_path[f"/{f.relpath}"] == 1 for f in world.files_of("naip"))
    acc = next(iter(coll.iterate_rasters()))
    got = {b: acc.try_get_band_cog_metadata(b)[2] for b in "RGBN"}
    assert got == {"R": 0, "G": 1, "B": 2, "N": 3}
    assert acc.try_get_band_cog_metadata("R")[0].count == 4


def test_stored_arrow_columns_are_structs_not_json(world: Any, stac_builds: dict) -> None:
    coll, _, _ = stac_builds["sentinel-2-l2a"]
    col = coll.table.column("B04_metadata")
    assert pa.types.is_struct(col.type)
    assert pa.types.is_list(pc.struct_field(col, "levels").type)
    by_item = {f.item_id: f.spec for f in world.files_of("sentinel-2-l2a") if f.asset_key == "red"}
    ids = coll.table.column("id").to_pylist()
    assert pc.struct_field(col, "width").to_pylist() == [by_item[i]["width"] for i in ids]
    assert pc.struct_field(col, "dtype").to_pylist() == [by_item[i]["dtype"] for i in ids]


def test_corrupt_and_missing_assets_do_not_abort(world: Any, served: Any) -> None:
    edge = [served.href(f.key) for f in world.files_of("edge-cases")]
    garbage = served.href("edge/garbage")
    missing = f"{served.data_url}/data/edge-cases/does-not-exist.tif"
    truncated = served.href("edge/truncated")
    with (
        pytest.warns(Warning, match="hold up to 3 samples"),  # the RGB edge files
        pytest.warns(Warning, match=r"3 of \d+ band assets failed") as caught,
    ):
        coll = build_from_files([*edge, missing], name="bad", progress=False)
    assert "does-not-exist" in str(caught[0].message)
    assert len(coll) == len(edge) + 1
    msgs = {e["id"]: e["error"] for e in coll.errors().to_pylist()}
    assert set(msgs) == {Path(garbage).stem, Path(truncated).stem, "does-not-exist"}
    assert "404" in msgs["does-not-exist"] and missing in msgs["does-not-exist"]
    assert "not a TIFF" in msgs[Path(garbage).stem]
    assert "truncated file" in msgs[Path(truncated).stem]
    assert len(coll.valid()) == len(edge) - 2
    assert coll.describe()["band_details"]["data"]["errors"] == 3
    acc = next(a for a in coll.iterate_rasters() if a.id == "does-not-exist")
    assert acc.try_get_band_cog_metadata("data") == (None, None, None)
    assert acc.available_bands == []


@pytest.mark.parametrize("prefix_size", [1 << 20, 4096])
def test_truncated_file_flagged(served: Any, prefix_size: int) -> None:
    """A file cut short after its header parses: the build knows the file's size, from a
    short prefix or from the prefix response's Content-Range when the file is larger,
    and records the tiles that lie beyond the end."""
    url = served.href("edge/truncated")
    with pytest.warns(Warning, match="truncated"):
        coll = build_from_files([url], name="trunc", prefix_size=prefix_size, progress=False)
    (err,) = coll.errors().to_pylist()
    assert "truncated file" in err["error"] and url in err["error"]
