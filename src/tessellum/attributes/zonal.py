"""Zonal statistics on arrays the read engine returns: exact pixel coverage fractions
(:mod:`tessellum.geo.coverage`, checked against exactextract), then every aggregation
computed in numpy from (value, weight) pairs.

Weights: a pixel's weight is the fraction of it the geometry covers, times its cell area
on geographic (lon/lat) grids, where cells shrink towards the poles (spherical area,
``R² · Δλ · |sin φ₁ − sin φ₂|``). On projected grids every cell has the same area, so the
fraction alone is the weight. Invalid pixels (nodata, outside every record) never
contribute a value; they only lower ``coverage_fraction``.

The definitions match exactextract's operations with ``coverage_weight="fraction"``
(projected grids) or ``"area_spherical_m2"`` (geographic grids): ``mean``, ``median``
(weighted quantile), ``stdev`` (population), ``majority``/``minority`` (largest/smallest
total weight), ``unique``, ``frac`` (``distribution``). ``sum`` is always the sum of
``value × coverage fraction`` (exactextract's default ``sum``): a total over the pixels
the geometry covers, not an area integral.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import ValidationError
from .models import AggregationMethod

__all__ = [
    "EARTH_RADIUS_M",
    "Samples",
    "ZonalOutcome",
    "aggregate",
    "cell_area_rows",
    "first_valid",
    "method_note",
    "pixel_coverage",
    "pixel_coverage_many",
    "pixel_coverage_samples",
    "weighted_quantile",
    "zonal_point",
    "zonal_polygon",
    "zonal_polygons",
]

EARTH_RADIUS_M = 6_371_008.8
"""Mean Earth radius used for cell areas on geographic grids."""

_EDGE_EPS = 1e-9  # pixel fraction: float noise of a grid origin, far below any real offset
_NUMERIC_ONLY = {AggregationMethod.mean, AggregationMethod.std, AggregationMethod.sum}


@dataclass
class ZonalOutcome:
    """One geometry's statistic plus what QC needs to judge it."""

    value: Any
    coverage_fraction: float
    pixel_count: int
    estimated: bool = False
    """The value is interpolated (bilinear point) or stands for less than one pixel."""
    values: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    """Valid pixel values that contributed (for QC)."""
    notes: list[str] = field(default_factory=list)


