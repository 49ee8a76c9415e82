"""Zonal statistics on arrays the read engine returns: exact pixel coverage fractions
from exactextract, then every aggregation computed in numpy from (value, weight) pairs.

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
    idx = np.argmax(valid, axis=0)  # first True per pixel (0 when none)
    out = np.take_along_axis(data, idx[None], axis=0)[0]
    return out, valid.any(axis=0)


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
    (``geom`` in the grid's CRS), computed exactly by exactextract."""
    return pixel_coverage_many([geom], grid)[0]


def _coverage_source(grid: Any) -> Any:
    """An exactextract raster source of ``grid``'s lattice (values unused: a zero-stride
    view, so no grid-sized array is allocated)."""
    from exactextract.raster import NumPyRasterSource

    if not grid.is_axis_aligned or grid.transform.e >= 0:
        raise ValidationError("zonal statistics need a north-up grid")
    left, bottom, right, top = grid.bounds
    dummy = np.broadcast_to(np.zeros((1, 1), dtype=np.uint8), grid.shape)
    return NumPyRasterSource(dummy, left, bottom, right, top)


def _object_array(geoms: list[Any]) -> np.ndarray:
    arr = np.empty(len(geoms), dtype=object)
    arr[:] = geoms
    return arr


def _wkb_features(geoms: list[Any]) -> Any:
    """An exactextract feature source handing the geometries over as WKB (no GeoJSON
    round trip through Python dicts and ``json``)."""
    import shapely

    return _wkb_source_class()(list(shapely.to_wkb(_object_array(geoms))))


@lru_cache(maxsize=1)
def _wkb_source_class() -> Any:
    from exactextract.feature import Feature, FeatureSource

    class _Feature(Feature):
        def __init__(self, wkb: bytes | None = None) -> None:
            super().__init__()
            self._wkb = wkb
            self._props: dict[str, Any] = {}

        def geometry(self) -> bytes | None:
            return self._wkb

        def set_geometry(self, wkb: bytes | None) -> None:
            self._wkb = wkb

        def set_geometry_format(self) -> str:
            return "wkb"

        def fields(self) -> list[str]:
            return list(self._props)

        def get(self, name: str) -> Any:
            return self._props[name]

        def set(self, name: str, value: Any) -> None:
            self._props[name] = value

    class _Source(FeatureSource):
        def __init__(self, wkbs: Any) -> None:
            super().__init__()
            self._wkbs = wkbs

        def count(self) -> int:
            return len(self._wkbs)

        def __iter__(self) -> Any:
            for w in self._wkbs:
                yield _Feature(w)

        def srs_wkt(self) -> None:
            return None

    return _Source


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
    """:func:`pixel_coverage` of several geometries on one grid in one exactextract call."""
    from exactextract import exact_extract

    src = _coverage_source(grid)
    out = []
    width = grid.width
    for f in exact_extract(src, _wkb_features(geoms), ["cell_id", "coverage"], output="geojson"):
        props = f["properties"]
        cells = np.asarray(props["cell_id"], dtype=np.int64)
        rows, cols = np.divmod(cells, width)
        out.append((rows, cols, np.asarray(props["coverage"], dtype=np.float64)))
    return out


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


