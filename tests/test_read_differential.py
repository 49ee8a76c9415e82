"""Seeded differential test of the read paths against GDAL (rasterio).

Each seed draws one GeoTIFF written by GDAL (``_cogfactory.write_cog``): its dtype,
codec and predictor, tiled or stripped layout (odd tile sizes, 1-row strips), GTiff or
COG driver and IFD order, band count and interleave, byte order, BigTIFF, nodata (none,
0, negative, the type's maximum, NaN, 1e20 that float32 cannot hold), NaNs in float data, an internal mask, sparse
(empty) tiles, overviews, and a CRS among a UTM zone, EPSG:4326 and EPSG:3413 (some
rasters covering the pole), in sizes that are not multiples of the tile size. The file
is then read through ``read_window`` (random windows inside, across the edges and partly
outside the raster, random band subsets), ``sample_points`` (nearest, random points and
points on pixel corners, tile edges and raster edges) and ``get_xarray`` (a random
polygon) at native resolution, in the file's CRS, and every output is compared with the
file as GDAL reads it (``read`` and ``read_masks``) under the semantics of
docs/reading.md: outputs snap outward to the source grid, integer dtypes are kept, a
pixel is data unless GDAL's mask (internal mask, alpha or nodata) says otherwise, it
equals the nodata value, or it is a float NaN; everything else is the fill (nodata,
else NaN for floats, else 0); points are null exactly there.

Ported from a throw-away fuzzer that found real bugs, as a regression test: every case
is a pure function of its seed, and each failure names the seed, its parameters and the
command that reruns it.
``TESSELLUM_FUZZ_CASES=<n>`` runs seeds 0..n-1 instead of the default 24. Warps to
other CRSs are left out: GDAL's approximate transformer makes exact comparison brittle.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.features import geometry_mask

from _cogfactory import make_array, write_cog
from tessellum.collection import build_from_table
from tessellum.read.cache import default_tile_cache

SEEDS = range(int(os.environ.get("TESSELLUM_FUZZ_CASES", "24")))

# seed % 9 picks the dtype (uint8 twice: imagery), seed % 5 the codec and seed % 4 the
# CRS; uint8 files rotate through JPEG, RGBA (the alpha masks the other bands) and any
# other kind; EPSG:3413 rasters alternate around the pole and elsewhere. So any 24
# consecutive seeds cover each of these, in varied combinations.
DTYPES = ["uint8", "int8", "uint16", "int16", "uint8", "uint32", "int32", "float32", "float64"]
CODECS = ["deflate", "lzw", "zstd", "packbits", "none"]
CRSS = ["EPSG:32611", "EPSG:4326", "EPSG:3413", "EPSG:32633"]
EPS = 1e-6  # pixel fraction of float noise ignored when snapping (docs/reading.md)


@pytest.fixture(autouse=True)
def _fresh_cache():
    default_tile_cache().clear()
    yield
    default_tile_cache().clear()


@dataclass(frozen=True)
class Case:
    """The parameters of one seed's file (all drawn from the seed)."""

    seed: int
    dtype: str
    compression: str
    predictor: int
    driver: str
    layout: str  # "tiled" or "stripped"
    ifd_order: str  # write_cog's layout: overviews before ("cog") or after ("append")
    blocksize: int  # tile size, or rows per strip
    width: int
    height: int
    count: int
    interleave: str
    byteorder: str
    bigtiff: bool
    nodata: float | int | None
    mask: bool
    sparse: bool
    overviews: tuple[int, ...]
    crs: str
    transform: tuple[float, ...]  # GDAL order

    @property
    def tolerance(self) -> int:
        """YCbCr JPEG: GDAL's and tessellum's decoders upsample chroma differently (a few
        levels on smooth images, as in tests/test_read_masks.py); grey JPEG is exact."""
        return 12 if self.compression == "jpeg" and self.count == 3 else 0

    def __str__(self) -> str:
        return (
            f"TESSELLUM_FUZZ_CASES={self.seed + 1} pytest tests/test_read_differential.py "
            f"-k seed{self.seed}\n"
            f"(case: {asdict(self)})"
        )


