"""Raster mode's errors (the seed's classes, messages naming the value), request
validation, atomic writes, and the small pure pieces (priority order, nodata choice)."""

from __future__ import annotations

import datetime as dt
import math
import time

import numpy as np
import pytest

from tessellum.catalog import default_catalog
from tessellum.config import settings_override
from tessellum.errors import (
    DatasetNotFoundError,
    ExtractionError,
    ProtocolError,
    RasterUnsupportedError,
    ValidationError,
)
from tessellum.mosaic import extract_raster_sync
from tessellum.mosaic._stac import output_nodata
from tessellum.read.stacks import mosaic_order

DEM = "copernicus_dem:elevation"
SEAM_BBOX = (-112.05, 41.95, -111.95, 42.05)


@pytest.fixture(scope="module")
def stac(served):
    with settings_override(stac_api=served.stac_url):
        yield served


def _entry(**kw):
    base = {
        "id": "test_x:elevation", "provider_name": "x", "title": "x", "protocol": "stac_cog",
        "stac_api": "https://example.com/stac", "collections": ["cop-dem-glo-30"],
        "asset": "data", "native_crs": "EPSG:4326", "native_resolution": 1 / 600,
        "dtype": "float32", "nodata": -32767.0, "license": "test", "version": "1",
        "supports_raster": True,
    }  # fmt: skip
    return {**base, **kw}


# --- validation (no I/O) ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("bbox", "match"),
    [
        ((-111.95, 41.95, -112.05, 42.05, 1), "4 numbers"),
        ((-112.05, 42.05, -111.95, 41.95), "south"),
        ((-112.05, 41.95, -111.95, 95.0), "latitudes"),
        ((-212.05, 41.95, -111.95, 42.05), "longitudes"),
        ((-112.05, 41.95, "east", 42.05), "numbers"),
        ((-112.0, 41.95, -112.0, 42.05), "zero-width"),
    ],
)
def test_bad_bbox(tmp_path, bbox, match):
    with pytest.raises(ValidationError, match=match):
        extract_raster_sync(DEM, bbox, tmp_path)
    assert not list(tmp_path.iterdir())


def test_unknown_dataset_suggests(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="copernicus_dem:elevation"):
        extract_raster_sync("copernicus_dem:elevatoin", SEAM_BBOX, tmp_path)


@pytest.mark.parametrize(
    "ids", [["copernicus_dem:elevation", "esa_worldcover:land_cover"], "a:b,c:d"]
)
def test_one_dataset_per_call(tmp_path, ids):
    with pytest.raises(ValidationError, match="one dataset per call"):
        extract_raster_sync(ids, SEAM_BBOX, tmp_path)


def test_dataset_without_raster_support(tmp_path):
    cat = default_catalog().register(_entry(supports_raster=False))
    with pytest.raises(RasterUnsupportedError, match="does not support raster mode"):
        extract_raster_sync("test_x:elevation", SEAM_BBOX, tmp_path, catalog=cat)


@pytest.mark.parametrize("res", [0, -1.0, float("nan"), "fine", (1.0,)])
def test_bad_resolution(tmp_path, res):
    with pytest.raises(ValidationError, match="target_resolution"):
        extract_raster_sync(DEM, SEAM_BBOX, tmp_path, target_resolution=res)


def test_bad_resampling_and_categorical_interpolation(tmp_path):
    with pytest.raises(ValidationError, match="resampling must be one of"):
        extract_raster_sync(DEM, SEAM_BBOX, tmp_path, resampling="spline-ish")
    with pytest.raises(ValidationError, match="categorical"):
        extract_raster_sync(
            "esa_worldcover:land_cover", SEAM_BBOX, tmp_path, target_resolution=0.01,
            resampling="bilinear",
        )  # fmt: skip


@pytest.mark.parametrize("name", ["../x.tif", "sub/x.tif", "", "a\0b.tif", "e" * 252 + ".tif"])
def test_bad_filename(tmp_path, name):
    """Refused before any work (a NUL failed after the extraction and left a stray file
    where GDAL cut the name; an over-long name failed with a bare OSError)."""
    with pytest.raises(ValidationError, match="filename"):
        extract_raster_sync(DEM, SEAM_BBOX, tmp_path, filename=name)
    assert not list(tmp_path.iterdir())


def test_bad_target_crs(tmp_path):
    with pytest.raises(ValidationError, match="cannot parse CRS"):
        extract_raster_sync(DEM, SEAM_BBOX, tmp_path, target_crs="EPSG:999999")


def test_antimeridian_bbox_rejected(tmp_path):
    with pytest.raises(RasterUnsupportedError, match="antimeridian"):
        extract_raster_sync(DEM, (179.5, -17.0, -179.5, -16.5), tmp_path)


