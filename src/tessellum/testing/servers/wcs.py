"""A real WCS 2.0.1 server on 127.0.0.1: MapServer's ``mapserv`` CGI behind a tiny
Python HTTP front that runs it once per request.

    >>> with WcsServer(dem_tile_paths, coverage_id="elevation") as wcs:
    ...     httpx.get(wcs.url, params={"SERVICE": "WCS", "REQUEST": "GetCapabilities"})

The front injects ``map=<mapfile>`` into every query, so ``.url`` is a plain endpoint.
:meth:`WcsServer.run_mapserv` runs the same CGI directly (no HTTP), which tests use as
the reference answer.
"""

from __future__ import annotations

import os
import subprocess
import threading
import urllib.parse
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ._process import ManagedServer, ServerUnavailable, find_executable

__all__ = ["WcsServer", "find_mapserv", "write_vrt"]

_IMAGEMODE = {
    "uint8": "BYTE",
    "int16": "INT16",
    "uint16": "INT16",
    "int32": "INT32",
    "float32": "FLOAT32",
}
_GDAL_TYPE = {
    "uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16",
    "uint32": "UInt32", "int32": "Int32", "float32": "Float32", "float64": "Float64",
}  # fmt: skip


def find_mapserv() -> Path | None:
    """The ``mapserv`` CGI binary (Debian: ``cgi-mapserver``), or None."""
    return find_executable("mapserv", ["/usr/lib/cgi-bin", "/usr/bin"])


def write_vrt(tifs: Sequence[str | os.PathLike[str]], path: Path) -> Path:
    """A GDAL VRT mosaicking ``tifs`` (one band, same CRS and pixel size, grid-aligned)."""
    import rasterio

    infos = []
    for tif in tifs:
        with rasterio.open(tif) as ds:
            infos.append((str(Path(tif).resolve()), ds.transform, ds.width, ds.height))
            dtype, nodata, crs = ds.dtypes[0], ds.nodata, ds.crs
    res_x, res_y = infos[0][1].a, infos[0][1].e
    left = min(t.c for _, t, _, _ in infos)
    top = max(t.f for _, t, _, _ in infos)
    right = max(t.c + w * res_x for _, t, w, _ in infos)
    bottom = min(t.f + h * res_y for _, t, _, h in infos)
    width, height = round((right - left) / res_x), round((bottom - top) / res_y)
    gdal_type = _GDAL_TYPE[dtype]
    nd = f"<NoDataValue>{nodata!r}</NoDataValue>" if nodata is not None else ""
    sources = []
    for src, t, w, h in infos:
        xoff, yoff = round((t.c - left) / res_x), round((t.f - top) / res_y)
        sources.append(
            f'<ComplexSource><SourceFilename relativeToVRT="0">{src}</SourceFilename>'
            f"<SourceBand>1</SourceBand>"
            f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
            f'<DstRect xOff="{xoff}" yOff="{yoff}" xSize="{w}" ySize="{h}"/>'
            + (f"<NODATA>{nodata!r}</NODATA>" if nodata is not None else "")
            + "</ComplexSource>"
        )
    gt = f"{left!r}, {res_x!r}, 0.0, {top!r}, 0.0, {res_y!r}"
    path.write_text(
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n'
        f"  <SRS>{crs.to_wkt()}</SRS>\n  <GeoTransform>{gt}</GeoTransform>\n"
        f'  <VRTRasterBand dataType="{gdal_type}" band="1">{nd}\n    '
        + "\n    ".join(sources)
        + "\n  </VRTRasterBand>\n</VRTDataset>\n"
    )
    return path