def first_valid(data: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mosaic a (T, H, W) stack: the first record with a valid pixel wins."""
    if data.shape[0] == 1:
        return data[0], valid[0]
    out, have = data[0].copy(), valid[0].copy()
    for layer, ok in zip(data[1:], valid[1:], strict=True):
        np.copyto(out, layer, where=ok & ~have)  # T passes: 3x faster than argmax + take
        have |= ok
    return out, have


def cell_area_rows(grid: Any) -> np.ndarray:
    """Area in m² of one cell of each row of a north-up geographic grid (read-only; the
    same array is returned for grids with the same rows)."""
    t = grid.transform
    return _cell_area_rows(float(t.a), float(t.e), float(t.f), int(grid.height))


@lru_cache(maxsize=64)
def _cell_area_rows(a: float, e: float, f: float, height: int) -> np.ndarray:
    edges = np.radians(f + np.arange(height + 1) * e)
    band = np.abs(np.diff(np.sin(np.clip(edges, -math.pi / 2, math.pi / 2))))
    out = EARTH_RADIUS_M**2 * abs(math.radians(a)) * band
    out.flags.writeable = False
    return out


def pixel_coverage(geom: Any, grid: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and covered fractions of the pixels of ``grid`` under ``geom``
    (``geom`` in the grid's CRS), computed exactly (:func:`tessellum.geo.coverage.cell_coverage`)."""
    return pixel_coverage_many([geom], grid)[0]


def weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    """Weighted quantile as exactextract computes it (stats.stackexchange.com/a/13223):
    ``S_k = k·w_k + (n−1)·Σ_{i<k} w_i`` over the sorted *distinct* values (equal values
    pool their weights, as exactextract's frequency table does), linear between
    neighbours."""
    xs, inverse = np.unique(np.asarray(x, dtype=np.float64), return_inverse=True)
    ws = np.bincount(inverse.ravel(), weights=np.asarray(w, dtype=np.float64).ravel())
    n = len(xs)
    if n == 1:
        return float(xs[0])
    prev = np.concatenate([[0.0], np.cumsum(ws)[:-1]])
    s = np.arange(n) * ws + (n - 1) * prev
    target = q * s[-1]
    k = int(np.searchsorted(s, target, side="right"))
    if k >= n:
        return float(xs[-1])
    if k == 0:
        return float(xs[0])
    lo = k - 1
    return float(xs[lo] + (xs[k] - xs[lo]) * (target - s[lo]) / (s[k] - s[lo]))


def _scalar(v: Any) -> int | float:
    item = v.item() if hasattr(v, "item") else v
    return item if isinstance(item, int) else float(item)


def aggregate(
    values: np.ndarray,
    weights: np.ndarray,
    fractions: np.ndarray,
    method: AggregationMethod | str,
) -> Any:
    """Reduce valid pixel ``values`` with their ``weights`` (fraction × cell area) and
    coverage ``fractions``; ``None`` when there are no values."""
    method = AggregationMethod(method)
    if values.size == 0 or float(weights.sum()) <= 0:
        return None
    v = values.astype(np.float64) if values.dtype.kind == "f" else values
    if method is AggregationMethod.mean:
        return float(np.sum(weights * v) / np.sum(weights))
    if method is AggregationMethod.sum:
        return float(np.sum(fractions * v))
    if method is AggregationMethod.std:
        mean = np.sum(weights * v) / np.sum(weights)
        return float(math.sqrt(max(np.sum(weights * (v - mean) ** 2) / np.sum(weights), 0.0)))
    if method is AggregationMethod.median:
        return weighted_quantile(np.asarray(v, dtype=np.float64), weights, 0.5)
    if method is AggregationMethod.min:
        return _scalar(np.min(v))
    if method is AggregationMethod.max:
        return _scalar(np.max(v))
    classes, inverse = np.unique(v, return_inverse=True)
    if method is AggregationMethod.unique:
        return [_scalar(c) for c in classes]
    totals = np.bincount(inverse.ravel(), weights=weights.ravel(), minlength=len(classes))
    if method is AggregationMethod.majority:
        return _scalar(classes[int(np.argmax(totals))])  # ties: the smallest value
    if method is AggregationMethod.minority:
        return _scalar(classes[int(np.argmin(totals))])
    share = totals / totals.sum()
    return {_class_key(c): float(f) for c, f in zip(classes, share, strict=True)}


def _class_key(code: Any) -> str:
    c = _scalar(code)
    return str(int(c)) if float(c).is_integer() else repr(float(c))


def method_note(method: AggregationMethod, categorical: bool) -> str | None:
    """A QC note when an aggregation is computed as asked but means little for the data
    kind (the mean of class codes); ``None`` otherwise."""
    if categorical and method in _NUMERIC_ONLY:
        return (
            f"{method.value!r} of class codes has no physical meaning; use majority, "
            "minority, unique or distribution"
        )
    return None


@dataclass
class Samples:
    """Covered pixels of one geometry: valid values with their weights and fractions,
    and the total weight of every covered pixel (valid or not)."""

    values: np.ndarray
    weights: np.ndarray
    fractions: np.ndarray
    total_weight: float
    total_fraction: float

    def merge(self, others: list[Samples], *, extra_invalid: float = 0.0) -> Samples:
        """Concatenate pieces of one geometry (e.g. both sides of the antimeridian);
        ``extra_invalid`` adds area (m²) that no record covers."""
        parts = [self, *others]
        return Samples(
            np.concatenate([p.values for p in parts]),
            np.concatenate([p.weights for p in parts]),
            np.concatenate([p.fractions for p in parts]),
            sum(p.total_weight for p in parts) + extra_invalid,
            sum(p.total_fraction for p in parts),
        )


def pixel_coverage_many(
    geoms: list[Any], grid: Any
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`pixel_coverage` of several geometries on one grid in one pass."""
    from ..geo.coverage import cell_coverage

    cov = cell_coverage(geoms, grid)
    cuts = np.searchsorted(cov.geom, np.arange(1, len(geoms)))
    return list(
        zip(
            np.split(cov.row, cuts),
            np.split(cov.col, cuts),
            np.split(cov.fraction, cuts),
            strict=True,
        )
    )


def pixel_coverage_samples(
    geom: Any,
    data: np.ndarray,
    valid: np.ndarray,
    grid: Any,
    *,
    geographic: bool,
    coverage: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Samples:
    """The :class:`Samples` of ``geom`` (in the grid's CRS) over an (H, W) array.

    Weights are coverage fraction × cell area: spherical m² on geographic grids, the
    constant pixel area (CRS units²) on projected ones. ``coverage`` passes rows,
    columns and fractions already computed (:func:`pixel_coverage_many`).
    """
    rows, cols, frac = coverage if coverage is not None else pixel_coverage(geom, grid)
    if geographic:
        area = cell_area_rows(grid)[rows]
    else:
        t = grid.transform
        area = np.full(frac.shape, abs(t.a * t.e - t.b * t.d))
    w_all = frac * area
    ok = valid[rows, cols]
    return Samples(
        data[rows[ok], cols[ok]], w_all[ok], frac[ok], float(w_all.sum()), float(frac.sum())
    )


_BY_CLASS = {
    AggregationMethod.majority,
    AggregationMethod.minority,
    AggregationMethod.distribution,
    AggregationMethod.unique,
}
_DENSE_CLASS_CELLS = 20_000_000
"""Largest (geometries x value range) table of class totals built densely; beyond it
class totals come from sorting the (geometry, value) pairs."""


def zonal_polygons(
    geoms: list[Any],
    data: np.ndarray,
    valid: np.ndarray,
    grid: Any,
    method: AggregationMethod,
    *,
    geographic: bool,
) -> list[ZonalOutcome]:
    """:func:`zonal_polygon` of many (Multi)Polygons (in the grid's CRS) over one (H, W)
    mosaic, vectorized over the geometries.

    The same definitions as :func:`pixel_coverage_samples` + :func:`zonal_polygon`
    (exactextract's, with ``coverage_weight`` ``area_spherical_m2`` on geographic grids
    and ``fraction`` on projected ones), computed for every geometry at once from one
    :func:`~tessellum.geo.coverage.cell_coverage` pass: the many-small-polygons case is
    bound by per-geometry work, so no per-geometry arrays are made. Outcomes carry no
    ``values``: check the mosaic for suspect pixels beforehand
    (:func:`tessellum.attributes.qc.suspect_pixels`).
    """
    method = AggregationMethod(method)
    if data.shape != valid.shape or data.shape != (grid.height, grid.width):
        raise ValidationError(
            f"data {data.shape} and valid {valid.shape} must match the grid "
            f"({grid.height}, {grid.width})"
        )
    from ._runs import MosaicSums

    sums = MosaicSums(data, valid)  # row prefix sums, shared by the batches
    out: list[ZonalOutcome] = []
    for lo, hi in _batches(geoms, grid):
        out += _zonal_batch(geoms[lo:hi], sums, grid, method, geographic)
    return out


_BATCH_CELLS = 2_000_000
"""Polygon-box cells per vectorized batch: bounds the temporaries (≈100 MB) of batches
of very many polygons; within a batch every step is one numpy pass over all cells.
(Smaller batches, 60-250 k cells, measured no faster on 2,000 catchments.)"""


def _batches(geoms: list[Any], grid: Any) -> list[tuple[int, int]]:
    """Consecutive ``[lo, hi)`` slices of ``geoms`` whose boxes hold about
    :data:`_BATCH_CELLS` cells (a larger polygon is a batch of its own)."""
    import shapely

    if not geoms:
        return []
    arr = np.empty(len(geoms), dtype=object)
    arr[:] = geoms
    b = shapely.bounds(arr)
    t = grid.transform
    cells = np.nan_to_num((b[:, 2] - b[:, 0]) / t.a + 2) * np.nan_to_num(
        (b[:, 3] - b[:, 1]) / -t.e + 2
    )
    batch = (np.cumsum(cells) // _BATCH_CELLS).astype(np.int64)
    cuts = np.flatnonzero(np.diff(batch)) + 1
    edges = [0, *cuts.tolist(), len(geoms)]
    return list(itertools.pairwise(edges))


def _zonal_batch(
    geoms: list[Any], sums: Any, grid: Any, method: AggregationMethod, geographic: bool
) -> list[ZonalOutcome]:
    n_geoms = len(geoms)
    integer = sums.data.dtype.kind in "iub"
    area = cell_area_rows(grid) if geographic else None
    compiled = _compiled_totals(geoms, sums, grid, method, area, integer)
    if compiled is None:
        t = _sparse_totals(geoms, sums, grid, method, area, integer)
    else:  # small polygons summed in the compiled pass, the others as runs
        done, t = compiled
        rest = np.flatnonzero(~done)
        if len(rest):
            t.put(rest, _sparse_totals([geoms[i] for i in rest], sums, grid, method, area, integer))
    out = []
    for i in range(n_geoms):
        if t.total_weight[i] <= 0:
            out.append(ZonalOutcome(None, 0.0, 0, notes=["geometry covers no pixel"]))
            continue
        n = int(t.count[i])
        cov_i = float(min(1.0, t.valid_weight[i] / t.total_weight[i])) if n else 0.0
        outcome = ZonalOutcome(t.values[i] if n else None, cov_i, n)
        if t.total_fraction[i] < 1.0 and n:
            outcome.estimated = True
            outcome.notes.append("geometry is smaller than one pixel")
        out.append(outcome)
    return out


COMPILED = True
"""Sum small polygons in the compiled pass (``tessellum._kernels``) when it is built;
False runs everything through coverage runs (the tests compare both)."""


def _compiled_totals(
    geoms: list[Any], sums: Any, grid: Any, method: AggregationMethod,
    area: np.ndarray | None, integer: bool,
) -> Any:  # fmt: skip
    """:func:`~._dense.dense_statistics`, or None without the compiled extension or for
    ``method``s it does not sum."""
    dense_statistics = _compiled_pass() if COMPILED else None
    if dense_statistics is None:
        return None
    return dense_statistics(geoms, sums, grid, method, area, integer)


@lru_cache(maxsize=1)
def _compiled_pass() -> Any:
    """:func:`~._dense.dense_statistics`, or None when ``tessellum._kernels`` is not
    built (no C compiler at install): looked up once per process."""
    try:
        from ._dense import dense_statistics
    except ImportError:
        return None
    return dense_statistics


def _sparse_totals(
    geoms: list[Any], sums: Any, grid: Any, method: AggregationMethod,
    area: np.ndarray | None, integer: bool,
) -> Any:  # fmt: skip
    """Per-polygon totals from coverage runs: prefix sums where ``method`` allows,
    else every covered cell spelled out."""
    from ..geo.coverage import coverage_runs
    from ._runs import RunTotals, run_statistics

    n_geoms = len(geoms)
    data, valid = sums.data, sums.valid
    runs = coverage_runs(geoms, grid)
    found = run_statistics(runs, sums, method, n_geoms, area, integer)
    if found is not None:
        return found
    cov = runs.expand()  # every cell's value is needed
    cell = cov.row * grid.width + cov.col
    weight = cov.fraction * area[cov.row] if area is not None else cov.fraction
    total_w = np.bincount(cov.geom, weight, n_geoms)
    total_f = np.bincount(cov.geom, cov.fraction, n_geoms)
    ok = valid.ravel()[cell]
    px = _Pixels(cov.geom[ok], data.ravel()[cell[ok]], weight[ok], cov.fraction[ok], n_geoms)
    values = _values_per_geometry(px, method, integer)
    return RunTotals(values, px.count, px.weight_sum, total_w, total_f)


class _Pixels:
    """Valid covered pixels of a batch, sorted by geometry: geometry index, value,
    weight (fraction x cell area) and coverage fraction, plus per-geometry counts."""

    def __init__(
        self, geom: np.ndarray, value: np.ndarray, weight: np.ndarray, fraction: np.ndarray,
        n_geoms: int,
    ) -> None:  # fmt: skip
        self.geom, self.value, self.weight, self.fraction = geom, value, weight, fraction
        self.n_geoms = n_geoms
        self.count = np.bincount(geom, minlength=n_geoms)
        self.weight_sum = np.bincount(geom, weight, n_geoms)
        self.start = np.cumsum(self.count) - self.count

    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.bincount(self.geom, self.weight * self.value, self.n_geoms) / self.weight_sum


def _values_per_geometry(px: _Pixels, method: AggregationMethod, integer: bool) -> list[Any]:
    """The statistic of every geometry (entries of geometries without pixels are unused)."""
    n = px.n_geoms
    if method in _BY_CLASS:
        return _class_statistic(px, method, integer)
    if method in (AggregationMethod.min, AggregationMethod.max):
        return _extreme(px, method, integer)
    v = px.value.astype(np.float64)
    if method is AggregationMethod.mean:
        return px.mean().tolist()
    if method is AggregationMethod.sum:
        return np.bincount(px.geom, px.fraction * v, n).tolist()
    if method is AggregationMethod.std:
        mean = px.mean()
        dev = np.bincount(px.geom, px.weight * (v - mean[px.geom]) ** 2, n)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(np.maximum(dev / px.weight_sum, 0.0)).tolist()
    return _weighted_medians(px, v)  # median


def _extreme(px: _Pixels, method: AggregationMethod, integer: bool) -> list[Any]:
    """min / max of every geometry: its pixels are one run of the sorted arrays."""
    has = px.count > 0
    out: list[Any] = [None] * px.n_geoms
    if has.any():
        reduce = np.minimum if method is AggregationMethod.min else np.maximum
        found = reduce.reduceat(px.value, px.start[has])
        found = found.tolist() if integer else found.astype(np.float64).tolist()
        for i, val in zip(np.flatnonzero(has).tolist(), found, strict=True):
            out[i] = val
    return out


def _weighted_medians(px: _Pixels, v: np.ndarray) -> list[Any]:
    """:func:`weighted_quantile` (q = 0.5) of every geometry at once: equal values pooled
    per geometry, ``S_k = k·w_k + (n−1)·Σ_{i<k} w_i`` within each geometry."""
    out: list[Any] = [None] * px.n_geoms
    if not len(v):
        return out
    order = np.lexsort((v, px.geom))
    g, xs, ws = px.geom[order], v[order], px.weight[order]
    new = np.ones(len(g), dtype=bool)
    new[1:] = (g[1:] != g[:-1]) | (xs[1:] != xs[:-1])
    first = np.flatnonzero(new)
    g, xs, ws = g[first], xs[first], np.add.reduceat(ws, first)  # distinct values, pooled
    n_distinct = np.bincount(g, minlength=px.n_geoms)
    start = np.cumsum(n_distinct) - n_distinct
    k = np.arange(len(g)) - start[g]  # rank of the value within its geometry
    csum = np.cumsum(ws)
    prev = csum - ws - (csum - ws)[start[g]]  # weight of the smaller values of its geometry
    s = k * ws + (n_distinct[g] - 1) * prev
    last = start + n_distinct - 1
    target = 0.5 * s[last[g]]
    # searchsorted(side="right") within each geometry: how many S_k <= the target
    pos = np.bincount(g, s <= target, px.n_geoms).astype(np.int64)
    for i in np.flatnonzero(n_distinct).tolist():
        nd, st, kk = int(n_distinct[i]), int(start[i]), int(pos[i])
        if nd == 1 or kk >= nd:
            out[i] = float(xs[st + nd - 1]) if nd > 1 else float(xs[st])
        elif kk == 0:
            out[i] = float(xs[st])
        else:
            lo, hi = st + kk - 1, st + kk
            t = (0.5 * s[st + nd - 1] - s[lo]) / (s[hi] - s[lo])
            out[i] = float(xs[lo] + (xs[hi] - xs[lo]) * t)
    return out


def _class_statistic(px: _Pixels, method: AggregationMethod, integer: bool) -> list[Any]:
    """majority / minority / distribution / unique of every geometry from its pixels."""
    g, cls, tot = _class_totals(px, integer)
    return class_values(g, cls, tot, px.weight_sum, method, px.n_geoms, integer)


def class_values(
    g: np.ndarray, cls: np.ndarray, tot: np.ndarray, valid_weight: np.ndarray,
    method: AggregationMethod, n_geoms: int, integer: bool,
) -> list[Any]:  # fmt: skip
    """majority / minority / distribution / unique of every geometry from its class
    totals: ``(geometry, class value, total weight)`` of each class present, sorted by
    geometry then value (so ties go to the smallest value); ``valid_weight`` per
    geometry divides the ``distribution`` shares."""
    out: list[Any] = [None] * n_geoms
    if not len(g):
        return out
    cuts = np.flatnonzero(np.diff(g)) + 1
    starts = np.concatenate([[0], cuts])
    codes = cls.tolist() if integer else cls.astype(np.float64).tolist()
    owners = g[starts].tolist()
    if method is AggregationMethod.unique:
        for i, a, b in zip(owners, starts.tolist(), [*cuts.tolist(), len(g)], strict=True):
            out[i] = codes[a:b]
        return out
    if method is AggregationMethod.distribution:
        share = (tot / valid_weight[g]).tolist()
        keys = [_class_key(c) for c in codes]
        for i, a, b in zip(owners, starts.tolist(), [*cuts.tolist(), len(g)], strict=True):
            out[i] = dict(zip(keys[a:b], share[a:b], strict=True))
        return out
    pick = np.maximum if method is AggregationMethod.majority else np.minimum
    best = pick.reduceat(tot, starts)
    hit = np.flatnonzero(tot == best[np.searchsorted(starts, np.arange(len(g)), "right") - 1])
    first = hit[np.unique(g[hit], return_index=True)[1]]  # the smallest class among ties
    for j in first.tolist():
        out[int(g[j])] = codes[j]
    return out


def _class_totals(px: _Pixels, integer: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(geometry, class value, total weight)`` of every class present in every
    geometry, sorted by geometry then value."""
    v = px.value
    if integer and len(v):
        lo, hi = int(v.min()), int(v.max())
        span = hi - lo + 1
        if span * px.n_geoms <= _DENSE_CLASS_CELLS:
            key = px.geom * span + (v.astype(np.int64) - lo)
            count = np.bincount(key, minlength=span * px.n_geoms)
            present = np.flatnonzero(count)
            tot = np.bincount(key, px.weight, span * px.n_geoms)[present]
            g, c = np.divmod(present, span)
            return g, (c + lo).astype(v.dtype), tot
    order = np.lexsort((v, px.geom))
    g, xs = px.geom[order], v[order]
    new = np.ones(len(g), dtype=bool)
    new[1:] = (g[1:] != g[:-1]) | (xs[1:] != xs[:-1])
    first = np.flatnonzero(new)
    return (
        g[first],
        xs[first],
        np.add.reduceat(px.weight[order], first) if len(first) else px.weight[:0],
    )


def zonal_polygon(samples: Samples, method: AggregationMethod) -> ZonalOutcome:
    """The statistic of a (Multi)Polygon from its :class:`Samples`."""
    if samples.total_weight <= 0:
        return ZonalOutcome(None, 0.0, 0, notes=["geometry covers no pixel"])
    vals, w, f = samples.values, samples.weights, samples.fractions
    cov = float(min(1.0, w.sum() / samples.total_weight))
    out = ZonalOutcome(aggregate(vals, w, f, method), cov, int(vals.size), values=vals)
    if samples.total_fraction < 1.0 and vals.size:
        out.estimated = True
        out.notes.append("geometry is smaller than one pixel")
    return out


def zonal_point(
    point: Any,
    data: np.ndarray,
    valid: np.ndarray,
    grid: Any,
    method: AggregationMethod,
    *,
    bilinear: bool = False,
) -> ZonalOutcome:
    """Value of a Point (in the grid's CRS): its pixel, or bilinear between the four
    nearest pixel centres (invalid neighbours are left out and weights renormalised)."""
    inv = ~grid.transform
    col_f = inv.a * point.x + inv.b * point.y + inv.c
    row_f = inv.d * point.x + inv.e * point.y + inv.f
    h, w = data.shape
    if bilinear:
        c0, r0 = math.floor(col_f - 0.5), math.floor(row_f - 0.5)
        tc, tr = col_f - 0.5 - c0, row_f - 0.5 - r0
        picks = [
            (r0, c0, (1 - tr) * (1 - tc)),
            (r0, c0 + 1, (1 - tr) * tc),
            (r0 + 1, c0, tr * (1 - tc)),
            (r0 + 1, c0 + 1, tr * tc),
        ]
        use = [(r, c, wt) for r, c, wt in picks if 0 <= r < h and 0 <= c < w and valid[r, c]]
        if use:
            wts = np.array([wt for _, _, wt in use])
            if wts.sum() > 0:
                vals = np.array([float(data[r, c]) for r, c, _ in use])
                value = float(np.sum(wts * vals) / wts.sum())
                out = ZonalOutcome(value, 1.0, len(use), estimated=True, values=vals)
                out.notes.append("bilinear interpolation")
                if method not in (AggregationMethod.mean, AggregationMethod.median):
                    out.value = aggregate(np.array([value]), np.ones(1), np.ones(1), method)
                return out
    # a point on a pixel edge is in the pixel right of / below it (GDAL's floor); the
    # grid's origin is a float sum, so allow its noise (as Grid.snap_bounds does)
    r, c = math.floor(row_f + _EDGE_EPS), math.floor(col_f + _EDGE_EPS)
    r, c = min(max(r, 0), h - 1), min(max(c, 0), w - 1)
    if not valid[r, c]:
        return ZonalOutcome(None, 0.0, 0, notes=["the point's pixel is nodata"])
    vals = data[r : r + 1, c]
    return ZonalOutcome(aggregate(vals, np.ones(1), np.ones(1), method), 1.0, 1, values=vals)
