"""Benchmark inputs, generated deterministically and cached under ``.cache/bench/``.

The fixture world (``tessellum.testing.get_world(size="bench")``) will provide the same
files; this module keeps the benchmarks runnable on their own until then.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["CACHE_DIR", "LARGE_COG_NAME", "ensure_large_cog", "to_cog"]

CACHE_DIR = Path(__file__).resolve().parent.parent / ".cache" / "bench"
# Bump the suffix when the recipe changes, so stale caches are not reused.
LARGE_COG_NAME = "s2_10980_deflate_v1.tif"

SIZE = 10980
TILE = 512
_STRIP = 1098  # rows generated per step (10 steps): bounded memory, deterministic noise


def _field(rows: slice, size: int) -> np.ndarray:
    """A smooth, Sentinel-2-reflectance-like field (uint16, 0..10000) for ``rows``."""
    y = np.arange(rows.start, rows.stop, dtype=np.float32)[:, None] / size
    x = np.arange(size, dtype=np.float32)[None, :] / size
    z = (
        3000.0
        + 1500.0 * np.sin(2 * np.pi * (3 * x + 0.5 * y))
        + 1200.0 * np.cos(2 * np.pi * (2 * y - 1.5 * x))
        + 600.0 * np.sin(2 * np.pi * 17 * x) * np.cos(2 * np.pi * 13 * y)
    )
    # Noise seeded by the strip's first row: the same bytes whatever the machine.
    rng = np.random.default_rng(rows.start)
    z += rng.normal(0.0, 40.0, z.shape).astype(np.float32)
    return np.clip(z, 1, 10000).astype(np.uint16)


def to_cog(raw: Path, target: Path, **options: str) -> None:
    """Translate a tiled GTiff into a DEFLATE/predictor-2 COG with overviews at ``target``
    (written beside it, then renamed; world-readable for nginx workers)."""
    from rasterio.shutil import copy as rio_copy

    partial = target.with_name(f".{target.name}.partial")
    rio_copy(
        raw,
        partial,
        driver="COG",
        COMPRESS="DEFLATE",
        PREDICTOR="2",
        BLOCKSIZE=str(TILE),
        OVERVIEWS="AUTO",
        OVERVIEW_RESAMPLING="AVERAGE",
        NUM_THREADS="ALL_CPUS",
        **options,
    )
    partial.chmod(0o644)
    partial.replace(target)


def ensure_large_cog(path: str | os.PathLike[str] | None = None, *, verbose: bool = True) -> Path:
    """Return a 10980x10980 uint16 DEFLATE COG (predictor 2, 512 px tiles, overviews).

    Generates it on first use (about a minute on 2 cores) and reuses it afterwards. The
    file is written to a temp name and renamed, so an interrupted run leaves nothing.

    Args:
        path: where to put the file; default ``.cache/bench/s2_10980_deflate_v1.tif``.
        verbose: print how long generation took.

    Returns:
        The path of the COG.
    """
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    target = Path(path) if path is not None else CACHE_DIR / LARGE_COG_NAME
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    profile = {
        "driver": "GTiff",
        "width": SIZE,
        "height": SIZE,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32633",  # a Sentinel-2 tile: UTM 33N, 10 m pixels
        "transform": Affine(10.0, 0.0, 399960.0, 0.0, -10.0, 5300040.0),
        "nodata": 0,
        "tiled": True,
        "blockxsize": TILE,
        "blockysize": TILE,
    }
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".gen-") as tmp:
        raw = Path(tmp) / "raw.tif"
        with rasterio.open(raw, "w", **profile) as dst:
            for row in range(0, SIZE, _STRIP):
                rows = slice(row, min(row + _STRIP, SIZE))
                window = Window(0, row, SIZE, rows.stop - rows.start)
                dst.write(_field(rows, SIZE), 1, window=window)
        to_cog(raw, target, BIGTIFF="IF_SAFER")
    if verbose:
        size_mb = target.stat().st_size / 1e6
        print(f"generated {target} ({size_mb:.0f} MB) in {time.perf_counter() - t0:.1f} s")
    return target
