"""World spec, part 2: the edge-case files and the benchmark files."""

from __future__ import annotations

import math
from typing import Any

from ._world_entry import entry as _entry

__all__ = ["CUSTOM_CRS", "bench_files", "edge_files"]

# ---------------------------------------------------------------------- edge cases
CUSTOM_CRS = (
    "+proj=laea +lat_0=41.7 +lon_0=-112.3 +x_0=1234.5 +y_0=-567.8 +ellps=GRS80 +units=m +no_defs"
)


def _edge_table() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, spec overrides, content overrides) for every edge-case file."""
    geo = {"crs": "EPSG:4326"}
    return [
        (
            "bigtiff",
            {
                "dtype": "uint16",
                "bigtiff": True,
                "predictor": 2,
                "blocksize": 128,
                "crs": "EPSG:32612",
                "utm": True,
            },
            {},
        ),
        (
            "big_endian",
            {
                "dtype": "int16",
                "driver": "GTiff",
                "byteorder": ">",
                "predictor": 2,
                "blocksize": 128,
                "nodata": -9999,
                "overviews": [2],
                **geo,
            },
            {},
        ),
        (
            "sparse",
            {
                "dtype": "uint16",
                "driver": "GTiff",
                "sparse": True,
                "blocksize": 64,
                "nodata": 0,
                **geo,
            },
            {},
        ),
        (
            "lzw",
            {"dtype": "uint16", "compression": "LZW", "predictor": 2, "blocksize": 128, **geo},
            {},
        ),
        (
            "packbits",
            {
                "dtype": "uint8",
                "driver": "GTiff",
                "compression": "PACKBITS",
                "blocksize": 128,
                **geo,
            },
            {},
        ),
        # GDAL applies no predictor with LZMA.
        (
            "lzma",
            {"dtype": "float32", "compression": "LZMA", "blocksize": 128, "nodata": -9999.0, **geo},
            {},
        ),
        (
            "uncompressed",
            {"dtype": "int32", "compression": "NONE", "blocksize": 128, "nodata": -9999, **geo},
            {},
        ),
        ("int8", {"dtype": "int8", "blocksize": 128, "nodata": -128, **geo}, {}),
        (
            "uint32",
            {
                "dtype": "uint32",
                "compression": "ZSTD",
                "predictor": 2,
                "blocksize": 128,
                "nodata": 4294967295,
                **geo,
            },
            {},
        ),
        (
            "float64_nan",
            {"dtype": "float64", "predictor": 3, "blocksize": 128, "nodata": math.nan, **geo},
            {},
        ),
        # GDAL 3.10 has no Float16 type: a Float32 band with NBITS=16 is stored as IEEE half.
        (
            "float16",
            {
                "dtype": "float32",
                "tiff_dtype": "float16",
                "nbits": 16,
                "driver": "GTiff",
                "blocksize": 128,
                **geo,
            },
            {},
        ),
        ("nbits1", {"dtype": "uint8", "nbits": 1, "driver": "GTiff", "blocksize": 128, **geo}, {}),
        (
            "nbits2",
            {
                "dtype": "uint8",
                "nbits": 2,
                "driver": "GTiff",
                "compression": "NONE",
                "blocksize": 128,
                **geo,
            },
            {},
        ),
        ("nbits4", {"dtype": "uint8", "nbits": 4, "driver": "GTiff", "blocksize": 128, **geo}, {}),
        (
            "nbits12",
            {
                "dtype": "uint16",
                "nbits": 12,
                "driver": "GTiff",
                "compression": "LZW",
                "blocksize": 128,
                **geo,
            },
            {},
        ),
        (
            "custom_crs",
            {
                "dtype": "float32",
                "predictor": 3,
                "blocksize": 128,
                "nodata": -9999.0,
                "crs": CUSTOM_CRS,
                "custom": True,
            },
            {},
        ),
        (
            "pixel_is_point",
            {"dtype": "int16", "blocksize": 128, "area_or_point": "Point", "nodata": -32768, **geo},
            {},
        ),
        (
            "antimeridian",
            {"dtype": "uint8", "blocksize": 128, "nodata": 255, "antimeridian": True, **geo},
            {},
        ),
        (
            "stripped",
            {
                "dtype": "uint16",
                "driver": "GTiff",
                "blocksize": None,
                "rows_per_strip": 16,
                "predictor": 2,
                **geo,
            },
            {},
        ),
        (
            "planar_separate",
            {
                "dtype": "uint16",
                "count": 3,
                "driver": "GTiff",
                "interleave": "BAND",
                "blocksize": 128,
                **geo,
            },
            {},
        ),
        (
            "internal_mask",
            {
                "dtype": "uint8",
                "count": 3,
                "driver": "GTiff",
                "interleave": "PIXEL",
                "photometric": "RGB",
                "blocksize": 128,
                "mask": True,
                **geo,
            },
            {},
        ),
        (
            "scale_offset",
            {
                "dtype": "int16",
                "blocksize": 128,
                "nodata": -32768,
                "scale": 0.01,
                "offset": -50.0,
                **geo,
            },
            {},
        ),
    ]


def edge_files(files: list, items: list) -> None:
    width, height = 300, 200
    for i, (name, spec, content) in enumerate(_edge_table()):
        spec = dict(spec)
        if spec.pop("utm", False):
            transform = [420000.0 + i * 4000, 30.0, 0.0, 4640000.0, 0.0, -30.0]
        elif spec.pop("custom", False):
            transform = [-7500.0, 50.0, 0.0, 5000.0, 0.0, -50.0]
        elif spec.pop("antimeridian", False):
            transform = [179.5, 1 / 300, 0.0, -16.5, 0.0, -1 / 300]
        else:
            lon0, lat0 = -113.4 + 0.35 * (i % 6), 41.0 - 0.25 * (i // 6)
            transform = [lon0, 0.001, 0.0, lat0, 0.0, -0.001]
        spec.setdefault("tiff_dtype", spec["dtype"])
        files.append(
            _entry(
                f"edge/{name}",
                f"data/edge-cases/{name}.tif",
                "edge-cases",
                f"edge-{name.replace('_', '-')}",
                "data",
                {"kind": "pattern", **content},
                width=width,
                height=height,
                transform=transform,
                **spec,
            )
        )
        items.append(
            {
                "id": f"edge-{name.replace('_', '-')}",
                "collection": "edge-cases",
                "datetime": f"2020-06-{1 + i:02d}T12:00:00Z",
                "properties": {"title": f"Edge case: {name}"},
            }
        )
    # Corrupt files: listed as files, never as STAC items.
    for name in ("truncated", "garbage"):
        files.append(
            _entry(
                f"edge/{name}",
                f"data/edge-cases/corrupt_{name}.tif",
                "edge-cases",
                None,
                "data",
                {"kind": "pattern"},
                dtype="uint16",
                width=width,
                height=height,
                blocksize=128,
                predictor=2,
                crs="EPSG:4326",
                transform=[-112.5, 0.001, 0.0, 40.0, 0.0, -0.001],
                corrupt=name,
            )
        )


# --------------------------------------------------------------------------- bench
def bench_files(files: list, items: list, n_many: int = 500) -> None:
    n = 10980
    files.append(
        _entry(
            "bench/s2_10980_deflate",
            "data/bench/s2_10980_deflate.tif",
            "bench-large",
            "bench-s2-10980-deflate",
            "data",
            {"kind": "bench_large", "scene": [300000.0, 4700040.0, n * 10.0]},
            dtype="uint16",
            width=n,
            height=n,
            predictor=2,
            nodata=0,
            crs="EPSG:32612",
            transform=[300000.0, 10.0, 0.0, 4700040.0, 0.0, -10.0],
            resampling="AVERAGE",
        )
    )
    items.append(
        {
            "id": "bench-s2-10980-deflate",
            "collection": "bench-large",
            "datetime": "2024-06-01T18:30:00Z",
            "properties": {"gsd": 10},
        }
    )
    for i in range(n_many):
        # Scattered footprints from a quasi-random (golden-ratio) sequence: no RNG state
        # in the spec, yet spread and overlapping.
        fx, fy = (i * 0.6180339887) % 1.0, (i * 0.7548776662) % 1.0
        x0 = 250000.0 + round(fx * 200000.0, -1)
        y0 = 4550000.0 + round(fy * 200000.0, -1)
        res = (10.0, 20.0, 30.0)[i % 3]
        item_id = f"bench-many-{i:04d}"
        files.append(
            _entry(
                f"bench-many/{i:04d}",
                f"data/bench-many/{item_id}.tif",
                "bench-many",
                item_id,
                "data",
                {"kind": "pattern"},
                dtype="uint16",
                width=256,
                height=256,
                blocksize=256,
                predictor=2,
                nodata=0,
                crs="EPSG:32612",
                transform=[x0, res, 0.0, y0, 0.0, -res],
            )
        )
        day = 1 + i % 28
        items.append(
            {
                "id": item_id,
                "collection": "bench-many",
                "datetime": f"2023-{1 + i % 12:02d}-{day:02d}T{i % 24:02d}:00:00Z",
                "properties": {},
            }
        )
