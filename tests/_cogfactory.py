"""Deterministic GeoTIFF/COG writers for the ``tessellum.tiff`` tests (GDAL via rasterio).

Plain functions, not fixtures, so any test module (or benchmark) can call them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

__all__ = ["make_array", "patch_tag", "write_cog"]


def make_array(
    dtype: str, shape: tuple[int, int], count: int = 1, *, nbits: int | None = None, seed: int = 42
) -> np.ndarray:
    """Return a deterministic, compressible but non-trivial (count, h, w) array."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    bands = []
    for b in range(count):
        base = (xx * (b + 1) + yy * 3 + b * 17).astype(np.float64)
        noise = rng.integers(0, 8, size=shape)
        bands.append(base + noise)
    a = np.stack(bands)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return ((a - 300.0) * 0.37).astype(dt)
    if dt.kind == "c":
        return (a + 1j * a[::-1]).astype(dt)
    bits = nbits or dt.itemsize * 8
    ai = a.astype(np.int64)
    if bits >= 32:  # reach the extremes of wide types too
        ai = ai * np.int64(2654435761 if bits == 64 else 40503)  # wraps, deterministic
    if dt.kind == "u":
        out = ai.view(np.uint64)
        out = (out if bits == 64 else out % np.uint64(1 << bits)).astype(dt)
        if bits >= 32:
            out[:, 0, :2] = [np.iinfo(dt).max, np.iinfo(dt).max - 1]
        return out
    half = 1 << (bits - 1)
    out = ((ai % (2 * half)) - half).astype(dt) if bits < 64 else ai.astype(dt)
    if bits >= 32:
        out[:, 0, :2] = [np.iinfo(dt).min, np.iinfo(dt).max]
    return out


