"""The read engine: many targets (output grids), each filled from one or more band
sources (records), planned together so every tile is fetched and decoded once.

Per source and target, pixels are pasted when the target grid shares the source
level's pixels, and warped with GDAL's kernel otherwise (nearest for integer data
unless asked). Sources fill a target in priority order: the first valid pixel wins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np

from ..errors import ValidationError
from ..geo.grid import Grid, transform_bounds
from ._pool import pooled_empty
from .fetch import FetchOptions, decode_executor, fetch_tiles_async
from .plan import (
    SourceRead,
    inside_rect,
    mask_header,
    mask_level_for,
    pick_overview,
    tiles_in_window,
)

RESAMPLING = (
    "nearest",
    "bilinear",
    "cubic",
    "cubic_spline",
    "lanczos",
    "average",
    "mode",
    "min",
    "max",
    "med",
    "q1",
    "q3",
    "sum",
    "rms",
)


class MaskRead(NamedTuple):
    """Where a band's mask is read from (0: no data): a level of the file's internal
    mask (``ifd``: ``header`` views the mask levels), or a sample of the image (alpha)."""

    header: Any
    level: int
    sample: int
    ifd: bool


@dataclass(frozen=True)
class BandSource:
    """One band of one record: the file, the sample inside it and its parsed header."""

    href: str
    header: Any  # tessellum.tiff.TiffHeader
    sample: int = 0
    record_id: str = ""
    band: str = ""
    x_shift: float = 0.0  # ±360 for a lon/lat raster read into a grid across ±180

    @cached_property
    def grid(self) -> Grid:
        """The full-resolution pixel grid (computed once per source)."""
        lvl = self.header.levels[0]
        grid = Grid.from_gdal(
            self.header.geo.transform, lvl.width, lvl.height, _crs_of(self.header)
        )
        if self.x_shift:
            from affine import Affine

            grid = Grid(
                grid.height,
                grid.width,
                Affine.translation(self.x_shift, 0) * grid.transform,
                grid.crs,
            )
        return grid

    @cached_property
    def dtype(self) -> np.dtype:
        return np.dtype(self.header.levels[0].dtype)

    @cached_property
    def nodata(self) -> Any:
        return self.header.nodata_value() if self.header.nodata_raw is not None else None

    @cached_property
    def mask_header(self) -> Any:
        """The header viewed as its internal mask's (None: the file has no mask)."""
        return mask_header(self.header) if self.header.mask_levels else None

    @cached_property
    def alpha_sample(self) -> int | None:
        """The file's alpha sample, which GDAL uses as every other band's mask (None:
        no alpha, this band is the alpha, or a nodata value shadows it as in GDAL)."""
        if self.header.nodata_raw is not None:
            return None  # GDAL: a nodata value shadows the alpha band
        lvl = self.header.levels[0]
        first_extra = lvl.samples_per_pixel - len(lvl.extra_samples)
        for i, kind in enumerate(lvl.extra_samples):
            if kind in (1, 2):  # associated / unassociated alpha
                alpha = first_extra + i
                return alpha if alpha != self.sample else None
        return None

    def read_level(self, resolution: float | None) -> tuple[int, MaskRead | None]:
        """The level to read at ``resolution`` and where its mask comes from: the
        coarsest level fine enough, among those whose internal mask has a level of
        their size when the file has one (a masked read never ignores its mask); else
        the alpha sample when the file has one; else no mask."""
        level = pick_overview(self.header, resolution)
        if self.mask_header is not None:
            for finer in range(level, -1, -1):
                m = mask_level_for(self.header, finer)
                if m is not None:
                    return finer, MaskRead(self.mask_header, m, 0, True)
            return level, None  # no mask level matches even the full resolution: unusable
        if self.alpha_sample is not None:
            return level, MaskRead(self.header, level, self.alpha_sample, False)
        return level, None

    def level_grid(self, level: int) -> Grid:
        full = self.grid
        lvl = self.header.levels[level]
        if level == 0:
            return full
        return Grid(
            lvl.height,
            lvl.width,
            full.transform @ _scale(full.width / lvl.width, full.height / lvl.height),
            full.crs,
        )


