"""Headers a build cannot use become that row's error (never the build's), headers GDAL
opens are indexed as GDAL reads them, and a corrupt header costs one read."""

from __future__ import annotations

import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.warp
import tifffile
from rasterio.control import GroundControlPoint
from rasterio.transform import from_origin
from shapely.geometry import Point

sys.path.insert(0, str(Path(__file__).parent))
from _cogfactory import patch_tag, write_cog
from tessellum.collection import build_from_files
from tessellum.testing.servers import HttpServer

GEO = [
    (33550, 12, 3, [10.0, 10.0, 0.0], True),
    (33922, 12, 6, [0, 0, 0, 500000, 4650000, 0], True),
]
GEOKEYS = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32612]


def _scale_of(path: Path, scale: tuple[float, float, float]) -> None:
    buf = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tf:
        struct.pack_into("<3d", buf, tf.pages[0].tags[33550].valueoffset, *scale)
    path.write_bytes(bytes(buf))


def _bad_files(d: Path) -> dict[str, str]:
    """Files no read can use -> the words their row error must hold."""
    small = dict(shape=(64, 64), blocksize=64, overviews=())
    path, _ = write_cog(d / "nan_scale.tif", **small)
    _scale_of(path, (np.nan, np.nan, 0.0))
    path, _ = write_cog(d / "zero_scale.tif", **small)
    _scale_of(path, (0.0, 0.0, 0.0))
    # intact, but far outside its CRS's domain: no lon/lat footprint
    write_cog(d / "utm_far.tif", transform=from_origin(5e7, 4650000, 10, 10), **small)
    tifffile.imwrite(d / "thumbnail.tif", np.zeros((64, 64), np.uint8))  # no GeoTIFF tags
    path, _ = write_cog(d / "comp_9999.tif", **small)
    patch_tag(path, 259, 9999)
    path, _ = write_cog(d / "pred_3_uint16.tif", predictor=2, **small)
    patch_tag(path, 317, 3)
    gcps = [GroundControlPoint(r, c, 500000 + 10 * c, 4650000 - 10 * r) for r, c in
            ((0, 0), (0, 63), (63, 0), (63, 63), (30, 20))]  # fmt: skip
    with rasterio.open(d / "gcps_only.tif", "w", driver="GTiff", width=64, height=64, count=1,
                       dtype="uint8", gcps=gcps, crs="EPSG:32612") as dst:  # fmt: skip
        dst.write(np.ones((1, 64, 64), np.uint8))  # GDAL reads it (identity transform)
    return {
        "nan_scale": "not finite",
        "zero_scale": "degenerate",
        "utm_far": "footprint cannot be transformed",
        "thumbnail": "not georeferenced",
        "comp_9999": "compression 9999",
        "pred_3_uint16": "Predictor (3)",
        "gcps_only": "5 ground control points (GCPs) only",
    }


def _odd_files(d: Path) -> list[str]:
    """Files GDAL opens with unusual header values: indexed, not errors."""
    keys300 = list(GEOKEYS)
    keys300[11] = 300
    keys = (34735, 3, len(GEOKEYS), GEOKEYS, True)
    xml = '<GDALMetadata><Item name="SCALE" sample="0" role="scale">abc</Item>{}</GDALMetadata>'
    cases = {
        "bad_scale": [*GEO, keys, (42112, 2, 0, xml.format(""), True)],
        "raster_type_300": [*GEO, (34735, 3, len(keys300), keys300, True)],
        "subfile_type_2_31": [*GEO, keys, (254, 4, 1, 0x80000000, True)],
        "sample_3e9": [
            *GEO,
            keys,
            (42112, 2, 0, xml.format('<Item name="X" sample="3000000000">1</Item>'), True),
        ],
        "lerc_params_3e9": [*GEO, keys, (50674, 4, 2, [4, 3_000_000_000], True)],
    }
    for name, tags in cases.items():
        tifffile.imwrite(d / f"{name}.tif", np.full((64, 64), 3, np.uint16), extratags=tags)
    return list(cases)


def test_bad_headers_are_row_errors_and_odd_ones_read_as_gdal(tmp_path: Path) -> None:
    write_cog(tmp_path / "good.tif", shape=(256, 256), overviews=())
    bad = _bad_files(tmp_path)
    odd = _odd_files(tmp_path)
    with HttpServer(tmp_path) as http:
        urls = {p.stem: f"{http.url}/{p.name}" for p in sorted(tmp_path.glob("*.tif"))}
        with pytest.warns(Warning, match=f"{len(bad)} of {len(urls)} band assets failed"):
            coll = build_from_files(list(urls.values()), name="mixed", progress=False)
        errors = {e["id"]: e["error"] for e in coll.errors().to_pylist()}
        assert set(errors) == set(bad)
        for name, words in bad.items():
            assert words in errors[name] and urls[name] in errors[name], errors[name]
        valid = coll.valid()
        assert sorted(valid.table.column("id").to_pylist()) == sorted(["good", *odd])
        # GDAL's values: SCALE "abc" is 0.0, RasterType 300 is PixelIsArea
        meta = {
            i: m
            for i, m in zip(
                coll.table.column("id").to_pylist(),
                coll.table.column("data_metadata").to_pylist(),
                strict=True,
            )
        }
        for name in odd:
            with rasterio.open(tmp_path / f"{name}.tif") as ds:
                assert meta[name]["scale"] == ds.scales[0]
                assert tuple(meta[name]["transform"]) == ds.transform.to_gdal()
        assert meta["raster_type_300"]["raster_type"] == 1
        assert meta["subfile_type_2_31"]["levels"][0]["subfile_type"] == 0x80000000
        assert meta["lerc_params_3e9"]["lerc_params"] == [4, 3_000_000_000]
        # reads of what is left work: the bad rows are gone, not poisoning the others
        with rasterio.open(tmp_path / "good.tif") as ds:
            b = ds.bounds
            ref = ds.read(1)
            lonlat = rasterio.warp.transform(ds.crs, "EPSG:4326", [b.left + 5], [b.top - 5])
        good = valid.where(valid.table.column("id").to_numpy(zero_copy_only=False) == "good")
        got = good.read_window(bounds=tuple(b), bands=["data"])
        np.testing.assert_array_equal(np.asarray(got)[0], ref)
        pts = valid.sample_points([Point(lonlat[0][0], lonlat[1][0])], ["data"])
        assert pts.column("value").to_pylist() == [int(ref[0, 0])]


def test_corrupt_tag_count_costs_one_read(tmp_path: Path) -> None:
    """TileByteCounts' count set to 2**30 in a 200 MB object: the prefix response's
    Content-Range gives the object's size, so the header fails after that one read
    instead of downloading the object."""
    path, _ = write_cog(tmp_path / "big.tif", shape=(512, 512), overviews=())
    with open(path, "ab") as f:
        f.truncate(200 * 2**20)
    with tifffile.TiffFile(path) as tf:
        pos = tf.pages[0].tags[325].offset
    with open(path, "r+b") as f:
        f.seek(pos + 4)
        f.write(struct.pack("<I", 2**30))
    with HttpServer(tmp_path) as http:
        http.reset_log()
        url = f"{http.url}/big.tif"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coll = build_from_files([url], name="big", progress=False)
        reqs = http.requests()
    (err,) = coll.errors().to_pylist()
    assert "beyond the end of file" in err["error"] and url in err["error"]
    assert len(reqs) == 1 and sum(r.bytes_sent for r in reqs) < 2**20
