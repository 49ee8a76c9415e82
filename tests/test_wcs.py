"""WCS 2.0.1 passthrough against a real MapServer (``mapserv`` CGI) on 127.0.0.1 serving
the fixture world's DEM tiles; mapserv run directly is the reference answer."""

from __future__ import annotations

import urllib.parse

import numpy as np
import pytest
import rasterio

from tessellum.catalog import default_catalog
from tessellum.config import settings_override
from tessellum.errors import ConfigurationError, DataFormatError
from tessellum.mosaic import extract_raster_sync
from tessellum.mosaic._cog import read_geotiff_bytes
from tessellum.mosaic.wcs import exception_message, getcoverage_params

TDX = "tandem_x:elevation"
SEAM_BBOX = (-112.05, 41.95, -111.95, 42.05)


@pytest.fixture(scope="module")
def wcs(world):
    from tessellum.testing.servers import ServerUnavailable
    from tessellum.testing.servers.wcs import WcsServer

    tifs = [f.path for f in world.files_of("cop-dem-glo-30")]
    try:
        with WcsServer(tifs, coverage_id="TDM_DEM__DEM") as server:
            yield server
    except ServerUnavailable as exc:
        pytest.skip(f"MapServer unavailable: {exc}")


@pytest.fixture
def creds(monkeypatch):
    monkeypatch.setenv("TESSELLUM_TANDEMX_USER", "user")
    monkeypatch.setenv("TESSELLUM_TANDEMX_PASSWORD", "secret")


def test_passthrough_pixels_equal_mapserv(wcs, creds, tmp_path):
    with settings_override(wcs_url=wcs.url):
        res = extract_raster_sync(TDX, SEAM_BBOX, tmp_path)
    assert res.protocol == "wcs" and res.crs == "EPSG:4326"
    assert res.provenance.startswith("WCS 2.0.1 GetCoverage: TDM_DEM__DEM")
    query = urllib.parse.unquote(wcs.requests[-1])
    assert "SUBSET=Long(-112.05,-111.95)" in query and "SUBSET=Lat(41.95,42.05)" in query
    status, headers, body = wcs.run_mapserv(query)  # the server's own answer, no HTTP
    assert status == 200 and headers["content-type"] == "image/tiff"
    ref, prof = read_geotiff_bytes(body, "mapserv")
    with rasterio.open(res.path) as ds:
        arr = ds.read(1)
        assert ds.transform == prof["transform"] == res.transform
        assert ds.crs == prof["crs"]
        assert ds.nodata == -32767.0  # the server declares none: the catalog's, finite
    assert arr.dtype == ref.dtype and arr.tobytes() == ref.tobytes()


def test_http_front_is_byte_for_byte(wcs):
    import httpx

    params = getcoverage_params("TDM_DEM__DEM", SEAM_BBOX)
    resp = httpx.get(wcs.url, params=params)
    _, _, body = wcs.run_mapserv(urllib.parse.unquote(str(resp.url.query, "ascii")))
    assert resp.status_code == 200 and resp.content == body


def test_exception_report_becomes_data_format_error(wcs, creds, tmp_path):
    cat = default_catalog().register(
        {**default_catalog().get(TDX).model_dump(), "coverage_id": "nope"}, replace=True
    )
    with (
        settings_override(wcs_url=wcs.url),
        pytest.raises(DataFormatError, match=r"NoSuchCoverage.*COVERAGEID=nope not found"),
    ):
        extract_raster_sync(TDX, SEAM_BBOX, tmp_path, catalog=cat)
    with (
        settings_override(wcs_url=wcs.url),
        pytest.raises(DataFormatError, match="does not intersect"),
    ):
        extract_raster_sync(TDX, (10.0, 10.0, 10.1, 10.1), tmp_path)
    assert not list(tmp_path.iterdir())


def test_missing_credentials_are_named(wcs, monkeypatch, tmp_path):
    monkeypatch.delenv("TESSELLUM_TANDEMX_USER", raising=False)
    with (
        settings_override(wcs_url=wcs.url),
        pytest.raises(ConfigurationError, match="TESSELLUM_TANDEMX_USER"),
    ):
        extract_raster_sync(TDX, SEAM_BBOX, tmp_path)


def test_exception_message_forms():
    xml = (
        b'<?xml version="1.0"?><ows:ExceptionReport><ows:Exception exceptionCode="InvalidSubsetting">'
        b"<ows:ExceptionText>bad\n  subset</ows:ExceptionText></ows:Exception></ows:ExceptionReport>"
    )
    assert exception_message(xml) == "InvalidSubsetting: bad subset"
    html = b"<html><head><title>502 Bad Gateway</title></head><body>x</body></html>"
    assert exception_message(html) == "502 Bad Gateway"
    legacy = b"<ServiceExceptionReport><ServiceException code='x'>old style</ServiceException>"
    assert exception_message(legacy) == "old style"


def test_non_geotiff_bytes_rejected():
    with pytest.raises(DataFormatError, match="not a TIFF"):
        read_geotiff_bytes(b"GIF89a....", "http://x/wcs")
    arr = np.zeros((4, 4), np.float32)
    from rasterio.io import MemoryFile

    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=4, height=4, count=1, dtype="float32") as ds:
            ds.write(arr, 1)
        data = mem.read()
    with pytest.raises(DataFormatError, match="no CRS"):
        read_geotiff_bytes(data, "http://x/wcs")