class WcsServer(ManagedServer):
    """MapServer WCS 2.0.1 serving one raster layer as coverage ``coverage_id``.

    Args:
        source: one GeoTIFF / VRT path, or several same-grid GeoTIFFs (mosaicked
            through a VRT written in the server's temp dir).
        coverage_id: the coverage (and MapServer layer) name.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        coverage_id: str = "elevation",
    ) -> None:
        super().__init__()
        self.sources = (
            [Path(source)] if isinstance(source, str | os.PathLike) else [Path(p) for p in source]
        )
        self.coverage_id = coverage_id
        self.port = 0
        self.mapfile: Path | None = None
        self.config: Path | None = None
        self.requests: list[str] = []
        """Query strings received, in order."""
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._mapserv: Path | None = None

    @property
    def url(self) -> str:
        """The WCS endpoint (``map=`` is added by the front)."""
        return f"http://127.0.0.1:{self.port}/wcs"

    # -- mapserv -------------------------------------------------------------------
    def run_mapserv(self, query: str) -> tuple[int, dict[str, str], bytes]:
        """Run the CGI for ``query`` (without ``map=``): ``(status, headers, body)``."""
        assert self._mapserv is not None and self.mapfile is not None and self.config
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "MAPSERVER_CONFIG_FILE": str(self.config),
            "REQUEST_METHOD": "GET",
            "QUERY_STRING": f"map={self.mapfile}&{query}",
        }
        out = subprocess.run(
            [str(self._mapserv)], env=env, capture_output=True, timeout=60, check=False
        ).stdout
        head, sep, body = out.partition(b"\r\n\r\n")
        if not sep:
            head, _, body = out.partition(b"\n\n")
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        status = int(headers.pop("status", "200").split()[0])
        return status, headers, body

    def _write_config(self) -> None:
        import rasterio

        tmp = self.tmp_dir
        data = self.sources[0]
        if len(self.sources) > 1 or data.suffix.lower() not in (".vrt", ".tif", ".tiff"):
            data = write_vrt(self.sources, tmp / "coverage.vrt")
        with rasterio.open(data) as ds:
            b, (rx, ry) = ds.bounds, ds.res
            w, h, dtype, nodata = ds.width, ds.height, ds.dtypes[0], ds.nodata
            epsg = ds.crs.to_epsg()
        if epsg is None:
            raise ServerUnavailable("WcsServer needs a source CRS with an EPSG code")
        mode = _IMAGEMODE.get(dtype, "FLOAT32")
        extent = f"{b.left!r} {b.bottom!r} {b.right!r} {b.top!r}"
        processing = f'PROCESSING "NODATA={nodata!r}"' if nodata is not None else ""
        nil = f'"wcs_nilvalues" "{nodata!r}"' if nodata is not None else ""
        self.mapfile = tmp / "wcs.map"
        self.mapfile.write_text(
            f"""MAP
  NAME "tessellum"
  EXTENT {extent}
  SIZE {w} {h}
  PROJECTION "init=epsg:{epsg}" END
  WEB
    METADATA
      "ows_enable_request" "*"
      "ows_onlineresource" "{self.url}?"
      "wcs_srs" "EPSG:{epsg}"
      "wcs_label" "tessellum test WCS"
    END
  END
  OUTPUTFORMAT
    NAME "GEOTIFF"
    DRIVER "GDAL/GTiff"
    MIMETYPE "image/tiff"
    IMAGEMODE {mode}
    EXTENSION "tif"
  END
  LAYER
    NAME "{self.coverage_id}"
    TYPE RASTER
    STATUS ON
    DATA "{data}"
    PROJECTION "init=epsg:{epsg}" END
    {processing}
    METADATA
      "wcs_label" "{self.coverage_id}"
      "wcs_rangeset_name" "{self.coverage_id}"
      "wcs_bandcount" "1"
      "wcs_imagemode" "{mode}"
      "wcs_formats" "GEOTIFF"
      "wcs_nativeformat" "GTiff"
      "wcs_extent" "{extent}"
      "wcs_resolution" "{rx!r} {ry!r}"
      "wcs_size" "{w} {h}"
      "wcs_srs" "EPSG:{epsg}"
      {nil}
    END
  END
END
"""
        )
        self.config = tmp / "mapserver.conf"
        pattern = "^" + str(tmp).replace(".", r"\.") + "/"
        self.config.write_text(f'CONFIG\n  ENV\n    MS_MAP_PATTERN "{pattern}"\n  END\nEND\n')

    # -- HTTP front ----------------------------------------------------------------
    def _start(self) -> None:
        from ._process import free_port

        self._mapserv = find_mapserv()
        if self._mapserv is None:
            raise ServerUnavailable(
                "mapserv not found: install cgi-mapserver (scripts/setup-system.sh)"
            )
        self.port = free_port()
        self._write_config()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                query = urllib.parse.urlsplit(self.path).query
                server.requests.append(query)
                status, headers, body = server.run_mapserv(query)
                self.send_response(status)
                self.send_header("Content-Type", headers.get("content-type", "text/plain"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="tessellum-wcs", daemon=True
        )
        self._thread.start()

    def _stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
