"""Inputs of the ``timeseries`` and ``points`` benchmarks: a stack of same-grid COGs.

``ensure_series()`` writes 30 uint16 DEFLATE/predictor-2 COGs (2048², 512 px tiles,
overviews, 10 m pixels in EPSG:32612), one per date, every 12 days from 2024-01-05, to
``.cache/bench/series_v1/`` (about 15 s on 2 cores the first time, reused afterwards).
Pixel values are a smooth reflectance-like field that drifts with the date plus noise,
1..10000, nodata 0 (never present), so checksums of any read are comparable across
engines. Everything is deterministic; the AOIs and points derive from the same constants.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._data import CACHE_DIR, to_cog

__all__ = [
    "CRS",
    "DATES",
    "RES",
    "SERIES_DIR",
    "SIZE",
    "TRANSFORM",
    "aoi_boxes",
    "aoi_windows",
    "ensure_series",
    "footprint_lonlat",
    "random_points",
]

# Bump the suffix when the recipe changes, so stale caches are not reused.
SERIES_DIR = CACHE_DIR / "series_v1"
N_DATES = 30
SIZE = 2048
TILE = 512
RES = 10.0
CRS = "EPSG:32612"  # UTM 12N (Utah)
ORIGIN = (420000.0, 4600000.0)  # upper-left corner (x, y)
TRANSFORM = (RES, 0.0, ORIGIN[0], 0.0, -RES, ORIGIN[1])  # affine a, b, c, d, e, f
DATES = [dt.datetime(2024, 1, 5, 18, 0, tzinfo=dt.UTC) + dt.timedelta(days=12 * i) for i in range(N_DATES)]  # fmt: skip

# Four 256² chips, not tile-aligned: they touch 4, 2, 1 and 2 tiles of 512 px.
CHIP = 256
AOI_OFFSETS = [(400, 380), (1100, 1400), (1620, 100), (1450, 1694)]  # (row, col)


def _name(i: int) -> str:
    return f"t{DATES[i]:%Y%m%d}.tif"


def _field(i: int) -> np.ndarray:
    """Date ``i``'s image: smooth field with a seasonal drift plus noise (uint16, 1..10000)."""
    y = np.arange(SIZE, dtype=np.float32)[:, None] / SIZE
    x = np.arange(SIZE, dtype=np.float32)[None, :] / SIZE
    season = np.float32(np.sin(2 * np.pi * i / N_DATES))
    z = (
        3000.0
        + 1500.0 * np.sin(2 * np.pi * (2 * x + 0.5 * y) + season)
        + 1200.0 * np.cos(2 * np.pi * (1.5 * y - x)) * (1.0 + 0.3 * season)
        + 500.0 * np.sin(2 * np.pi * 9 * x) * np.cos(2 * np.pi * 7 * y)
    )
    z += np.random.default_rng(1000 + i).normal(0.0, 40.0, z.shape).astype(np.float32)
    return np.clip(z, 1, 10000).astype(np.uint16)


def _write_cog(i: int, target: Path, tmp: Path) -> None:
    import rasterio
    from affine import Affine

    raw = tmp / f"raw{i}.tif"
    profile = {
        "driver": "GTiff",
        "width": SIZE,
        "height": SIZE,
        "count": 1,
        "dtype": "uint16",
        "crs": CRS,
        "transform": Affine(*TRANSFORM),
        "nodata": 0,
        "tiled": True,
        "blockxsize": TILE,
        "blockysize": TILE,
    }
    with rasterio.open(raw, "w", **profile) as dst:
        dst.write(_field(i), 1)
    to_cog(raw, target)
    raw.unlink()


def ensure_series(*, verbose: bool = True) -> list[Path]:
    """The 30 COGs in date order, generated on first use.

    Each file is written to a temp name and renamed, so an interrupted run leaves only
    complete files (the missing ones are written next time).
    """
    paths = [SERIES_DIR / _name(i) for i in range(N_DATES)]
    missing = [i for i, p in enumerate(paths) if not p.exists()]
    if not missing:
        return paths
    SERIES_DIR.mkdir(parents=True, exist_ok=True)
    SERIES_DIR.chmod(0o755)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=SERIES_DIR, prefix=".gen-") as tmp:
        for i in missing:
            _write_cog(i, paths[i], Path(tmp))
    if verbose:
        mb = sum(paths[i].stat().st_size for i in missing) / 1e6
        print(f"generated {len(missing)} COGs ({mb:.0f} MB) in {SERIES_DIR} in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    return paths


def aoi_windows() -> list[tuple[int, int, int, int]]:
    """The AOIs as pixel windows ``(row_off, col_off, height, width)``."""
    return [(r, c, CHIP, CHIP) for r, c in AOI_OFFSETS]


def aoi_boxes() -> list[tuple[float, float, float, float]]:
    """The AOIs as pixel-aligned ``(left, bottom, right, top)`` boxes in :data:`CRS`."""
    out = []
    for r, c, h, w in aoi_windows():
        left, top = ORIGIN[0] + c * RES, ORIGIN[1] - r * RES
        out.append((left, top - h * RES, left + w * RES, top))
    return out


def random_points(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniformly inside the footprint (x, y in :data:`CRS`), kept a tenth of
    a pixel away from pixel edges so that no engine's rounding can pick another pixel."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, SIZE, n) + rng.uniform(0.1, 0.9, n)
    cols = rng.integers(0, SIZE, n) + rng.uniform(0.1, 0.9, n)
    return ORIGIN[0] + cols * RES, ORIGIN[1] - rows * RES


def footprint_lonlat() -> tuple[float, float, float, float]:
    """The lon/lat bounding box of the footprint (for record tables that want one)."""
    from pyproj import Transformer

    t = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    left, top = ORIGIN
    right, bottom = left + SIZE * RES, top - SIZE * RES
    return t.transform_bounds(left, bottom, right, top, densify_pts=21)