_EE_OPS = {
    AggregationMethod.mean: "mean",
    AggregationMethod.median: "median",
    AggregationMethod.min: "min",
    AggregationMethod.max: "max",
    AggregationMethod.std: "stdev",
    AggregationMethod.majority: "majority",
    AggregationMethod.minority: "minority",
    AggregationMethod.unique: "unique",
    AggregationMethod.distribution: "frac",
}
_UNWEIGHTED = {AggregationMethod.min, AggregationMethod.max, AggregationMethod.unique}
_BY_CLASS = {AggregationMethod.majority, AggregationMethod.minority, AggregationMethod.distribution}


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
    mosaic, every statistic computed inside exactextract in one pass.

    The same definitions as :func:`pixel_coverage_samples` + :func:`zonal_polygon`
    (exactextract's operations with ``coverage_weight`` ``area_spherical_m2`` on
    geographic grids, ``fraction`` on projected ones), without handing each geometry's
    pixels back to Python: the many-small-polygons case is bound by per-geometry work.
    Outcomes carry no ``values``: check the mosaic for suspect pixels beforehand
    (:func:`tessellum.attributes.qc.suspect_pixels`).
    """
    import shapely
    from exactextract import exact_extract

    method = AggregationMethod(method)
    weight = "area_spherical_m2" if geographic else "fraction"
    integer = data.dtype.kind in "iu"
    if method is AggregationMethod.median and integer:
        data = data.astype(np.float64)  # exactextract truncates an integer raster's median
    src, fill = _masked_source(data, valid, grid)
    by_class = method in _BY_CLASS
    if method is AggregationMethod.sum:
        value_op = "value=sum"  # value x coverage fraction (module docstring)
    elif by_class:  # class shares: ties are broken here (smallest value), not by hash order
        value_op = f"value=frac(coverage_weight={weight})"
    elif method in _UNWEIGHTED:
        value_op = f"value={_EE_OPS[method]}"
    else:
        value_op = f"value={_EE_OPS[method]}(coverage_weight={weight})"
    ops = [
        value_op,
        f"valid_w=count(coverage_weight={weight})",
        f"total_w=count(coverage_weight={weight},default_value={fill})",
        "n=count(coverage_weight=none)",
    ]
    if by_class:
        ops.append("classes=unique")
    # the grid holds every geometry, so their coverage fractions sum to area / cell area
    cell = abs(grid.transform.a * grid.transform.e - grid.transform.b * grid.transform.d)
    in_cells = shapely.area(_object_array(geoms)) / cell
    out = []
    found = exact_extract(src, _wkb_features(geoms), ops, output="geojson")
    for f, total_f in zip(found, in_cells.tolist(), strict=True):
        p = f["properties"]
        total_w, n = float(p["total_w"]), int(p["n"])
        if total_w <= 0:
            out.append(ZonalOutcome(None, 0.0, 0, notes=["geometry covers no pixel"]))
            continue
        cov = float(min(1.0, float(p["valid_w"]) / total_w))
        value = _ee_value(p, method, integer) if n else None
        outcome = ZonalOutcome(value, cov if n else 0.0, n)
        if total_f < 1.0 and n:
            outcome.estimated = True
            outcome.notes.append("geometry is smaller than one pixel")
        out.append(outcome)
    return out


def _ee_value(props: dict[str, Any], method: AggregationMethod, integer: bool) -> Any:
    """exactextract's ``value`` in the types :func:`aggregate` returns."""
    v = props["value"]
    if method in _BY_CLASS:
        codes, shares = np.asarray(props["classes"]), np.asarray(v, dtype=np.float64)
        order = np.argsort(codes, kind="stable")
        codes, shares = codes[order], shares[order]
        if method is AggregationMethod.distribution:
            return {_class_key(c): float(f) for c, f in zip(codes, shares, strict=True)}
        if not codes.size:
            return None
        pick = np.argmax(shares) if method is AggregationMethod.majority else np.argmin(shares)
        return int(codes[pick]) if integer else float(codes[pick])
    if method is AggregationMethod.unique:
        return sorted(_scalar(c) if integer else float(c) for c in np.asarray(v).tolist())
    if v is None:
        return None
    if integer and method in (AggregationMethod.min, AggregationMethod.max):
        return int(v)
    value = float(v)
    return None if math.isnan(value) else value


def _masked_source(data: np.ndarray, valid: np.ndarray, grid: Any) -> tuple[Any, Any]:
    """An exactextract raster of ``data`` whose nodata is exactly ``~valid``, and a value
    of the array's type to stand in for nodata where an operation must count it."""
    from exactextract.raster import NumPyRasterSource

    if not grid.is_axis_aligned or grid.transform.e >= 0:
        raise ValidationError("zonal statistics need a north-up grid")
    if data.dtype.kind == "f":
        values = data if valid.all() else np.where(valid, data, data.dtype.type(np.nan))
        nodata, fill = float("nan"), 0
    else:
        values, nodata = _integer_with_sentinel(data, valid)
        fill = int(values.dtype.type(0))
    left, bottom, right, top = grid.bounds
    # no CRS: exactextract's area_spherical_m2 takes the coordinates as degrees itself
    src = NumPyRasterSource(np.ascontiguousarray(values), left, bottom, right, top, nodata=nodata)
    return src, fill


def _integer_with_sentinel(data: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, Any]:
    """``data`` with invalid pixels set to a value no valid pixel has (the type's extremes
    first; a wider type when both are in use), and that value (None: all valid)."""
    if valid.all():
        return data, None
    info = np.iinfo(data.dtype)
    for sentinel in (info.max, info.min):
        if not np.any((data == sentinel) & valid):
            return np.where(valid, data, data.dtype.type(sentinel)), int(sentinel)
    if data.dtype.itemsize < 8:
        return np.where(valid, data.astype(np.int64), np.int64(-(2**63))), -(2**63)
    return np.where(valid, data.astype(np.float64), np.nan), float("nan")  # beyond 2**53: rounded


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
    r, c = math.floor(row_f), math.floor(col_f)
    r, c = min(max(r, 0), h - 1), min(max(c, 0), w - 1)
    if not valid[r, c]:
        return ZonalOutcome(None, 0.0, 0, notes=["the point's pixel is nodata"])
    vals = data[r : r + 1, c]
    return ZonalOutcome(aggregate(vals, np.ones(1), np.ones(1), method), 1.0, 1, values=vals)