def write_cog(
    path: str | Path,
    *,
    dtype: str = "uint16",
    shape: tuple[int, int] = (600, 700),
    count: int = 1,
    compression: str | None = "deflate",
    predictor: int | None = None,
    blocksize: int = 256,
    overviews: Sequence[int] = (2, 4),
    crs: Any = "EPSG:32612",
    nodata: float | int | None = None,
    nbits: int | None = None,
    bigtiff: bool = False,
    byteorder: Literal["little", "big"] = "little",
    photometric: str | None = None,
    interleave: Literal["pixel", "band"] = "pixel",
    sparse: bool = False,
    stripped: bool = False,
    pixel_is_point: bool = False,
    driver: Literal["GTiff", "COG"] = "GTiff",
    layout: Literal["cog", "append"] = "cog",
    mask: bool | np.ndarray = False,
    scales: Sequence[float] | None = None,
    offsets: Sequence[float] | None = None,
    descriptions: Sequence[str] | None = None,
    transform: Any = None,
    creation_options: dict[str, Any] | None = None,
    data: np.ndarray | None = None,
) -> tuple[Path, np.ndarray]:
    """Write a deterministic GeoTIFF with GDAL and return ``(path, array_written)``.

    ``layout="cog"`` writes all IFDs first (``COPY_SRC_OVERVIEWS``) like a COG;
    ``layout="append"`` writes the image, then adds overviews in place, so the overview
    IFDs (and possibly the main one) land at the end of the file.
    ``sparse=True`` leaves the top-left 2x2 blocks empty (offset 0, byte count 0).
    ``mask`` writes an internal (per-dataset) mask: ``True`` masks the top-left corner,
    an array (0: masked) is written as it is.
    """
    path = Path(path)
    arr = make_array(dtype, shape, count, nbits=nbits) if data is None else data
    if sparse:
        fill = 0 if nodata is None else nodata
        arr = arr.copy()
        arr[:, : 2 * blocksize, : 2 * blocksize] = fill
    if transform is None:
        transform = from_origin(500000.0, 4600000.0, 10.0, 10.0)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "dtype": dtype,
        "width": shape[1],
        "height": shape[0],
        "count": count,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    opts: dict[str, Any] = {}
    if compression:
        opts["COMPRESS"] = compression.upper()
    if predictor:
        opts["PREDICTOR"] = predictor
    if bigtiff:
        opts["BIGTIFF"] = "YES"
    if nbits:
        opts["NBITS"] = nbits
    if sparse:
        opts["SPARSE_OK"] = "TRUE"
    if driver == "GTiff":
        opts["INTERLEAVE"] = interleave.upper()
        if byteorder == "big":
            opts["ENDIANNESS"] = "BIG"
        if photometric:
            opts["PHOTOMETRIC"] = photometric.upper()
        if stripped:
            opts["TILED"] = "NO"
            opts["BLOCKYSIZE"] = blocksize
        else:
            opts.update(TILED="YES", BLOCKXSIZE=blocksize, BLOCKYSIZE=blocksize)
    else:
        opts["BLOCKSIZE"] = blocksize
    opts.update(creation_options or {})

    def fill(dst: Any) -> None:
        dst.write(arr)
        if pixel_is_point:
            dst.update_tags(AREA_OR_POINT="Point")
        if scales is not None:
            dst.scales = tuple(scales)
        if offsets is not None:
            dst.offsets = tuple(offsets)
        if descriptions is not None:
            dst.descriptions = tuple(descriptions)
        if isinstance(mask, np.ndarray):
            dst.write_mask(mask)
        elif mask:
            m = np.full(shape, 255, np.uint8)
            m[: shape[0] // 3, : shape[1] // 4] = 0
            dst.write_mask(m)

    env = rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True, GDAL_TIFF_OVR_BLOCKSIZE=blocksize)
    with env:
        if layout == "append" and driver == "GTiff":
            with rasterio.open(path, "w", **profile, **opts) as dst:
                fill(dst)
            if overviews:
                with rasterio.open(path, "r+") as dst:
                    dst.build_overviews(list(overviews), Resampling.nearest)
            return path, arr
        # build in memory with overviews, then copy with the COG layout
        mem_bs = max(16, -(-blocksize // 16) * 16)
        mem_opts = {"TILED": "YES", "BLOCKXSIZE": mem_bs, "BLOCKYSIZE": mem_bs}
        with MemoryFile() as mf:
            with mf.open(**profile, **mem_opts) as tmp:
                fill(tmp)
                if overviews and driver == "GTiff":
                    tmp.build_overviews(list(overviews), Resampling.nearest)
            with mf.open() as src:
                if driver == "COG":
                    opts.setdefault("OVERVIEWS", "AUTO" if overviews else "NONE")
                    opts.setdefault("RESAMPLING", "NEAREST")
                    if overviews:
                        opts.setdefault("OVERVIEW_COUNT", len(overviews))
                    rasterio.shutil.copy(src, path, driver="COG", **opts)
                else:
                    rasterio.shutil.copy(
                        src, path, driver="GTiff", COPY_SRC_OVERVIEWS="YES", **opts
                    )
    return path, arr


def read_bytes(path: str | Path, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of a local file (shorter at EOF)."""
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(max(0, end - start))


class FileFetcher:
    """An async ``fetch(start, end)`` over a local file that counts its reads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.calls: list[tuple[int, int]] = []

    async def __call__(self, start: int, end: int) -> bytes:
        self.calls.append((start, end))
        return read_bytes(self.path, start, end)


def patch_tag(path: str | Path, tag: int, value: int, *, new_tag: int | None = None) -> None:
    """Overwrite the inline SHORT value of ``tag`` in the first IFD of a little-endian
    classic TIFF (and renumber the entry to ``new_tag`` when given): a file GDAL would
    not write, e.g. an unknown compression or predictor."""
    import struct

    buf = bytearray(Path(path).read_bytes())
    (ifd,) = struct.unpack_from("<I", buf, 4)
    (n,) = struct.unpack_from("<H", buf, ifd)
    for i in range(n):
        pos = ifd + 2 + 12 * i
        if struct.unpack_from("<H", buf, pos)[0] == tag:
            struct.pack_into("<H", buf, pos + 8, value)
            if new_tag is not None:
                struct.pack_into("<H", buf, pos, new_tag)
            Path(path).write_bytes(bytes(buf))
            return
    raise KeyError(f"tag {tag} not in the first IFD of {path}")