def _scale(fx: float, fy: float):
    from affine import Affine

    return Affine.scale(fx, fy)


def _crs_of(header: Any) -> str:
    from ..geo.crs import crs_to_code

    geo = header.geo
    if geo.crs_epsg:
        return f"EPSG:{geo.crs_epsg}"
    if geo.crs_wkt:
        return crs_to_code(geo.crs_wkt)
    raise ValidationError(f"{header.url}: raster has no CRS")


class PlannedRead(NamedTuple):
    """How one source fills a target: the read of its pixels, the level's grid, whether
    the pixels are pasted (same grid) or warped, and the read of its mask (the internal
    mask or the alpha sample over the same window; None: no mask)."""

    src: BandSource
    rd: SourceRead
    grid: Grid
    direct: bool
    mask: SourceRead | None = None


@dataclass
class Target:
    """One output array: ``grid`` filled from ``sources`` (priority order)."""

    grid: Grid
    sources: Sequence[BandSource]
    resampling: str = "nearest"
    dtype: Any = None  # default: the first source's dtype
    nodata: Any = None  # default: the first source's nodata (0 / NaN when none)
    mask: np.ndarray | None = None  # pixels to keep (others set to nodata), e.g. a geometry
    out: np.ndarray | None = None  # where to write the array (e.g. a layer of a stack)
    valid_out: np.ndarray | None = None  # where to write the validity mask
    want_valid: bool = True  # False: only the pixels are wanted (the mask returned is None)
    reads: list[PlannedRead] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        for name, buf in (("out", self.out), ("valid_out", self.valid_out)):
            if buf is not None and buf.shape != self.grid.shape:
                raise ValidationError(
                    f"Target.{name} has shape {buf.shape}, the grid {self.grid.shape}"
                )
        if self.valid_out is not None and self.valid_out.dtype != np.bool_:
            raise ValidationError(f"Target.valid_out must be bool, got {self.valid_out.dtype}")
        if self.out is not None and self.dtype is not None and self.out.dtype != self.dtype:
            raise ValidationError(f"Target.out is {self.out.dtype}, dtype is {self.dtype}")


def _resolution_in_source(src: BandSource, dst: Grid) -> float:
    """The target's pixel size expressed in the source CRS units (for overview choice)."""
    if src.grid.crs == dst.crs:
        return min(dst.resolution)
    b = transform_bounds(dst.bounds, dst.crs, src.grid.crs)
    return min((b[2] - b[0]) / dst.width, (b[3] - b[1]) / dst.height)


# Source pixels each side of a kernel's centre at scale 1 (GDAL's warp kernels).
_KERNEL_RADIUS = {"bilinear": 1, "cubic": 2, "cubic_spline": 2, "lanczos": 3}


def plan_target(t: Target) -> None:
    """Fill ``t.reads``: per source, the level, the window to read and paste/warp mode."""
    t.reads.clear()
    pad = {"nearest": 1, "mode": 1, "average": 1}.get(t.resampling, 3)
    radius = _KERNEL_RADIUS.get(t.resampling)
    for src in t.sources:
        target_res = _resolution_in_source(src, t.grid)
        level, mask_from = src.read_level(target_res)
        lgrid = src.level_grid(level)
        if radius is not None:  # GDAL widens its kernels by the downsampling factor
            pad = max(3, math.ceil(radius * target_res / min(lgrid.resolution)) + 1)
        direct = lgrid.same_pixels(t.grid)
        if direct:
            r0, c0 = lgrid.offset_of(t.grid)
            window = (r0, c0, r0 + t.grid.height, c0 + t.grid.width)
            if r0 >= lgrid.height or c0 >= lgrid.width or window[2] <= 0 or window[3] <= 0:
                continue
        else:
            try:
                b = transform_bounds(t.grid.bounds, t.grid.crs, lgrid.crs)
            except ValidationError:
                continue
            r0, c0, r1, c1 = lgrid.snap_bounds(b)
            r0, c0 = max(r0 - pad, 0), max(c0 - pad, 0)
            r1, c1 = min(r1 + pad, lgrid.height), min(c1 + pad, lgrid.width)
            if r1 <= r0 or c1 <= c0:
                continue
            window = (r0, c0, r1, c1)
        rd = SourceRead(src.href, src.header, level, src.sample, window)
        mask = None
        if (m := mask_from) is not None:
            mask = SourceRead(src.href, m.header, m.level, m.sample, window, mask=m.ifd)
        t.reads.append(PlannedRead(src, rd, lgrid, direct, mask))


