"""Seeded differential test of every level of odd GeoTIFFs against GDAL (rasterio).

Where tests/test_read_differential.py draws the layouts and reads at native resolution,
this one draws the rest of GDAL's creation options: every codec GDAL writes here
(LZMA, the LERC family with and without MAX_Z_ERROR, WEBP, JPEG grey and RGB, NBITS
1/2/4/12) with NaNs and alpha samples, non-square tiles (16..1024) and strips, overviews
of odd factors (3, 5, 9) built with nearest or average, internal masks, sparse blocks,
non-square pixels, big-endian and BigTIFF files. Each file is read through
``read_window`` at full resolution and at each overview's own grid, over the whole level
and random windows, and compared with that level as GDAL reads it (``overview_level``).

It found: multi-band LERC tiles with NaNs (one band per sample), LERC in big-endian
files (samples byte-swapped), LERC with the alpha kept as the blob's mask, and overviews
whose rounded size makes their pixels non-square (read from the full resolution).
``TESSELLUM_CODEC_FUZZ_CASES=<n>`` runs seeds 0..n-1 instead of the default 16. YCbCr
JPEG is compared within 64 DN, under 10 on average (chroma upsampling differs, see
test_tiff_decode.py).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import MemoryFile

from tessellum.collection import build_from_files, build_from_table
from tessellum.read.cache import default_tile_cache
from test_read_differential import gdal_valid_and_fill

SEEDS = range(int(os.environ.get("TESSELLUM_CODEC_FUZZ_CASES", "16")))
DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"]
CODECS = ["NONE", "DEFLATE", "LZW", "ZSTD", "LZMA", "LERC", "LERC_DEFLATE", "LERC_ZSTD",
          "JPEG", "WEBP", "PACKBITS"]  # fmt: skip
LERC = ("LERC", "LERC_DEFLATE", "LERC_ZSTD")
FACTORS = [[], [2], [3], [2, 4], [3, 9], [2, 5, 10], [4], [2, 4, 8, 16]]


@pytest.fixture(autouse=True)
def _fresh_cache():
    default_tile_cache().clear()
    yield
    default_tile_cache().clear()


def draw_case(seed: int) -> dict[str, Any]:
    """One file's options (a pure function of the seed); codec by seed, the rest random."""
    rng = np.random.default_rng([seed, 0])
    codec = CODECS[seed % len(CODECS)]
    driver = str(rng.choice(["GTiff", "GTiff", "COG"]))
    dtype, count, nbits, photometric = str(rng.choice(DTYPES)), int(rng.integers(1, 5)), None, None
    if codec == "JPEG":
        dtype, count = "uint8", int(rng.choice([1, 3]))
        photometric = "YCBCR" if count == 3 and rng.random() < 0.6 else None
    elif codec == "WEBP":
        dtype, count = "uint8", int(rng.choice([3, 4]))
    elif driver == "GTiff" and codec not in LERC and rng.random() < 0.2:
        nbits = int(rng.choice([1, 2, 4, 12]))
        dtype = "uint16" if nbits == 12 else "uint8"
    is_float = dtype.startswith("float")
    opts: dict[str, Any] = {} if codec == "NONE" else {"COMPRESS": codec}
    if codec in ("DEFLATE", "LZW", "ZSTD", "LZMA") and nbits is None:
        predictor = int(rng.choice([1, 2, 3] if is_float else [1, 2]))
        if predictor > 1:
            opts["PREDICTOR"] = predictor
    if codec in LERC and rng.random() < 0.5:
        opts["MAX_Z_ERROR"] = float(rng.choice([0.5, 2.0]))
    if codec in ("JPEG", "WEBP") and rng.random() < 0.5:
        opts["QUALITY"] = int(rng.integers(30, 101))
    if rng.random() < 0.2:
        opts["BIGTIFF"] = "YES"
    tiled = driver == "COG" or photometric == "YCBCR" or rng.random() < 0.6
    if driver == "COG":
        opts["BLOCKSIZE"] = int(rng.choice([16, 64, 128, 256, 512]))
    else:
        # libtiff loses LERC float values whose byte-swapped bits are a NaN: not ours
        if rng.random() < 0.25 and not (codec in LERC and is_float):
            opts["ENDIANNESS"] = "BIG"
        if count > 1 and photometric is None and codec != "WEBP" and rng.random() < 0.5:
            opts["INTERLEAVE"] = "BAND"
        if photometric:
            opts["PHOTOMETRIC"] = photometric
        if tiled:
            bx, by = (int(16 * rng.integers(1, 65)) for _ in range(2))
            opts.update(TILED="YES", BLOCKXSIZE=bx, BLOCKYSIZE=by)
        else:
            rows = [1, 3, 7, 16, 64, 333, 2000] if codec != "JPEG" else [8, 16, 64]
            opts.update(TILED="NO", BLOCKYSIZE=int(rng.choice(rows)))
        if nbits:
            opts["NBITS"] = nbits
    nodata = None
    if codec not in ("JPEG", "WEBP"):
        kind = str(rng.choice(["none", "zero", "max", "neg", *(["nan"] * 2 * is_float)]))
        if kind == "neg" and (dtype.startswith("u") or nbits):
            kind = "max"
        if kind == "max" and nbits:
            kind = "zero"
        info = np.finfo(dtype) if is_float else np.iinfo(dtype)
        nodata = {"none": None, "zero": 0, "nan": math.nan, "max": info.max.item() if is_float else int(info.max),
                  "neg": -128 if dtype == "int8" else -9999}[kind]  # fmt: skip
    width, height = (int(v) for v in rng.integers(17, 800, 2))
    res = float(rng.choice([0.5, 10.0, 30.0, 7.3]))
    if rng.random() < 0.5:
        opts["SPARSE_OK"] = "TRUE"
    return {
        "seed": seed, "driver": driver, "codec": codec, "dtype": dtype, "count": count,
        "nbits": nbits, "nodata": nodata, "width": width, "height": height, "opts": opts,
        "mask": bool(rng.random() < 0.3), "alpha01": bool(count in (2, 4) and dtype == "uint8"),
        "overviews": [f for f in FACTORS[int(rng.integers(0, len(FACTORS)))]
                      if min(width, height) // f >= 2],
        "resampling": str(rng.choice(["nearest", "average"])),
        "transform": (float(rng.uniform(3e5, 6e5)), res, 0.0, float(rng.uniform(1e6, 5e6)),
                      0.0, -res * (1.0 if rng.random() < 0.8 else 1.37)),
    }  # fmt: skip


def _pixels(case: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    rng = np.random.default_rng([case["seed"], 1])
    c, h, w = case["count"], case["height"], case["width"]
    yy, xx = np.mgrid[0:h, 0:w]
    dt = np.dtype(case["dtype"])
    if case["codec"] in ("JPEG", "WEBP"):  # smooth: lossy codecs stay close
        data = np.stack([128 + 90 * np.sin(xx / (17.0 + 9 * b)) * np.cos(yy / (23.0 + 5 * b))
                         for b in range(c)]).round().astype(dt)  # fmt: skip
    elif case["nbits"]:
        data = rng.integers(0, 1 << case["nbits"], (c, h, w)).astype(dt)
    elif dt.kind == "f":
        data = ((xx * (np.arange(c)[:, None, None] + 1) + yy * 3) * 0.37 - 50).astype(dt)
        data += rng.normal(0, 3, data.shape).astype(dt)
        data.flat[rng.integers(0, data.size, 30)] = np.nan  # one band's NaNs, not all
    else:
        info = np.iinfo(dt)
        base = xx * (np.arange(c)[:, None, None] + 1) + yy * 3 + rng.integers(0, 8, (c, h, w))
        span = int(info.max) - int(info.min) + 1
        data = ((base * (1 if dt.itemsize < 4 else 40503)) % span + int(info.min)).astype(dt)
    if case["alpha01"]:  # an alpha of only 0 and 255: libtiff's LERC keeps it as the mask
        data[-1] = np.where((yy // 37 + xx // 53) % 3 == 0, 0, 255)
    if case["nodata"] is not None:
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(2, max(3, min(h, w) // 3))
        data[:, (yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = case["nodata"]
    if "SPARSE_OK" in case["opts"]:  # blocks left out of the file
        data[:, : int(rng.integers(1, h + 1)), : int(rng.integers(1, w + 1))] = case["nodata"] or 0
    mask = None
    if case["mask"]:
        mask = np.where((yy - h // 2) ** 2 + (xx - w // 3) ** 2 < (min(h, w) // 3) ** 2, 0, 255)
        mask = mask.astype(np.uint8)
    return data, mask


def write_case(case: dict[str, Any], path: Path) -> None:
    """Write the case with GDAL (COG: through the COG driver, its own overviews)."""
    data, mask = _pixels(case)
    profile = dict(driver="GTiff", dtype=case["dtype"], width=case["width"],
                   height=case["height"], count=case["count"], crs="EPSG:32611",
                   transform=Affine.from_gdal(*case["transform"]), nodata=case["nodata"])  # fmt: skip
    opts = dict(case["opts"])
    if case["alpha01"] and case["count"] == 2 and case["driver"] == "GTiff":
        opts["ALPHA"] = "YES"  # grey + alpha (4 Byte bands are RGBA by default)

    def fill(dst: Any) -> None:
        dst.write(data)
        if mask is not None:
            dst.write_mask(mask)

    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        if case["driver"] == "GTiff":
            with rasterio.open(path, "w", **profile, **opts) as dst:
                fill(dst)
            if case["overviews"]:
                with rasterio.open(path, "r+") as dst:
                    dst.build_overviews(case["overviews"], Resampling[case["resampling"]])
            return
        with MemoryFile() as mf:
            with mf.open(**profile) as tmp:
                fill(tmp)
            with mf.open() as src:
                levels = len(case["overviews"])
                opts.update(OVERVIEWS="AUTO" if levels else "NONE",
                            RESAMPLING=case["resampling"].upper())  # fmt: skip
                if levels:
                    opts["OVERVIEW_COUNT"] = levels
                rasterio.shutil.copy(src, path, driver="COG", **opts)


def gdal_level(path: Path, level: int | None) -> tuple[np.ndarray, np.ndarray, Any, Affine]:
    """A level as GDAL reads it: pixels, which are data (mask, nodata, NaN), the fill."""
    with rasterio.open(path, **({} if level is None else {"overview_level": level})) as ds:
        data, masks, nodata, transform = ds.read(), ds.read_masks(), ds.nodata, ds.transform
    keep, fill = gdal_valid_and_fill(data, masks, nodata)
    return data, keep, fill, transform


@pytest.mark.filterwarnings("ignore::rasterio.errors.NodataShadowWarning")
@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed{s}")
def test_every_level_matches_gdal(tmp_path: Path, seed: int) -> None:
    case = draw_case(seed)
    path = tmp_path / f"case{seed}.tif"
    try:
        write_case(case, path)
    except rasterio.errors.RasterioError as exc:  # a combination GDAL refuses
        pytest.skip(f"GDAL refuses {case['opts']}: {exc}")
    n = case["count"]
    bands = [f"b{b}" for b in range(n)]
    if n == 1:
        coll = build_from_files([str(path)], name="codecs", progress=False)
        bands = ["data"]
    else:
        table = pa.table({"href": [str(path)], "id": ["r"]})
        coll = build_from_table(table, name="codecs", progress=False,
                                band_index_map={b: i for i, b in enumerate(bands)})  # fmt: skip
    assert not coll.errors().num_rows, (coll.errors().to_pylist(), case)
    with rasterio.open(path) as ds:
        levels = [None, *range(len(ds.overviews(1)))]
    # YCbCr JPEG: chroma upsampled differently (exactly as tifffile, see
    # test_tiff_decode.py): a few DN on average, more at sharp colour edges of overviews
    tol = 64 if case["codec"] == "JPEG" and n == 3 else 0
    rng = np.random.default_rng([seed, 2])
    for level in levels:
        data, keep, fill, t = gdal_level(path, level)
        _, h, w = data.shape
        windows = [(0, 0, h, w)]
        for _ in range(2):
            wr, wc = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
            windows.append(
                (int(rng.integers(0, h - wr + 1)), int(rng.integers(0, w - wc + 1)), wr, wc)
            )
        for r0, c0, wr, wc in windows:
            (left, top), (right, bottom) = t * (c0, r0), t * (c0 + wc, r0 + wr)
            res = {} if level is None else {"res": (abs(t.a), abs(t.e))}  # the level's grid
            got = coll.read_window(bounds=(left, bottom, right, top), bands=bands, **res)
            want = data[:, r0 : r0 + wr, c0 : c0 + wc]
            ok = keep[:, r0 : r0 + wr, c0 : c0 + wc]
            where = f"level {level}, window {(r0, c0, wr, wc)} of {case}"
            assert got.shape == want.shape and got.dtype == want.dtype, where
            is_fill = np.isnan(got) if isinstance(fill, float) and math.isnan(fill) else got == fill
            diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
            bad = (ok & ~(diff <= tol)) | (~ok & ~is_fill)
            assert not bad.any(), f"{int(bad.sum())} pixels differ from GDAL at {where}"
            assert not tol or diff[ok].mean() < 10, f"mean error {diff[ok].mean()} at {where}"