def draw_case(seed: int) -> Case:
    """The file of one seed: only combinations GDAL writes (and reads back) exactly."""
    rng = np.random.default_rng(seed)
    dtype = DTYPES[seed % len(DTYPES)]
    is_float = dtype.startswith("float")
    imagery = ["jpeg", "rgba", "other"][seed // len(DTYPES) % 3] if dtype == "uint8" else ""
    jpeg = imagery == "jpeg"
    compression = "jpeg" if jpeg else CODECS[seed % len(CODECS)]
    predictors = [1]
    if compression in ("deflate", "lzw", "zstd"):
        predictors += [2, 3, 3] if is_float else [2]
    driver = str(rng.choice(["GTiff", "GTiff", "COG"]))
    count = int(rng.integers(1, 5))
    if jpeg:
        count = int(rng.choice([1, 3]))  # grey or YCbCr
    elif imagery == "rgba":
        count = 4
    interleave = "pixel"
    if driver == "GTiff" and count > 1 and not jpeg:
        interleave = str(rng.choice(["pixel", "band"]))
    layout = "tiled" if driver == "COG" or jpeg else str(rng.choice(["tiled", "stripped"]))
    if driver == "COG":
        blocksize = int(rng.choice([128, 256, 512]))
    elif layout == "tiled":
        blocksize = int(rng.choice([16, 48, 80, 112, 240]))  # odd sizes; COG: the usual
    else:
        blocksize = int(rng.choice([1, 7, 64, 1000]))
    width, height = (int(v) for v in rng.integers(37, 1400, 2))
    if jpeg or imagery == "rgba":
        nodata = None  # JPEG moves pixels off (or onto) it; GDAL's nodata shadows alpha
    else:
        floats = ["nan", "nan", "inexact"] if is_float else []
        kind = str(rng.choice(["none", "zero", "negative", "max", *floats]))
        if kind == "negative" and dtype.startswith("u"):
            kind = "max"
        nodata = {
            "none": None,
            "zero": 0,
            "negative": -9999 if np.dtype(dtype).itemsize > 1 else -128,
            "max": np.finfo(dtype).max.item() if is_float else np.iinfo(dtype).max,
            "nan": math.nan,
            "inexact": 1e20,  # GDAL stores the text "1e+20"; float32 pixels hold ~1.00000002e20
        }[kind]
    overviews = tuple(f for f in (2, 4, 8) if min(width, height) // f >= 16)
    overviews = overviews[: int(rng.integers(0, len(overviews) + 1))]
    crs = CRSS[seed % len(CRSS)]
    transform = _draw_transform(rng, crs, width, height, polar=seed // len(CRSS) % 2 == 0)
    return Case(
        seed=seed,
        dtype=dtype,
        compression=compression,
        predictor=int(rng.choice(predictors)),
        driver=driver,
        layout=layout,
        ifd_order=str(rng.choice(["cog", "append"])) if driver == "GTiff" else "cog",
        blocksize=blocksize,
        width=width,
        height=height,
        count=count,
        interleave=interleave,
        byteorder="big" if driver == "GTiff" and rng.random() < 0.2 else "little",
        bigtiff=bool(rng.random() < 0.15),
        nodata=nodata,
        mask=bool(rng.random() < (0.7 if jpeg else 0.3)),  # JPEG: the common masked COG
        sparse=bool(rng.random() < 0.3) and not jpeg,
        overviews=overviews,
        crs=crs,
        transform=transform,
    )


def _draw_transform(
    rng: np.random.Generator, crs: str, width: int, height: int, *, polar: bool
) -> tuple[float, ...]:
    """A north-up transform (GDAL order); in EPSG:3413, over the pole when ``polar``."""
    if crs == "EPSG:4326":
        res = float(rng.choice([0.001, 1 / 3600, 0.0137, 0.25]))
        resy = res if rng.random() < 0.8 else res * 0.73
        x0 = float(rng.uniform(-180, 180 - width * res)) if width * res < 360 else -180.0
        y0 = float(rng.uniform(-90 + height * resy, 90)) if height * resy < 180 else 90.0
        if res == 0.25:  # on the global quarter-degree grid
            x0 = -180 + 0.25 * int(rng.integers(0, max(1, 1440 - width)))
            y0 = 90 - 0.25 * int(rng.integers(0, max(1, 720 - height)))
    elif crs == "EPSG:3413":
        res = resy = float(rng.choice([25.0, 100.0, 500.0, 1000.0]))
        if polar:
            x0 = -res * width * float(rng.uniform(0.2, 0.8))
            y0 = res * height * float(rng.uniform(0.2, 0.8))
        else:
            x0, y0 = float(rng.uniform(-2e6, 1.5e6)), float(rng.uniform(-2e6, 2e6))
    else:
        res = float(rng.choice([0.6, 7.3, 10.0, 30.0]))
        resy = res if rng.random() < 0.85 else res * 1.5
        x0 = float(rng.uniform(300000, 700000 - width * res))
        y0 = float(rng.uniform(1000000, 6000000))
        if rng.random() < 0.5:
            x0, y0 = round(x0 / res) * res, round(y0 / resy) * resy
    return (x0, res, 0.0, y0, 0.0, -resy)


def write_case(case: Case, path: Path) -> None:
    """Write the case's file: make_array's pattern with the type's extremes, NaNs,
    nodata blobs and strips, a masked disc and top rows; smooth bands for JPEG."""
    rng = np.random.default_rng([case.seed, 1])
    h, w = case.height, case.width
    yy, xx = np.mgrid[0:h, 0:w]
    if case.compression == "jpeg":  # smooth: JPEG's error stays small
        data = np.stack([
            128 + 90 * np.sin(xx / (17.0 + 9 * b) + b) * np.cos(yy / (23.0 + 5 * b))
            for b in range(case.count)
        ]).round().astype(np.uint8)  # fmt: skip
    else:
        data = make_array(case.dtype, (h, w), case.count, seed=case.seed)
        if data.dtype.kind == "f":
            data *= data.dtype.type(rng.choice([1.0, 1e-3, 1e5]))
            data.flat[rng.integers(0, data.size, 30)] = np.nan  # never data (docs)
        else:
            info = np.iinfo(data.dtype)
            data.flat[rng.integers(0, data.size, 20)] = info.min
            data.flat[rng.integers(0, data.size, 20)] = info.max
    blank = 0 if case.nodata is None else case.nodata
    if case.nodata is not None:  # blobs, a left strip and scattered pixels of nodata
        for _ in range(int(rng.integers(1, 4))):
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(3, min(h, w) // 3)
            data[:, (yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = blank
        data[:, :, : int(rng.integers(0, 9))] = blank
        data.flat[rng.integers(0, data.size, 50)] = blank
    if case.sparse:  # whole blocks of nodata (or 0) are left out of the file
        data[:, : int(rng.integers(1, min(h, 600))), :] = blank
    mask: bool | np.ndarray = False
    if case.mask:
        mask = np.full((h, w), 255, np.uint8)
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(5, min(h, w) // 2)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 0
        mask[: int(rng.integers(0, 30)), :] = 0
    write_cog(
        path,
        data=data,
        dtype=case.dtype,
        shape=(h, w),
        count=case.count,
        compression=None if case.compression == "none" else case.compression,
        predictor=case.predictor if case.predictor > 1 else None,
        blocksize=case.blocksize,
        stripped=case.layout == "stripped",
        overviews=case.overviews,
        crs=case.crs,
        transform=Affine.from_gdal(*case.transform),
        nodata=case.nodata,
        bigtiff=case.bigtiff,
        byteorder=case.byteorder,
        photometric="ycbcr" if case.compression == "jpeg" and case.count == 3 else None,
        interleave=case.interleave,
        driver=case.driver,
        layout=case.ifd_order,
        mask=mask,
        creation_options={"SPARSE_OK": "TRUE"} if case.sparse else None,
    )


def gdal_valid_and_fill(data: np.ndarray, masks: np.ndarray, nodata: Any) -> tuple[Any, Any]:
    """Which pixels GDAL reads as data, and the fill expected elsewhere."""
    keep = masks != 0  # GDAL: the internal mask, else nodata, else the alpha band
    if nodata is not None:  # nodata is no data under a mask or alpha too (docs)
        keep &= data != nodata
    if data.dtype.kind == "f":
        keep &= ~np.isnan(data)
    if nodata is not None:
        fill = nodata if data.dtype.kind == "f" else int(nodata)
    else:
        fill = math.nan if data.dtype.kind == "f" else 0
    return keep, fill


@dataclass
class Reference:
    """The file as GDAL reads it: pixels, which of them are data, and the fill."""

    data: np.ndarray  # (C, H, W)
    keep: np.ndarray  # (C, H, W) bool: data, per GDAL's mask, nodata and NaN
    fill: float | int
    transform: Affine
    block: tuple[int, int]  # (rows, cols) of a tile or strip

    @classmethod
    def read(cls, path: Path) -> Reference:
        with rasterio.open(path) as ds:
            data, masks = ds.read(), ds.read_masks()
            nodata, transform, block = ds.nodata, ds.transform, ds.block_shapes[0]
        keep, fill = gdal_valid_and_fill(data, masks, nodata)
        return cls(data, keep, fill, transform, block)

    def window(
        self, bands: list[int], r0: int, c0: int, r1: int, c1: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pixels and data flags over a window, boundless (outside: no data)."""
        _, h, w = self.data.shape
        data = np.full((len(bands), r1 - r0, c1 - c0), self.fill, self.data.dtype)
        keep = np.zeros(data.shape, bool)
        y0, y1, x0, x1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
        if y1 > y0 and x1 > x0:
            dst = np.s_[:, y0 - r0 : y1 - r0, x0 - c0 : x1 - c0]
            data[dst] = self.data[bands, y0:y1, x0:x1]
            keep[dst] = self.keep[bands, y0:y1, x0:x1]
        return data, keep

    def snap(self, bounds: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        """The window of source pixels covering ``bounds``, snapped outward."""
        left, bottom, right, top = bounds
        c0, r0 = ~self.transform * (left, top)
        c1, r1 = ~self.transform * (right, bottom)
        return (
            math.floor(r0 + EPS),
            math.floor(c0 + EPS),
            math.ceil(r1 - EPS),
            math.ceil(c1 - EPS),
        )


def assert_pixels(
    got: np.ndarray, want: np.ndarray, keep: np.ndarray, ref: Reference, tol: int, where: str
) -> None:
    """``got`` is ``want`` where ``keep`` (within ``tol``), the fill elsewhere."""
    assert got.shape == want.shape, f"{where}: shape {got.shape}, GDAL {want.shape}"
    assert got.dtype == want.dtype, f"{where}: dtype {got.dtype}, GDAL {want.dtype}"
    is_fill = np.isnan(got) if math.isnan(ref.fill) else got == ref.fill
    bad = ~keep & ~is_fill
    if tol:
        bad |= keep & (np.abs(got.astype(np.float64) - want.astype(np.float64)) > tol)
    else:
        bad |= keep & (got != want)
    if bad.any():
        first = [tuple(int(i) for i in ix) for ix in np.argwhere(bad)[:5]]
        pairs = [(want[ix].item(), bool(keep[ix]), got[ix].item()) for ix in first]
        raise AssertionError(
            f"{where}: {int(bad.sum())} of {bad.size} pixels differ from GDAL (fill "
            f"{ref.fill}); first (band, row, col): {first}; (GDAL, is data, got): {pairs}"
        )


def check_read_window(coll: Any, case: Case, ref: Reference, rng: np.random.Generator) -> None:
    """Random windows inside, across the edges and up to half outside (never wholly), of
    random band subsets in random order."""
    h, w = case.height, case.width
    for _ in range(6):
        wr, wc = int(rng.integers(1, min(h, 600) + 1)), int(rng.integers(1, min(w, 600) + 1))
        r0, c0 = int(rng.integers(-(wr // 2), h - 1)), int(rng.integers(-(wc // 2), w - 1))
        off = rng.uniform(-0.5, 0.5, 4) if rng.random() < 0.6 else np.zeros(4)
        left, top = ref.transform * (c0 + off[0], r0 + off[1])
        right, bottom = ref.transform * (c0 + wc + off[2], r0 + wr + off[3])
        bounds = (float(left), float(bottom), float(right), float(top))
        bands = [int(b) for b in rng.permutation(case.count)[: rng.integers(1, case.count + 1)]]
        got = coll.read_window(bounds=bounds, bands=[f"b{b}" for b in bands])
        want, keep = ref.window(bands, *ref.snap(bounds))
        where = f"read_window(bounds={bounds}, bands={bands})"
        assert_pixels(got, want, keep, ref, case.tolerance, where)


def check_sample_points(coll: Any, case: Case, ref: Reference, rng: np.random.Generator) -> None:
    """Nearest samples: a row exactly for the points inside the raster, null exactly where
    GDAL says no data. A point within 1e-9 px of a pixel edge may take either pixel."""
    h, w = case.height, case.width
    bh, bw = ref.block
    rows, cols = rng.uniform(-2, h + 2, 80), rng.uniform(-2, w + 2, 80)
    rows[:16], cols[:16] = rng.integers(0, h + 1, 16), rng.integers(0, w + 1, 16)  # corners
    nudge = [-0.5, -1e-7, 0.0, 1e-7, 0.5]
    rows[16:32] = rng.integers(0, h // bh + 1, 16) * bh + rng.choice(nudge, 16)  # tile edges
    cols[16:32] = rng.integers(0, w // bw + 1, 16) * bw + rng.choice(nudge, 16)
    rows[32:40] = rng.choice([0, h], 8) + rng.choice(nudge, 8)  # raster edges
    cols[40:48] = rng.choice([0, w], 8) + rng.choice(nudge, 8)
    xs, ys = ref.transform * (cols, rows)
    points = [shapely.Point(x, y) for x, y in zip(xs, ys, strict=True)]
    bands = [f"b{b}" for b in range(case.count)]
    table = coll.sample_points(points, bands, geometry_crs=case.crs)
    columns = (table.column(c).to_pylist() for c in ("point_index", "band", "value"))
    got = {(i, band): v for i, band, v in zip(*columns, strict=True)}
    assert len(got) == table.num_rows, "sample_points: a point sampled twice"
    fc, fr = ~ref.transform * (xs, ys)
    missing = object()  # no row: the point is outside the raster
    for i, b in itertools.product(range(len(points)), range(case.count)):
        options = []  # what each pixel the point may fall in gives: no row, None or a value
        rs = {math.floor(fr[i] - 1e-9), math.floor(fr[i] + 1e-9)}
        cs = {math.floor(fc[i] - 1e-9), math.floor(fc[i] + 1e-9)}
        for r, c in itertools.product(rs, cs):
            if not (0 <= r < h and 0 <= c < w):
                options.append(missing)
            else:
                options.append(ref.data[b, r, c].item() if ref.keep[b, r, c] else None)
        value = got.get((i, bands[b]), missing)
        numbers = [o for o in options if o is not missing and o is not None]
        ok = any(value is o for o in options) or (
            value is not missing
            and value is not None
            and any(abs(value - o) <= case.tolerance for o in numbers)
        )
        shown = ["no row" if o is missing else o for o in options]
        assert ok, (
            f"sample_points: point {i} (x={xs[i]!r}, y={ys[i]!r}; row {fr[i]}, col {fc[i]}), "
            f"{bands[b]}: got {'no row' if value is missing else value}, GDAL {shown}"
        )


def _random_polygon(case: Case, ref: Reference, rng: np.random.Generator) -> shapely.Polygon:
    """A convex polygon over the raster (around the pole when the raster covers it)."""
    h, w = case.height, case.width
    raster = shapely.box(*rasterio.transform.array_bounds(h, w, ref.transform))
    polar = case.crs == "EPSG:3413" and raster.contains(shapely.Point(0, 0))
    while True:
        cr, cc = rng.uniform(-0.1 * h, 1.1 * h), rng.uniform(-0.1 * w, 1.1 * w)
        if polar and rng.random() < 0.5:
            cc, cr = ~ref.transform * (0.0, 0.0)
        radius = rng.uniform(0.5, min(300.0, max(h, w) / 3))
        angles = rng.uniform(0, 2 * np.pi, int(rng.integers(3, 9)))
        radii = radius * rng.uniform(0.4, 1.0, len(angles))
        px, py = ref.transform * (cc + radii * np.cos(angles), cr + radii * np.sin(angles))
        poly = shapely.MultiPoint(np.column_stack([px, py])).convex_hull
        if case.crs == "EPSG:4326":  # never past the antimeridian (that is another test)
            poly = poly.intersection(shapely.box(-180, -90, 180, 90))
        if poly.geom_type == "Polygon" and poly.area > 0 and poly.intersects(raster):
            return poly


def check_get_xarray(coll: Any, case: Case, ref: Reference, rng: np.random.Generator) -> None:
    """The grid snapped outward around the polygon; pixels outside it are the fill."""
    bands = list(range(case.count))
    for _ in range(3):
        poly = _random_polygon(case, ref, rng)
        where = f"get_xarray({poly.wkt})"
        ds = coll.get_xarray(poly, [f"b{b}" for b in bands], geometry_crs=case.crs)
        assert ds is not None, f"{where}: no record found"
        r0, c0, r1, c1 = ref.snap(poly.bounds)
        grid = ref.transform * Affine.translation(c0, r0)
        x, y = ds["x"].values, ds["y"].values
        want_x = grid.c + (np.arange(c1 - c0) + 0.5) * grid.a
        want_y = grid.f + (np.arange(r1 - r0) + 0.5) * grid.e
        assert (len(y), len(x)) == (len(want_y), len(want_x)), (
            f"{where}: grid {len(y)}x{len(x)}, want {len(want_y)}x{len(want_x)}"
        )
        np.testing.assert_allclose(x, want_x, rtol=0, atol=abs(grid.a) * 1e-6, err_msg=where)
        np.testing.assert_allclose(y, want_y, rtol=0, atol=abs(grid.e) * 1e-6, err_msg=where)
        want, keep = ref.window(bands, r0, c0, r1, c1)
        inside = geometry_mask([poly], out_shape=keep.shape[1:], transform=grid, invert=True)
        keep &= inside
        got = np.stack([ds[f"b{b}"].values[0] for b in bands])
        kind, expect = np.dtype(case.dtype), ref
        if case.nodata is None and kind.kind in "iub" and not inside.all():
            # no integer can mark the pixels outside the polygon: float with NaN there
            want = want.astype("float32" if kind.itemsize <= 2 else "float64")
            expect = replace(ref, fill=math.nan)
        assert_pixels(got, want, keep, expect, case.tolerance, where)
        if case.nodata is not None:
            fill = ds["b0"].attrs.get("_FillValue")
            assert fill is not None, f"{where}: no _FillValue, nodata {case.nodata}"
            same = np.array(fill, case.dtype) == np.array(case.nodata, case.dtype)  # as stored
            assert same or (math.isnan(case.nodata) and math.isnan(fill)), (
                f"{where}: _FillValue {fill}, nodata {case.nodata}"
            )


@pytest.mark.filterwarnings("ignore::rasterio.errors.NodataShadowWarning")  # GDAL's rule, wanted
@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed{s}")
def test_reads_match_gdal(tmp_path, seed):
    case = draw_case(seed)
    try:
        path = tmp_path / f"case_{seed}.tif"
        write_case(case, path)
        ref = Reference.read(path)
        coll = build_from_table(
            pa.table({"href": [str(path)], "id": ["r"]}),
            name="fuzz",
            band_index_map={f"b{b}": b for b in range(case.count)},
            progress=False,
        )
        assert not coll.errors().num_rows, f"build: {coll.errors().to_pylist()}"
        rng = np.random.default_rng([seed, 2])
        check_read_window(coll, case, ref, rng)
        check_sample_points(coll, case, ref, rng)
        check_get_xarray(coll, case, ref, rng)
    except Exception as exc:  # name the case, whatever failed
        exc.add_note(f"reproduce with: {case}")
        raise
