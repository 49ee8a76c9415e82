"""Zonal statistics from coverage runs: a run's pixels are summed from row prefix sums
of the mosaic, so the work grows with the polygons' perimeters, not their areas.

Inside a polygon every cell of a row between two boundary cells has one covered
fraction (:class:`tessellum.geo.coverage.CoverageRuns`); its valid pixels' count, sum,
sum of squares are differences of row prefix sums: ``mean``, ``sum`` and ``std`` cost
two lookups per run. Class statistics of integer data (``majority``, ``minority``,
``distribution``, ``unique``) count the classes of a run's pixels in one pass over them
(no per-pixel arrays of weights or polygons). The others need each cell's value and
return None here (the caller spells the runs out).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .models import AggregationMethod
from .zonal import _BY_CLASS, class_values

__all__ = ["MosaicSums", "RunTotals", "run_statistics", "summable"]

MAX_CLASSES = 256
"""Class statistics of integer mosaics with at most this many distinct valid values
accumulate a (polygons x classes) table; beyond, they spell the runs out."""
_MAX_TABLE = 20_000_000
"""Largest (polygons x classes) table."""

_MOMENTS = {AggregationMethod.mean, AggregationMethod.sum, AggregationMethod.std}


class MosaicSums:
    """Row prefix sums of one (H, W) mosaic, each computed on first use: column ``c`` of
    a row holds the total over the row's columns ``< c``."""

    def __init__(self, data: np.ndarray, valid: np.ndarray) -> None:
        self.data, self.valid = data, valid

    @cached_property
    def count(self) -> np.ndarray:
        """Valid pixels."""
        return _prefix(self.valid.astype(np.int32))

    @cached_property
    def shift(self) -> float:
        """Subtracted from every value before summing (the mean of the valid values):
        sums of squares then lose no precision to a large common offset."""
        vals = self.data[self.valid]
        return float(vals.mean(dtype=np.float64)) if vals.size else 0.0

    @cached_property
    def centred(self) -> np.ndarray:
        """Valid values minus :attr:`shift` (float64; invalid pixels 0)."""
        return np.where(self.valid, self.data.astype(np.float64) - self.shift, 0.0)

    @cached_property
    def values(self) -> np.ndarray:
        """Valid values minus :attr:`shift`."""
        return _prefix(self.centred)

    @cached_property
    def squares(self) -> np.ndarray:
        """Squares of valid values minus :attr:`shift`."""
        return _prefix(self.centred**2)

    @cached_property
    def classes(self) -> np.ndarray | None:
        """The distinct valid values (ascending) of an integer mosaic with at most
        :data:`MAX_CLASSES` of them, else None."""
        if self.data.dtype.kind not in "iub":
            return None
        vals = self.data[self.valid]
        if not vals.size:
            return np.empty(0, self.data.dtype)
        if self.data.dtype.itemsize <= 2:
            lo = int(vals.min())
            present = np.flatnonzero(np.bincount((vals.astype(np.int64) - lo).ravel())) + lo
        else:
            present = np.unique(vals)
        return present.astype(self.data.dtype) if len(present) <= MAX_CLASSES else None

    @cached_property
    def class_index(self) -> np.ndarray:
        """Per pixel: the index of its value in :attr:`classes` (len(classes) if invalid)."""
        classes = self.classes
        assert classes is not None
        idx = np.searchsorted(classes, self.data).astype(np.int32)
        idx[~self.valid] = len(classes)
        return idx


def summable(method: AggregationMethod, sums: MosaicSums, n_geoms: int) -> bool:
    """Whether ``method`` over ``n_geoms`` polygons comes from sums without each cell's
    value: the moments, or class statistics of an integer mosaic with few classes (a
    (polygons x classes) table of at most :data:`_MAX_TABLE` entries)."""
    if method in _MOMENTS:
        return True
    classes = sums.classes
    return (
        method in _BY_CLASS and classes is not None and n_geoms * (len(classes) + 1) <= _MAX_TABLE
    )


def _prefix(a: np.ndarray) -> np.ndarray:
    out = np.zeros(
        (a.shape[0], a.shape[1] + 1), dtype=np.float64 if a.dtype.kind == "f" else np.int64
    )
    np.cumsum(a, axis=1, out=out[:, 1:])
    return out


@dataclass
class RunTotals:
    """Per polygon: the statistic and what QC needs."""

    values: list[Any]
    count: np.ndarray
    """Valid pixels with coverage > 0."""
    valid_weight: np.ndarray
    total_weight: np.ndarray
    total_fraction: np.ndarray

    def put(self, at: np.ndarray, other: RunTotals) -> None:
        """Overwrite the polygons ``at`` with ``other``'s (one entry per index of ``at``)."""
        for mine, theirs in (
            (self.count, other.count),
            (self.valid_weight, other.valid_weight),
            (self.total_weight, other.total_weight),
            (self.total_fraction, other.total_fraction),
        ):
            mine[at] = theirs
        for i, v in zip(at.tolist(), other.values, strict=True):
            self.values[i] = v


