"""Write world files with GDAL (rasterio): COG driver, plain GTiff, corrupt copies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._world_render import bench_large_rows, render, sparse_block_written

__all__ = ["write_entry"]

_PREDICTOR_COG = {1: "NO", 2: "STANDARD", 3: "FLOATING_POINT"}


def _base_profile(spec: dict[str, Any]) -> dict[str, Any]:
    from affine import Affine

    return {
        "width": spec["width"],
        "height": spec["height"],
        "count": spec["count"],
        "dtype": spec["dtype"],
        "crs": spec["crs"],
        "transform": Affine.from_gdal(*spec["transform"]),
        "nodata": spec["nodata"],
    }


def _decorate(ds: Any, spec: dict[str, Any]) -> None:
    """Metadata every writer sets on the dataset it fills."""
    if spec["area_or_point"] == "Point":
        ds.update_tags(AREA_OR_POINT="Point")
    if spec["scale"] is not None or spec["offset"] is not None:
        ds.scales = (spec["scale"] or 1.0,) * spec["count"]
        ds.offsets = (spec["offset"] or 0.0,) * spec["count"]
    if spec["photometric"] in ("RGB", "YCBCR"):
        from rasterio.enums import ColorInterp

        ci = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        ds.colorinterp = ci + [ColorInterp.undefined] * (spec["count"] - 3)


def _cog_options(spec: dict[str, Any]) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "COMPRESS": spec["compression"],
        "BLOCKSIZE": spec["blocksize"],
        "BIGTIFF": "YES" if spec["bigtiff"] else "NO",
        "OVERVIEW_RESAMPLING": spec["resampling"],
    }
    if spec["predictor"] > 1:
        opts["PREDICTOR"] = _PREDICTOR_COG[spec["predictor"]]
    if spec["overviews"]:
        opts["OVERVIEW_COUNT"] = len(spec["overviews"])
    else:
        opts["OVERVIEWS"] = "NONE"
    if spec["quality"] is not None:
        opts["QUALITY"] = spec["quality"]
    if spec["compression"].startswith("LERC"):
        opts["MAX_Z_ERROR"] = 0  # lossless
    if spec["nbits"]:
        opts["NBITS"] = spec["nbits"]
    return opts


def _write_cog(path: Path, spec: dict[str, Any], data: np.ndarray, **extra: Any) -> None:
    import rasterio
    import rasterio.shutil
    from rasterio.io import MemoryFile

    with MemoryFile() as mem, mem.open(driver="GTiff", **_base_profile(spec)) as src:
        src.write(data)
        _decorate(src, spec)
        rasterio.shutil.copy(src, str(path), driver="COG", **_cog_options(spec), **extra)


def _write_gtiff(path: Path, spec: dict[str, Any], data: np.ndarray, mask: np.ndarray | None):
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    opts: dict[str, Any] = {
        "COMPRESS": spec["compression"],
        "BIGTIFF": "YES" if spec["bigtiff"] else "NO",
        "INTERLEAVE": spec["interleave"],
    }
    if spec["blocksize"]:
        opts.update(TILED="YES", BLOCKXSIZE=spec["blocksize"], BLOCKYSIZE=spec["blocksize"])
    else:
        opts.update(TILED="NO", BLOCKYSIZE=spec["rows_per_strip"])
    if spec["predictor"] > 1:
        opts["PREDICTOR"] = spec["predictor"]
    if spec["byteorder"] == ">":
        opts["ENDIANNESS"] = "BIG"
    if spec["sparse"]:
        opts["SPARSE_OK"] = "TRUE"
    if spec["nbits"]:
        opts["NBITS"] = spec["nbits"]
    if spec["photometric"] != "MINISBLACK":
        opts["PHOTOMETRIC"] = spec["photometric"]
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
        rasterio.open(path, "w", driver="GTiff", **_base_profile(spec), **opts) as ds,
    ):
        _decorate(ds, spec)
        if spec["sparse"]:
            bs = spec["blocksize"]
            for by in range(-(-spec["height"] // bs)):
                for bx in range(-(-spec["width"] // bs)):
                    if sparse_block_written(bx, by):
                        win = Window(bx * bs, by * bs, bs, bs).intersection(
                            Window(0, 0, spec["width"], spec["height"])
                        )
                        r, c = win.toslices()
                        ds.write(data[:, r, c], window=win)
        else:
            ds.write(data)
        if mask is not None:
            ds.write_mask(mask)
        if spec["overviews"]:
            ds.build_overviews(spec["overviews"], getattr(Resampling, spec["resampling"].lower()))


def _write_bench_large(path: Path, entry: dict[str, Any], seed: int) -> None:
    """Stream the 10980^2 scene in tile rows into a ZSTD-1 GTiff, then COG-translate it."""
    import rasterio
    import rasterio.shutil
    from rasterio.windows import Window

    spec = entry["spec"]
    tmp = path.with_suffix(".stage.tif")
    bs = spec["blocksize"]
    with rasterio.open(
        tmp, "w", driver="GTiff", **_base_profile(spec), TILED="YES", BLOCKXSIZE=bs,
        BLOCKYSIZE=bs, COMPRESS="ZSTD", ZSTD_LEVEL=1, BIGTIFF="NO",
    ) as ds:  # fmt: skip
        for row0 in range(0, spec["height"], bs):
            row1 = min(row0 + bs, spec["height"])
            block = bench_large_rows(entry, seed, row0, row1)
            ds.write(block, window=Window(0, row0, spec["width"], row1 - row0))
    with rasterio.open(tmp) as src:
        rasterio.shutil.copy(src, str(path), driver="COG", NUM_THREADS=2, **_cog_options(spec))
    tmp.unlink()


def _corrupt(path: Path, entry: dict[str, Any], seed: int) -> None:
    """Write a valid COG, then break it: cut mid tile data, or overwrite the header."""
    import tifffile

    spec = entry["spec"]
    data, _ = render(entry, seed)
    _write_cog(path, spec, data)
    raw = path.read_bytes()
    if spec["corrupt"] == "truncated":
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            offsets, counts = page.dataoffsets, page.databytecounts
        mid = len(offsets) // 2
        path.write_bytes(raw[: offsets[mid] + counts[mid] // 2])
    else:
        junk = np.random.default_rng([seed, 404]).integers(0, 256, 256, dtype=np.uint8).tobytes()
        path.write_bytes(b"GARBAGE!" + junk + raw[8 + len(junk) :])


def write_entry(root: Path, entry: dict[str, Any], seed: int) -> None:
    """Write one world file below ``root`` as its spec says."""
    path = root / entry["relpath"]
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = entry["spec"]
    if spec["corrupt"]:
        _corrupt(path, entry, seed)
    elif entry["content"]["kind"] == "bench_large":
        _write_bench_large(path, entry, seed)
    else:
        data, mask = render(entry, seed)
        if spec["driver"] == "COG":
            _write_cog(path, spec, data)
        else:
            _write_gtiff(path, spec, data, mask)
