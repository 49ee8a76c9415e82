"""``window_2048``: read a 2048x2048 window of a 10980² uint16 DEFLATE COG over HTTP.

The window (col 4000, row 3000) is not tile-aligned and touches 5x5 = 25 tiles of 512 px,
the typical shape of an AOI read from a Sentinel-2 band.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks._data import ensure_large_cog
from benchmarks.core import Benchmark, Case, CaseContext

__all__ = ["BENCHMARK", "gdal_warmup", "rasterio_default", "rasterio_tuned"]

WINDOW = {"col_off": 4000, "row_off": 3000, "width": 2048, "height": 2048}

# What a user who read the GDAL COG docs sets: no sidecar probing, one merged multi-range
# request per tile row, a block cache for the header, threads for decoding.
TUNED_GDAL = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
    "VSI_CACHE": "TRUE",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_NUM_THREADS": "ALL_CPUS",
}


def _prepare() -> dict[str, Path]:
    return {"cog": ensure_large_cog()}


def _read_window(ctx: CaseContext, options: dict[str, str]) -> dict[str, Any]:
    import rasterio
    from rasterio.windows import Window

    with rasterio.Env(**options), rasterio.open(f"/vsicurl/{ctx.url('cog')}") as src:
        arr = src.read(1, window=Window(**ctx.params["window"]))
    return {"array": arr}  # checked after the timer (core.checked)


def gdal_warmup(ctx: CaseContext) -> None:
    """Pay GDAL's one-off costs before timing, as a long-lived process would have.

    Driver registration and the PROJ database (opened on the first CRS); not the HTTP
    connection, the header or the block cache, which are what the trial measures.
    """
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.io import MemoryFile

    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 1, "dtype": "uint16"}
    with rasterio.Env(), MemoryFile() as mem:
        with mem.open(**profile, crs="EPSG:32633", transform=Affine.identity()) as dst:
            dst.write(np.zeros((1, 8, 8), dtype="uint16"))
        with mem.open() as src:
            src.crs.to_epsg()


def rasterio_default(ctx: CaseContext) -> dict[str, Any]:
    """rasterio with GDAL's default settings."""
    return _read_window(ctx, {})


def rasterio_tuned(ctx: CaseContext) -> dict[str, Any]:
    """rasterio with the usual cloud-COG GDAL settings."""
    return _read_window(ctx, TUNED_GDAL)


BENCHMARK = Benchmark(
    name="window_2048",
    description="2048x2048 window (25 tiles) of a 10980² uint16 DEFLATE/pred2 COG over HTTP",
    prepare=_prepare,
    params={"window": WINDOW},
    cases=(
        Case(
            "ours",
            "benchmarks.ours:window_2048",
            warmup="benchmarks.ours:warm_source",
            description="tessellum read engine (header from the collection)",
        ),
        Case(
            "rasterio-default",
            "benchmarks.window_2048:rasterio_default",
            fresh_process=True,
            warmup="benchmarks.window_2048:gdal_warmup",
            description="rasterio 1.4 / GDAL 3.10, default settings",
        ),
        Case(
            "rasterio-tuned",
            "benchmarks.window_2048:rasterio_tuned",
            fresh_process=True,
            warmup="benchmarks.window_2048:gdal_warmup",
            description="rasterio with cloud-COG GDAL settings",
        ),
    ),
)
