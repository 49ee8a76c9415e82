"""Deterministic coordinate noise for the fixture world.

Every synthetic field is a function of *map coordinates* (lon/lat or projected metres)
and a salt, never of pixel indices. Two rasters that share a CRS therefore agree where
they touch: adjacent DEM tiles are continuous across their seam, a 10 m and a 20 m band
of one scene show the same landscape, and a test can recompute the truth at any point.

The noise is value noise on an integer lattice (``splitmix64`` hash of the lattice
indices) with smoothstep interpolation; :func:`fbm` sums octaves of it.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["dem_elevation", "fbm", "fbm_grid", "hash01", "salt_of"]

_U64 = np.uint64


def salt_of(*parts: object) -> int:
    """A stable 63-bit salt from any printable parts (seed, names, indices)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def hash01(ix: NDArray[np.int64], iy: NDArray[np.int64], salt: int) -> NDArray[np.float64]:
    """Uniform [0, 1) values from integer lattice coordinates (broadcasting).

    splitmix64's finaliser on a mix of both indices; uint64 arithmetic wraps on purpose.
    """
    ux = np.asarray(ix, dtype=np.int64).view(_U64)
    uy = np.asarray(iy, dtype=np.int64).view(_U64)
    h = (ux * _U64(0x9E3779B97F4A7C15)) ^ (uy * _U64(0xC2B2AE3D27D4EB4F)) ^ _U64(salt)
    h = h ^ (h >> _U64(30))
    h = h * _U64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> _U64(27))
    h = h * _U64(0x94D049BB133111EB)
    h = h ^ (h >> _U64(31))
    return (h >> _U64(11)).astype(np.float64) / float(1 << 53)


def _smooth(t: NDArray[np.float64]) -> NDArray[np.float64]:
    return t * t * (3.0 - 2.0 * t)


def _noise_grid(xs: NDArray[np.float64], ys: NDArray[np.float64], cell: float, salt: int):
    """Value noise on the axis-aligned grid ``ys x xs`` (separable: two gathers)."""
    gx, gy = xs / cell, ys / cell
    ix, iy = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    tx, ty = _smooth(gx - ix), _smooth(gy - iy)
    x0, y0 = int(ix.min()), int(iy.min())
    lat_x = np.arange(x0, int(ix.max()) + 2, dtype=np.int64)
    lat_y = np.arange(y0, int(iy.max()) + 2, dtype=np.int64)
    lattice = hash01(lat_x[None, :], lat_y[:, None], salt)  # (ny, nx)
    jx = ix - x0
    rows = lattice[:, jx] * (1.0 - tx) + lattice[:, jx + 1] * tx  # (ny, W)
    jy = iy - y0
    return rows[jy] * (1.0 - ty)[:, None] + rows[jy + 1] * ty[:, None]


def _noise_points(x: NDArray[np.float64], y: NDArray[np.float64], cell: float, salt: int):
    """Value noise at arbitrary points; the same arithmetic as :func:`_noise_grid`."""
    gx, gy = x / cell, y / cell
    ix, iy = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    tx, ty = _smooth(gx - ix), _smooth(gy - iy)
    r0 = hash01(ix, iy, salt) * (1.0 - tx) + hash01(ix + 1, iy, salt) * tx
    r1 = hash01(ix, iy + 1, salt) * (1.0 - tx) + hash01(ix + 1, iy + 1, salt) * tx
    return r0 * (1.0 - ty) + r1 * ty


def fbm_grid(
    xs: ArrayLike, ys: ArrayLike, cell: float, octaves: int, salt: int
) -> NDArray[np.float64]:
    """Fractal value noise in [0, 1) on the grid of x coordinates ``xs`` and y ``ys``.

    Returns an array of shape ``(len(ys), len(xs))``.
    """
    xs_a, ys_a = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    out = np.zeros((ys_a.size, xs_a.size))
    total = 0.0
    for k in range(octaves):
        amp = 0.5**k
        out += amp * _noise_grid(xs_a, ys_a, cell / 2**k, salt + k)
        total += amp
    out /= total
    return out


def fbm(x: ArrayLike, y: ArrayLike, cell: float, octaves: int, salt: int) -> NDArray[np.float64]:
    """Fractal value noise in [0, 1) at points ``(x, y)`` (any broadcastable shapes)."""
    xa, ya = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    out = np.zeros(xa.shape)
    total = 0.0
    for k in range(octaves):
        amp = 0.5**k
        out += amp * _noise_points(xa, ya, cell / 2**k, salt + k)
        total += amp
    return out / total


# Terrain parameters: ~900-2900 m, features of a few km (Wasatch-like relief).
DEM_BASE_M = 900.0
DEM_RELIEF_M = 2600.0
DEM_CELL_DEG = 0.25
DEM_OCTAVES = 5


def dem_elevation(lon: ArrayLike, lat: ArrayLike, seed: int = 0) -> NDArray[np.float64]:
    """The terrain function behind the ``cop-dem-glo-30`` tiles (metres, float64).

    Evaluate it at a pixel centre to get what the tile stores there (before the float32
    cast and the nodata holes), e.g. to check a reader or a resampler independently of
    GDAL. Continuous everywhere, so adjacent tiles agree across their seams.

    Args:
        lon: Longitudes in degrees (EPSG:4326).
        lat: Latitudes in degrees.
        seed: The world's seed.

    Returns:
        Elevations with the broadcast shape of ``lon`` and ``lat``.
    """
    n = fbm(lon, lat, DEM_CELL_DEG, DEM_OCTAVES, salt_of(seed, "dem"))
    return DEM_BASE_M + DEM_RELIEF_M * n


def dem_elevation_grid(xs: ArrayLike, ys: ArrayLike, seed: int = 0) -> NDArray[np.float64]:
    """:func:`dem_elevation` on the grid ``ys x xs`` (fast path used by the generator)."""
    n = fbm_grid(xs, ys, DEM_CELL_DEG, DEM_OCTAVES, salt_of(seed, "dem"))
    return DEM_BASE_M + DEM_RELIEF_M * n