def test_wcs_rejects_target_resolution(tmp_path):
    with pytest.raises(RasterUnsupportedError, match="target_resolution is not supported"):
        extract_raster_sync("tandem_x:elevation", SEAM_BBOX, tmp_path, target_resolution=0.01)


def test_too_many_pixels_before_any_request(tmp_path):
    with (
        settings_override(max_output_pixels=1000, stac_api="http://127.0.0.1:9"),
        pytest.raises(ValidationError, match="max_output_pixels=1,000"),
    ):
        extract_raster_sync(DEM, SEAM_BBOX, tmp_path)


def test_too_many_pixels_on_the_real_grid(stac, tmp_path):
    # the catalog claims a coarse grid, so only the exact check after the headers trips
    cat = default_catalog().register(_entry(native_resolution=0.05))
    with (
        settings_override(max_output_pixels=1000),
        pytest.raises(ValidationError, match="61 x 61 = 3,721 pixels"),
    ):
        extract_raster_sync("test_x:elevation", SEAM_BBOX, tmp_path, catalog=cat)
    assert not list(tmp_path.iterdir())


# --- upstream failures ----------------------------------------------------------------
def test_no_items_intersect(stac, tmp_path):
    with pytest.raises(ProtocolError, match="no item of cop-dem-glo-30 intersects"):
        extract_raster_sync(DEM, (10.0, 10.0, 10.1, 10.1), tmp_path)
    with pytest.raises(ProtocolError, match="no item"):
        extract_raster_sync(DEM, SEAM_BBOX, tmp_path, time_range=("1990-01-01", "1990-12-31"))
    assert not list(tmp_path.iterdir())


def test_stac_failure_is_protocol_error(tmp_path):
    from tessellum.testing.servers import free_port

    with (
        settings_override(stac_api=f"http://127.0.0.1:{free_port()}"),
        pytest.raises(ProtocolError, match="STAC"),
    ):
        extract_raster_sync(DEM, SEAM_BBOX, tmp_path)


def test_timeout_is_extraction_error(stac, tmp_path):
    with (
        settings_override(provider_timeout_s=0.001),
        pytest.raises(ExtractionError, match="provider_timeout_s"),
    ):
        extract_raster_sync(DEM, SEAM_BBOX, tmp_path)
    assert not list(tmp_path.iterdir())


# --- atomic writes --------------------------------------------------------------------
def test_failed_write_keeps_existing_file_and_leaves_no_temp(stac, tmp_path, monkeypatch):
    import rasterio.shutil

    target = tmp_path / "copernicus_dem_elevation.tif"
    target.write_bytes(b"previous result")

    def broken_copy(src, dst, **kw):
        with open(dst, "wb") as fh:
            fh.write(b"II*\x00 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(rasterio.shutil, "copy", broken_copy)
    with pytest.raises(OSError, match="disk full"):
        extract_raster_sync(DEM, SEAM_BBOX, tmp_path)
    assert target.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_timeout_during_write_leaves_no_file(stac, tmp_path, monkeypatch):
    from tessellum.mosaic._cog import CogWriter

    real = CogWriter._finish

    def slow_finish(self):
        time.sleep(0.6)  # the timeout fires while this thread is still copying
        return real(self)

    monkeypatch.setattr(CogWriter, "_finish", slow_finish)
    with (
        settings_override(provider_timeout_s=0.4),
        pytest.raises(ExtractionError, match="no file written"),
    ):
        extract_raster_sync(DEM, SEAM_BBOX, tmp_path)
    time.sleep(0.6)  # let the orphaned copy finish: it must clean up after itself
    assert not list(tmp_path.iterdir())


# --- pure pieces ----------------------------------------------------------------------
def test_priority_latest_first_then_id():
    from tessellum.read.sources import RecordBands

    def rec(rid, day):
        when = dt.datetime(2024, 1, day, tzinfo=dt.UTC) if day else None
        return RecordBands(rid, when, None, {}, 0)

    recs = [rec("b", 5), rec("c", None), rec("a", 5), rec("d", 9)]
    assert [r.id for r in mosaic_order(recs)] == ["d", "a", "b", "c"]


@pytest.mark.parametrize(
    ("src", "cat", "dtype", "expected"),
    [
        (-32767.0, -9999.0, "float32", -32767.0),
        (float("nan"), -9999.0, "float32", -9999.0),
        (None, 0, "uint8", 0),
        (None, None, "float32", -9999.0),
        (None, None, "uint8", 255),
        (None, None, "int16", -32768),
        (None, 300, "uint8", 255),
    ],
)
def test_output_nodata_is_always_finite(src, cat, dtype, expected):
    value, notes = output_nodata(src, cat, np.dtype(dtype))
    assert value == expected and math.isfinite(value)
    assert bool(notes) == (src is None or src != src)