def _fill_value(dtype: np.dtype, nodata: Any) -> Any:
    if nodata is not None:
        return nodata
    return np.nan if dtype.kind == "f" else 0


def is_nan(value: Any) -> bool:
    try:
        return bool(np.isnan(value))
    except TypeError:
        return False


def holds_data(values: np.ndarray, nodata: Any) -> np.ndarray:
    """Which ``values`` are data: not nodata, and never NaN (a float raster without
    nodata, or with another nodata value, still has no data where it holds NaN; GDAL's
    statistics and exactextract skip NaN alike)."""
    if values.dtype.kind == "f":
        ok = ~np.isnan(values)
        if nodata is not None and not is_nan(nodata):
            ok &= values != nodata
        return ok
    if nodata is None:
        return np.ones(values.shape, dtype=bool)
    return values != nodata


def _valid(arr: np.ndarray, inside: np.ndarray, nodata: Any) -> np.ndarray:
    if arr.dtype.kind != "f" and nodata is None:
        return inside
    return inside & holds_data(arr, nodata)


async def read_targets_async(
    targets: Sequence[Target], opts: FetchOptions | None = None
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Fill every target; returns ``(array, valid_mask)`` per target (the mask is None
    for targets with ``want_valid=False``, which then skip computing it where the
    result does not depend on it: one source, no geometry mask).

    All tiles of all targets are deduplicated, fetched and decoded once. A target's
    first source, when it shares the target's pixel grid, is pasted tile by tile in the
    decode threads as tiles arrive (no intermediate image, bounded memory); tiles needed
    by later sources or by warps are held until assembly.
    """
    import asyncio

    from .plan import paste_tile

    for t in targets:
        if t.resampling not in RESAMPLING:
            raise ValidationError(f"resampling must be one of {RESAMPLING}, got {t.resampling!r}")
        plan_target(t)
    outs = [_allocate(t) for t in targets]
    streamed: dict[Any, list[tuple[np.ndarray, SourceRead, np.ndarray | None, Any]]] = {}
    held: set = set()
    tiles: dict[Any, tuple[Any, int]] = {}  # every tile once: key -> (header, level)

    def keys_of(rd: SourceRead) -> list[Any]:
        keys = [
            rd.key(idx) for idx in tiles_in_window(rd.header.levels[rd.level], rd.window, rd.sample)
        ]
        for k in keys:
            tiles.setdefault(k, (rd.header, rd.level))
        return keys

    for t, o in zip(targets, outs, strict=True):
        for i, r in enumerate(t.reads):
            keys = keys_of(r.rd)
            if i == 0 and o.streamed:
                for k in keys:
                    streamed.setdefault(k, []).append((o.out, r.rd, o.have, r.src.nodata))
            else:
                held.update(keys)
            if r.mask is not None:
                held.update(keys_of(r.mask))

    def on_tile(key: Any, arr: np.ndarray) -> None:
        # paste and mark valid pixels here, in the decode threads: no full-image pass
        # over the output after the last tile
        for dst, rd, have, nodata in streamed.get(key, ()):
            region = paste_tile(dst, rd, key.index, arr)
            if region is not None and have is not None:
                _mark_valid(have[region], dst[region], nodata)

    decoded = await fetch_tiles_async(tiles, opts, on_tile=on_tile, keep=held.__contains__)

    def assemble() -> list[tuple[np.ndarray, np.ndarray | None]]:
        return [_assemble(t, decoded, o) for t, o in zip(targets, outs, strict=True)]

    small = sum(t.grid.height * t.grid.width for t in targets) <= _INLINE_PIXELS
    if small and not held and all(t.mask is None for t in targets):
        return assemble()  # every target is complete but for a fill pass at most
    # pasting later reads, warping, masking: off the event loop, on the (idle) decode pool
    return await asyncio.get_running_loop().run_in_executor(decode_executor(), assemble)


_INLINE_PIXELS = 1 << 22
"""Targets this small, and complete when their tiles are pasted, are finished on the
event loop's thread: a hand-off to a thread would cost more than the work."""


def _streams_first(t: Target, dtype: np.dtype) -> bool:
    """Whether ``t``'s first read is pasted tile by tile into the output as it decodes
    (same pixel grid, same dtype)."""
    if not t.reads:
        return False
    first = t.reads[0]
    # a masked read is applied when its mask tiles are in too: at assembly
    return bool(first.direct and first.mask is None and first.src.dtype == dtype)


class _Output(NamedTuple):
    """A target's output as allocated: the array, its validity mask (when the first read
    streams into it and the mask is wanted or needed), fill value and nodata."""

    out: np.ndarray
    have: np.ndarray | None
    fill: Any
    nodata: Any
    streamed: bool  # the first read is pasted tile by tile as it decodes


def _allocate(t: Target) -> _Output:
    """The output, and when the first read streams into it, pixels outside the read's
    image already set (nodata / invalid): every other pixel is written by a tile."""
    first = t.sources[0] if t.sources else None
    if t.dtype is not None:
        dtype = np.dtype(t.dtype)
    elif t.out is not None:
        dtype = t.out.dtype
    else:
        dtype = first.dtype if first else np.dtype("float32")
    nodata = t.nodata if t.nodata is not None else (first.nodata if first else None)
    fill = _fill_value(dtype, nodata)
    out = t.out if t.out is not None else pooled_empty(t.grid.shape, dtype)
    rect = inside_rect(t.reads[0].rd) if _streams_first(t, dtype) else None
    if rect is None:
        out.fill(fill)
        return _Output(out, None, fill, nodata, streamed=False)
    # no full-size fill: the tiles write the inside, only the margins need the fill
    have = None
    if not _mask_unneeded(t, fill):
        have = t.valid_out if t.valid_out is not None else pooled_empty(t.grid.shape, bool)
    (y0, y1), (x0, x1) = ((r.start, r.stop) for r in rect)
    for sl in (np.s_[:y0, :], np.s_[y1:, :], np.s_[y0:y1, :x0], np.s_[y0:y1, x1:]):
        out[sl] = fill
        if have is not None:
            have[sl] = False
    return _Output(out, have, fill, nodata, streamed=True)


def _mask_unneeded(t: Target, fill: Any) -> bool:
    """Whether a streamed target can skip its validity mask: not wanted, and nothing in
    the assembly reads it (one source with the target's fill value, no geometry mask)."""
    if t.want_valid or t.valid_out is not None or t.mask is not None or len(t.reads) != 1:
        return False
    src = t.reads[0].src
    src_fill = _fill_value(src.dtype, src.nodata)
    return _same_value(src_fill, fill) and not _may_hold_nan(src.dtype, fill)


def _may_hold_nan(dtype: np.dtype, fill: Any) -> bool:
    """Whether pixels of ``dtype`` may hold NaN, which is no data, where the output's
    fill is not NaN (so NaN pixels must be replaced by the fill)."""
    return dtype.kind == "f" and not is_nan(fill)


def _mark_valid(have: np.ndarray, values: np.ndarray, nodata: Any) -> None:
    """``have[...] = values are valid`` in place (as :func:`_valid`: NaN never is).

    ``have`` is usually a tile's region of the mask, a non-contiguous view: numpy 2.4's
    ``np.isnan(x, out=view)`` writes only part of such a view (the rest kept whatever
    the memory held), so NaN is tested into a fresh array and then copied.
    """
    if values.dtype.kind == "f":
        np.logical_not(np.isnan(values), out=have)
        if nodata is not None and not is_nan(nodata):
            have &= values != nodata
    elif nodata is None:
        have[...] = True
    else:
        np.not_equal(values, nodata, out=have)


def _assemble(t: Target, decoded: dict, o: _Output) -> tuple[np.ndarray, np.ndarray | None]:
    """Complete the target from its reads in priority order (first valid pixel wins);
    the first read, when streamed, is already pasted into ``out`` and marked in
    ``have`` (when there is one)."""
    from .plan import paste

    out, have, fill = o.out, o.have, o.fill
    for i, (src, rd, lgrid, direct, mask) in enumerate(t.reads):
        src_fill = _fill_value(src.dtype, src.nodata)
        if i == 0 and o.streamed:
            if have is not None and not (
                _same_value(src_fill, fill) and not _may_hold_nan(src.dtype, fill)
            ):
                np.copyto(out, fill, where=~have)  # pixels without data hold the fill
        else:
            buf = np.full(rd.shape, src_fill, dtype=src.dtype)
            inside = paste(buf, rd, decoded)
            valid = _valid(buf, inside, src.nodata)
            if mask is not None:  # the internal mask or alpha: 0 is no data (GDAL)
                kept = np.zeros(mask.shape, dtype=mask.header.levels[mask.level].dtype)
                paste(kept, mask, decoded)
                valid &= kept != 0
            if not direct:
                win = lgrid.window(rd.window[0], rd.window[1], *rd.shape)
                buf, valid = _warp(buf, valid, win, t.grid, t.resampling, src_fill)
                _clear_slivers(valid, lgrid, t.grid)
            if have is None:
                have = _no_valid_pixels(t)
            take = valid & ~have
            np.copyto(out, buf, where=take, casting="unsafe")
            have |= take
        if have is not None and have.all():
            break
    if have is None and (t.want_valid or t.mask is not None):
        have = _no_valid_pixels(t)
    if t.mask is not None:
        have &= t.mask
        np.copyto(out, fill, where=~t.mask, casting="unsafe")
    return out, have if t.want_valid else None


def _no_valid_pixels(t: Target) -> np.ndarray:
    """A validity mask of ``t`` with every pixel False (in ``t.valid_out`` when given)."""
    if t.valid_out is None:
        return np.zeros(t.grid.shape, dtype=bool)
    t.valid_out.fill(False)
    return t.valid_out


def _same_value(a: Any, b: Any) -> bool:
    if is_nan(a) and is_nan(b):
        return True
    return a == b


def _warp(
    arr: np.ndarray, valid: np.ndarray, src: Grid, dst: Grid, resampling: str, fill: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Reproject ``arr`` onto ``dst`` with GDAL's warp kernel; invalid source pixels
    never contribute (they are given an alpha of 0 through a nodata value)."""
    from rasterio.crs import CRS
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    from ..geo.crs import to_crs

    src_crs = CRS.from_wkt(to_crs(src.crs).to_wkt())
    dst_crs = CRS.from_wkt(to_crs(dst.crs).to_wkt())
    if arr.dtype.kind == "f":
        work = np.where(valid, arr, np.nan).astype(arr.dtype, copy=False)
        nodata = np.nan
    else:
        # GDAL treats src_nodata as no data: it must be a value no valid pixel holds
        # (valid zeros of a file without nodata are data), else widen to float and NaN
        nodata = _unused_value(arr[valid], arr.dtype, fill)
        if nodata is None:
            work, nodata = np.where(valid, arr, np.nan).astype("float64"), np.nan
        else:
            work = np.where(valid, arr, nodata).astype(arr.dtype, copy=False)
    out = np.full(dst.shape, nodata, dtype=work.dtype)
    reproject(
        work, out,
        src_transform=src.transform, src_crs=src_crs, src_nodata=nodata,
        dst_transform=dst.transform, dst_crs=dst_crs, dst_nodata=nodata,
        resampling=Resampling[resampling],
        init_dest_nodata=True,
        **_kernel_scale(src, dst),
    )  # fmt: skip
    if out.dtype.kind == "f" and (nodata is None or is_nan(nodata)):
        ok = ~np.isnan(out)
    else:
        ok = out != nodata
    if work.dtype != arr.dtype:
        # back to the integer type as GDAL's kernel writes one: rounded half up and
        # clamped (an interpolation overshooting 127 is 127 in int8, never -128)
        info = np.iinfo(arr.dtype)
        out = np.clip(np.floor(np.where(ok, out, 0) + 0.5), info.min, info.max).astype(arr.dtype)
    return out, ok


def _kernel_scale(src: Grid, dst: Grid) -> dict[str, float]:
    """GDAL's ``XSCALE`` / ``YSCALE`` warp options: target pixels per source pixel.

    GDAL scales its kernels (bilinear, cubic, lanczos...) by this ratio when it
    downsamples, and otherwise guesses it per chunk from the chunk's target size over
    the source window it needs, clipped to the source. A tile warped onto a target grid
    larger than itself (a strip over many tiles) gave a wrong ratio and a wrong kernel
    on every pixel, so the output depended on how the data was tiled.
    """
    if src.crs == dst.crs:
        dx, dy = dst.resolution
    else:
        try:
            b = transform_bounds(dst.bounds, dst.crs, src.crs)
        except ValidationError:
            return {}
        dx, dy = (b[2] - b[0]) / dst.width, (b[3] - b[1]) / dst.height
    sx, sy = src.resolution
    if not (dx > 0 and dy > 0 and math.isfinite(dx) and math.isfinite(dy)):
        return {}
    return {"XSCALE": _gdal_scale(sx / dx), "YSCALE": _gdal_scale(sy / dy)}


def _gdal_scale(scale: float) -> float:
    """A downsampling ratio within 0.05 of 1/n made exactly 1/n, as GDAL makes the
    ratio it computes itself (its lanczos kernel differs by whole units between 1/3 and
    the float 0.33333333333333337)."""
    if scale < 1.0:
        n = int(1.0 / scale + 0.5)
        if n > 0 and abs(1.0 / scale - n) < 0.05:
            return 1.0 / n
    return scale


def _clear_slivers(valid: np.ndarray, src: Grid, dst: Grid, eps: float = 1e-6) -> None:
    """Clear (in place) the ``dst`` pixels that overlap the source raster by less than
    ``eps`` of a pixel.

    Where a target pixel's edge meets the raster's edge (a coarsened grid anchored on a
    tile's origin, at a tile seam), float noise in the two transforms leaves a ~1e-13 px
    overlap, and GDAL's area kernels (``average``, ``mode``, ``max``...) give that pixel
    the full value of the raster's edge pixels; as the first valid pixel wins, it
    replaced the neighbour tile's right value. Only grids of one CRS and axis-aligned
    pixels can share an edge exactly, so others are left alone.
    """
    if not (src.is_axis_aligned and dst.is_axis_aligned) or src.crs != dst.crs:
        return
    left, bottom, right, top = src.bounds
    t = dst.transform
    c0, c1 = sorted(((left - t.c) / t.a, (right - t.c) / t.a))
    r0, r1 = sorted(((top - t.f) / t.e, (bottom - t.f) / t.e))
    cols, rows = np.arange(dst.width), np.arange(dst.height)
    col_out = (cols + 1 <= c0 + eps) | (cols >= c1 - eps)
    row_out = (rows + 1 <= r0 + eps) | (rows >= r1 - eps)
    if col_out.any():
        valid[:, col_out] = False
    if row_out.any():
        valid[row_out, :] = False


def _near_any(values: np.ndarray, v: Any) -> bool:
    """Whether GDAL's warper would take any of ``values`` for the nodata value ``v``: it
    compares them as floats, within two float32 epsilons relative (so 2147483646 is
    no data when it is 2147483647): equality for small values, a margin for large ones."""
    tol = 4 * float(np.finfo(np.float32).eps) * abs(float(v))
    if tol < 0.5:
        return bool(np.any(values == v))
    return bool(np.any(np.abs(values.astype(np.float64) - float(v)) <= tol))


def _unused_value(values: np.ndarray, dtype: np.dtype, prefer: Any) -> Any:
    """An integer of ``dtype`` that none of ``values`` holds (``prefer`` if it is free,
    else the type's extremes, else any free value of a small type); None when every
    value is taken."""
    info = np.iinfo(dtype)
    for v in (prefer, info.max, info.min):
        usable = v is not None and not is_nan(v) and info.min <= v <= info.max
        if usable and not _near_any(values, v):
            return dtype.type(v)
    if dtype.itemsize <= 2:  # a histogram finds a free value
        counts = np.bincount((values.astype(np.int64) - info.min).ravel(),
                             minlength=info.max - info.min + 1)  # fmt: skip
        free = np.flatnonzero(counts == 0)
        if len(free):
            return dtype.type(int(free[0]) + info.min)
    return None