def run_statistics(
    runs: Any,
    sums: MosaicSums,
    method: AggregationMethod,
    n_geoms: int,
    area_rows: np.ndarray | None,
    integer: bool,
) -> RunTotals | None:
    """The statistic of every polygon of ``runs`` over ``sums``' mosaic, or None when
    ``method`` needs every cell's value (median, min, max; class statistics of float
    data or of many classes).

    Args:
        runs: a :class:`~tessellum.geo.coverage.CoverageRuns` on the mosaic's grid.
        sums: the mosaic's prefix sums.
        method: the aggregation.
        n_geoms: the number of polygons.
        area_rows: cell area per grid row (geographic grids), or None (weights are the
            fractions alone).
        integer: the mosaic holds integers (statistics keep their type).
    """
    if not summable(method, sums, n_geoms):
        return None
    c = runs.cells
    rg, rr, ra, rb, rf = (
        runs.run_geom,
        runs.run_row,
        runs.run_start,
        runs.run_stop,
        runs.run_fraction,
    )
    cell_w = c.fraction * area_rows[c.row] if area_rows is not None else c.fraction
    run_w = rf * area_rows[rr] if area_rows is not None else rf  # per cell of the run
    length = rb - ra
    ok = sums.valid[c.row, c.col]
    run_n = sums.count[rr, rb] - sums.count[rr, ra]

    def per_geom(cell_weights: np.ndarray, run_weights: np.ndarray) -> np.ndarray:
        return np.bincount(c.geom, cell_weights, n_geoms) + np.bincount(rg, run_weights, n_geoms)

    totals = RunTotals(
        values=[],
        count=per_geom(ok.astype(np.float64), run_n.astype(np.float64)).astype(np.int64),
        valid_weight=per_geom(cell_w * ok, run_w * run_n),
        total_weight=per_geom(cell_w, run_w * length),
        total_fraction=per_geom(c.fraction, rf * length),
    )
    if method in _MOMENTS:
        totals.values = _moments(runs, sums, method, totals, per_geom, cell_w, run_w, ok, run_n)
    else:
        totals.values = _class_values(runs, sums, method, n_geoms, cell_w, run_w, ok, integer)
    return totals


def _moments(
    runs: Any, sums: MosaicSums, method: AggregationMethod, totals: RunTotals, per_geom: Any,
    cell_w: np.ndarray, run_w: np.ndarray, ok: np.ndarray, run_n: np.ndarray,
) -> list[Any]:  # fmt: skip
    c = runs.cells
    rr, ra, rb, rf = runs.run_row, runs.run_start, runs.run_stop, runs.run_fraction
    shift = sums.shift
    v = np.where(ok, sums.data[c.row, c.col].astype(np.float64) - shift, 0.0)
    run_v = sums.values[rr, rb] - sums.values[rr, ra]
    if method is AggregationMethod.sum:  # value x fraction, without cell areas
        frac_n = per_geom(c.fraction * ok, rf * run_n)
        return (per_geom(c.fraction * v, rf * run_v) + shift * frac_n).tolist()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = per_geom(cell_w * v, run_w * run_v) / totals.valid_weight
        if method is AggregationMethod.mean:
            return (mean + shift).tolist()
        run_vv = sums.squares[rr, rb] - sums.squares[rr, ra]
        second = per_geom(cell_w * v * v, run_w * run_vv) / totals.valid_weight
        var = second - mean * mean
        # E[v²] − E[v]² loses a few ulps of E[v²] to cancellation: a variance below that
        # is indistinguishable from 0 (a polygon of one value would get 1e-8, not 0)
        var[var <= 8 * np.finfo(np.float64).eps * second] = 0.0
        return np.sqrt(var).tolist()


def _class_values(
    runs: Any, sums: MosaicSums, method: AggregationMethod, n_geoms: int,
    cell_w: np.ndarray, run_w: np.ndarray, ok: np.ndarray, integer: bool,
) -> list[Any]:  # fmt: skip
    classes = sums.classes
    assert classes is not None
    k = len(classes)
    if k == 0:  # no valid pixel anywhere
        return [None] * n_geoms
    c = runs.cells
    rg, rr, ra, rb = runs.run_geom, runs.run_row, runs.run_start, runs.run_stop
    # weight and pixel count per (polygon, class): the cells, then every pixel of the
    # runs (their class index read straight from the mosaic, row by row)
    size = n_geoms * (k + 1)
    key = c.geom * (k + 1) + sums.class_index[c.row, c.col]
    length = rb - ra
    total = int(length.sum())
    first = np.cumsum(length) - length
    col = np.repeat(ra - first, length) + np.arange(total)
    run_of = np.repeat(np.arange(len(rg)), length)
    run_key = rg[run_of] * (k + 1) + sums.class_index[rr[run_of], col]
    keys = np.concatenate([key, run_key])
    weight = np.bincount(keys, np.concatenate([cell_w, run_w[run_of]]), size)
    count = np.bincount(keys, minlength=size)
    weight = weight.reshape(n_geoms, k + 1)[:, :k]
    count = count.reshape(n_geoms, k + 1)[:, :k]
    g, j = np.nonzero(count > 0)  # ordered by polygon, then class (classes ascend)
    return class_values(g, classes[j], weight[g, j], weight.sum(axis=1), method, n_geoms, integer)
