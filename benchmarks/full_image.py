"""``full_image``: read a whole 10980² uint16 DEFLATE/pred2 COG over HTTP.

Peers: rasterio with ``GDAL_NUM_THREADS=ALL_CPUS`` (fresh process per trial), and the
machine's decode ceiling: libdeflate + ``imagecodecs.delta_decode`` of every tile on
two threads from bytes already in memory (no network, no paste) — the upper bound for
any reader on this machine.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks._data import ensure_large_cog
from benchmarks.core import Benchmark, Case, CaseContext
from benchmarks.window_2048 import TUNED_GDAL

__all__ = ["BENCHMARK", "decode_ceiling", "rasterio_all_cpus"]

_tiles: dict[str, list[bytes]] = {}


def _prepare() -> dict[str, Path]:
    return {"cog": ensure_large_cog()}


def rasterio_all_cpus(ctx: CaseContext) -> dict[str, Any]:
    """rasterio reading band 1 whole, tuned GDAL settings with all cores."""
    import rasterio

    with rasterio.Env(**TUNED_GDAL), rasterio.open(f"/vsicurl/{ctx.url('cog')}") as src:
        arr = src.read(1)
    return {"array": arr}  # checked after the timer (core.checked)


def _load_tiles(path: str) -> list[bytes]:
    import tifffile

    if path not in _tiles:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            fh = tif.filehandle
            out = []
            for off, cnt in zip(page.dataoffsets, page.databytecounts, strict=True):
                fh.seek(off)
                out.append(fh.read(cnt))
            _tiles[path] = out
    return _tiles[path]


def warm_ceiling(ctx: CaseContext) -> None:
    """Load the tile bytes into memory before timing."""
    _load_tiles(str(ensure_large_cog()))


def decode_ceiling(ctx: CaseContext) -> dict[str, Any]:
    """Decode every full-resolution tile (bytes in memory) on two threads, each into its
    own reused buffer: libdeflate told the output size, no page faults — the most any
    reader can decode here. (Without ``out=``, ``deflate_decode`` does not know the size
    and grows its buffer: 2x slower, 540-573 against 272-313 ms, which made an earlier
    form of this ceiling half the real one.)"""
    import threading

    import imagecodecs
    import numpy as np

    tiles = _load_tiles(str(ensure_large_cog()))
    local = threading.local()

    def one(data: bytes) -> int:
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = np.empty(512 * 512 * 2, np.uint8)
        a = imagecodecs.deflate_decode(data, out=buf).view("<u2").reshape(512, 512)
        imagecodecs.delta_decode(a, axis=-1, out=a)
        return a.nbytes

    with ThreadPoolExecutor(2) as pool:
        total = sum(pool.map(one, tiles))
    return {"decoded_bytes": total}


BENCHMARK = Benchmark(
    name="full_image",
    description="whole 10980² uint16 DEFLATE/pred2 COG (484 tiles) over HTTP",
    prepare=_prepare,
    cases=(
        Case(
            "ours",
            "benchmarks.ours:full_image",
            warmup="benchmarks.ours:warm_source",
            description="tessellum read engine",
        ),
        Case(
            "rasterio-all-cpus",
            "benchmarks.full_image:rasterio_all_cpus",
            fresh_process=True,
            warmup="benchmarks.window_2048:gdal_warmup",
            description="rasterio, GDAL_NUM_THREADS=ALL_CPUS",
        ),
        Case(
            "decode-ceiling",
            "benchmarks.full_image:decode_ceiling",
            warmup="benchmarks.full_image:warm_ceiling",
            description="libdeflate+delta_decode on 2 threads, bytes in memory",
        ),
    ),
)
