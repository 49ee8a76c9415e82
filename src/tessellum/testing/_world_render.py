"""Pixel content of the fixture world: ``render(entry, seed) -> (data, mask)``.

Each ``content["kind"]`` is a pure function of the file's grid (map coordinates of the
pixel centres), the world seed and a few spec parameters, so :func:`render` can be
called again at any time to get exactly what was handed to GDAL (before lossy codecs).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._world_noise import dem_elevation_grid, fbm_grid, hash01, salt_of

__all__ = ["LANDCOVER_CLASSES", "SCL_CLASSES", "render", "sparse_block_written"]

#: ESA WorldCover classes used, with their area share.
LANDCOVER_CLASSES = (10, 20, 30, 40, 50, 60, 80, 90, 95, 100)
_LANDCOVER_SHARE = (0.16, 0.22, 0.2, 0.1, 0.05, 0.09, 0.06, 0.05, 0.03, 0.04)

#: Sentinel-2 scene classification values (0 = no data).
SCL_CLASSES = tuple(range(12))

# Surface reflectance x 10^4 per SCL class for blue, green, red, nir, rededge1.
_S2_REFL: dict[int, tuple[int, int, int, int, int]] = {
    1: (9000, 9000, 9000, 9000, 9000),  # saturated
    2: (300, 350, 380, 600, 450),  # dark area
    4: (350, 700, 450, 3300, 1200),  # vegetation
    5: (1200, 1500, 1900, 2500, 2200),  # not vegetated
    6: (600, 500, 300, 150, 200),  # water
    7: (900, 1100, 1200, 1800, 1500),  # unclassified
    11: (8000, 8200, 8100, 6500, 7500),  # snow
}
_S2_BAND_INDEX = {"blue": 0, "green": 1, "red": 2, "nir": 3, "rededge1": 4}


def _centres(spec: dict[str, Any]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    a, b, _, d, _, f = spec["transform"]
    xs = a + (np.arange(spec["width"]) + 0.5) * b
    ys = d + (np.arange(spec["height"]) + 0.5) * f
    return xs, ys


def _discs(xs, ys, discs) -> NDArray[np.bool_]:
    out = np.zeros((ys.size, xs.size), dtype=bool)
    for cx, cy, r in discs:
        out |= (xs[None, :] - cx) ** 2 + (ys[:, None] - cy) ** 2 <= r * r
    return out


# ----------------------------------------------------------------------------- DEM
def _dem(entry: dict[str, Any], seed: int) -> NDArray:
    spec = entry["spec"]
    xs, ys = _centres(spec)
    elev = dem_elevation_grid(xs, ys, seed).astype(np.float32)
    elev[_discs(xs, ys, entry["content"]["holes"])] = spec["nodata"]
    return elev[None]


# ---------------------------------------------------------------------- land cover
def _landcover(entry: dict[str, Any], seed: int) -> NDArray:
    """Jittered-Voronoi patches on a global lon/lat lattice with warped borders."""
    spec, content = entry["spec"], entry["content"]
    xs, ys = _centres(spec)
    cell = content["cell"]
    salt = salt_of(seed, "landcover")
    x = xs[None, :] + cell * 0.8 * (fbm_grid(xs, ys, cell * 1.5, 3, salt + 10) - 0.5)
    y = ys[:, None] + cell * 0.8 * (fbm_grid(xs, ys, cell * 1.5, 3, salt + 20) - 0.5)
    gx, gy = np.floor(x / cell).astype(np.int64), np.floor(y / cell).astype(np.int64)
    best = np.full(x.shape, np.inf)
    pick = np.zeros(x.shape, dtype=np.int64)
    cum = np.cumsum(_LANDCOVER_SHARE)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            cx, cy = gx + dx, gy + dy
            dist = (x - (cx + hash01(cx, cy, salt + 1)) * cell) ** 2
            dist += (y - (cy + hash01(cx, cy, salt + 2)) * cell) ** 2
            closer = dist < best
            best[closer] = dist[closer]
            klass = np.searchsorted(cum, hash01(cx, cy, salt + 3) * cum[-1], side="right")
            pick[closer] = klass[closer]
    out = np.asarray(LANDCOVER_CLASSES, dtype=np.uint8)[np.minimum(pick, 9)]
    out[_discs(xs, ys, content["holes"])] = 0
    return out[None]


# ---------------------------------------------------------------------- Sentinel-2
@functools.lru_cache(maxsize=64)
def _cloud_threshold(seed: int, zone: int, date_index: int, scene: tuple, cover: float, edge: bool):
    """Cloud-field threshold that makes exactly ``cover`` % of the valid 20 m pixels cloudy."""
    if cover <= 0:
        return np.inf
    x0, y0, ext = scene
    n = int(ext // 20)
    xs = x0 + (np.arange(n) + 0.5) * 20.0
    ys = y0 - (np.arange(n) + 0.5) * 20.0
    field = fbm_grid(xs, ys, 4000.0, 4, salt_of(seed, "s2cloud", zone, date_index))
    valid = ~_s2_edge(xs, ys, scene) if edge else np.ones(field.shape, bool)
    return float(np.quantile(field[valid], 1.0 - cover / 100.0))


def _s2_edge(xs, ys, scene) -> NDArray[np.bool_]:
    """Nodata corner of a scene (bottom right), like the edge of a swath."""
    x0, y0, ext = scene
    return ((xs[None, :] - x0) / ext + (y0 - ys[:, None]) / ext) > 1.55


@functools.lru_cache(maxsize=4)
def _s2_landscape(seed: int, zone: int, x0: float, y0: float, res: float, n: int):
    """Date-independent SCL classes and texture of a scene grid (shared by its bands)."""
    xs = x0 + (np.arange(n) + 0.5) * res
    ys = y0 - (np.arange(n) + 0.5) * res
    salt = salt_of(seed, "s2", zone)
    elev = fbm_grid(xs, ys, 6000.0, 4, salt + 100)
    moist = fbm_grid(xs, ys, 2500.0, 3, salt + 200)
    veg = fbm_grid(xs, ys, 900.0, 3, salt + 300)
    scl = np.full(elev.shape, 5, dtype=np.uint8)
    scl[veg > 0.52] = 4
    scl[(veg > 0.50) & (veg <= 0.52)] = 7
    scl[(elev < 0.33) & (moist > 0.5)] = 2
    scl[moist < 0.32] = 6
    scl[elev > 0.66] = 11
    # Saturated speckle on a 20 m lattice, so 10 m and 20 m bands agree.
    ix = np.floor(xs / 20.0).astype(np.int64)[None, :]
    iy = np.floor(ys / 20.0).astype(np.int64)[:, None]
    scl[hash01(ix, iy, salt + 400) < 0.0005] = 1
    texture = fbm_grid(xs, ys, 300.0, 2, salt + 500).astype(np.float32)
    scl.flags.writeable = False
    texture.flags.writeable = False
    return scl, texture


@functools.lru_cache(maxsize=4)
def _s2_scl_cached(seed: int, key: tuple, x0: float, y0: float, res: float, n: int):
    zone, date_index, scene, cover, edge = key
    xs = x0 + (np.arange(n) + 0.5) * res
    ys = y0 - (np.arange(n) + 0.5) * res
    scl = _s2_landscape(seed, zone, x0, y0, res, n)[0].copy()
    t = _cloud_threshold(seed, zone, date_index, scene, cover, edge)
    if np.isfinite(t):
        csalt = salt_of(seed, "s2cloud", zone, date_index)
        cloud = fbm_grid(xs, ys, 4000.0, 4, csalt)
        shadow = fbm_grid(xs - 900.0, ys + 600.0, 4000.0, 4, csalt) > t
        scl[shadow] = 3
        scl[cloud > t] = 10
        scl[cloud > t + 0.015] = 8
        scl[cloud > t + 0.05] = 9
    if edge:
        scl[_s2_edge(xs, ys, scene)] = 0
    scl.flags.writeable = False
    return scl


def _s2(entry: dict[str, Any], seed: int) -> NDArray:
    spec, content = entry["spec"], entry["content"]
    scene = tuple(content["scene"])
    grid = (spec["transform"][0], spec["transform"][3], spec["transform"][1], spec["width"])
    key = (
        content["zone"],
        content["date_index"],
        scene,
        content["cloud_cover"],
        content["nodata_edge"],
    )
    scl = _s2_scl_cached(seed, key, *grid)
    if content["band"] == "scl":
        return scl[None].copy()
    b = _S2_BAND_INDEX[content["band"]]
    table = np.zeros(12, dtype=np.float32)
    for klass, refl in _S2_REFL.items():
        table[klass] = refl[b]
    table[3] = table[5] * 0.45  # shadow
    table[8], table[9], table[10] = 6500.0, 8000.0, 2500.0
    texture = _s2_landscape(seed, content["zone"], *grid)[1]
    gain = np.float32(0.96 + 0.03 * content["date_index"]) + np.float32(0.05) * texture
    dn = 1000.0 + table[scl] * gain
    out = np.clip(dn, 1, 65535).astype(np.uint16)
    out[scl == 0] = 0
    return out[None]


def bench_large_rows(entry: dict[str, Any], seed: int, row0: int, row1: int) -> NDArray:
    """Rows ``[row0, row1)`` of the 10980^2 benchmark scene (uint16, (1, rows, width))."""
    spec = entry["spec"]
    xs, ys = _centres(spec)
    ys = ys[row0:row1]
    salt = salt_of(seed, "bench-large")
    field = fbm_grid(xs, ys, 3000.0, 3, salt)
    rng = np.random.default_rng([seed, row0])
    dn = 1000.0 + 4000.0 * field + rng.integers(0, 8, size=field.shape)
    out = dn.astype(np.uint16)
    out[_s2_edge(xs, ys, tuple(entry["content"]["scene"]))] = 0
    return out[None]


# ---------------------------------------------------------------------------- NAIP
def _naip(entry: dict[str, Any], seed: int) -> NDArray:
    spec = entry["spec"]
    xs, ys = _centres(spec)
    salt = salt_of(seed, "naip")
    trees = fbm_grid(xs, ys, 80.0, 4, salt + 1) > 0.55
    field = fbm_grid(xs, ys, 250.0, 2, salt + 2)
    texture = fbm_grid(xs, ys, 6.0, 2, salt + 3)
    road = np.abs(((xs[None, :] + 0.3 * ys[:, None]) % 400.0) - 200.0) < 4.0
    rgbn = np.empty((4, *field.shape))
    for band, (bare, crop, tree) in enumerate(
        ((150, 90, 40), (135, 120, 70), (110, 70, 45), (120, 190, 170))
    ):
        base = np.where(field > 0.5, crop, bare).astype(np.float64)
        base[trees] = tree
        base[road] = 170
        rgbn[band] = base * (0.8 + 0.4 * texture)
    out = np.clip(rgbn, 1, 255).astype(np.uint8)
    return out[: spec["count"]]


# ------------------------------------------------------------------ generic pattern
def sparse_block_written(bx: int, by: int) -> bool:
    """Which blocks of the sparse edge case are written (the others stay empty)."""
    return (bx + by) % 3 == 0


def _pattern(entry: dict[str, Any], seed: int) -> tuple[NDArray, NDArray | None]:
    """A smooth, oriented field scaled into the file's value range."""
    spec = entry["spec"]
    h, w, count = spec["height"], spec["width"], spec["count"]
    dtype = np.dtype(spec["dtype"])
    cols, rows = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    bands = []
    for b in range(count):
        noise = fbm_grid(cols, rows, 40.0, 3, salt_of(seed, entry["key"], b))
        v = 0.6 * noise + 0.25 * cols[None, :] / w + 0.15 * rows[:, None] / h  # in [0, 1)
        if spec["nbits"] and dtype.kind == "u":
            band = np.floor(v * 2 ** spec["nbits"])
        elif dtype.kind == "f":
            band = -100.0 + 1000.0 * v
        else:
            info = np.iinfo(dtype)
            lo, hi = max(info.min + 1, -1_000_000), min(info.max - 1, 1_000_000_000)
            lo = max(lo, 1) if dtype.kind == "u" else lo
            band = lo + (hi - lo) * v
        bands.append(band)
    data = np.stack(bands)
    if dtype.kind != "f":
        data = np.floor(data)
    if spec.get("tiff_dtype") == "float16":
        data = data.astype(np.float16)  # what the file can hold
    data = data.astype(dtype)
    nodata = spec["nodata"]
    if nodata is not None:
        data[:, :20, :30] = nodata  # a nodata corner
    mask = None
    if spec["mask"]:
        inside = ((cols[None, :] - w / 2) / (0.45 * w)) ** 2 + (
            (rows[:, None] - h / 2) / (0.45 * h)
        ) ** 2 <= 1.0
        mask = np.where(inside, 255, 0).astype(np.uint8)
        data[:, ~inside] = 0
    if spec["sparse"]:
        bs = spec["blocksize"]
        for by in range(-(-h // bs)):
            for bx in range(-(-w // bs)):
                if not sparse_block_written(bx, by):
                    data[:, by * bs : (by + 1) * bs, bx * bs : (bx + 1) * bs] = nodata or 0
    return data, mask


_KINDS = {"dem": _dem, "landcover": _landcover, "s2": _s2, "naip": _naip}


def render(entry: dict[str, Any], seed: int) -> tuple[NDArray, NDArray | None]:
    """Pixels of one world file as written: ``(data (count, rows, cols), mask or None)``.

    Args:
        entry: A file entry of :func:`~._world_spec.build_spec`.
        seed: The world seed.

    Returns:
        The band array in the file's dtype and the GDAL mask (255 valid) if it has one.
    """
    kind = entry["content"]["kind"]
    if kind == "pattern":
        return _pattern(entry, seed)
    if kind == "bench_large":
        return bench_large_rows(entry, seed, 0, entry["spec"]["height"]), None
    return _KINDS[kind](entry, seed), None
