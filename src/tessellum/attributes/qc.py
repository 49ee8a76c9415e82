"""Scalar quality control: one flag per result, and cross-provider consistency warnings.

Flags, most severe first: ``missing`` (valid coverage below ``missing_below``),
``suspect`` (values outside the catalog's valid range, common fill values that were not
declared nodata, unknown class codes, the mean of class codes), ``degraded`` (a record
under the geometry could not be read), ``partial`` (coverage below ``partial_below``),
``estimated`` (bilinear value, or a geometry smaller than one pixel), ``good``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .models import AggregationMethod, AttributeResult, QualityFlag

__all__ = [
    "DEFAULT_FILL_VALUES",
    "QCConfig",
    "consistency_warnings",
    "quality_flag",
    "suspect_pixels",
]

DEFAULT_FILL_VALUES: tuple[float, ...] = (
    -9999.0,
    -99999.0,
    -32768.0,
    -32767.0,
    -3.4028234663852886e38,
    255.0,
    65535.0,
)
"""Values producers use as undeclared fill; a valid pixel equal to one is suspect."""

_SEVERITY = [
    QualityFlag.missing,
    QualityFlag.suspect,
    QualityFlag.degraded,
    QualityFlag.partial,
    QualityFlag.estimated,
    QualityFlag.good,
]
_NUMERIC = {
    AggregationMethod.mean,
    AggregationMethod.median,
    AggregationMethod.min,
    AggregationMethod.max,
}


@dataclass(frozen=True)
class QCConfig:
    """Thresholds of the quality flags (all configurable)."""

    missing_below: float = 0.3
    """Valid coverage below this is ``missing``."""
    partial_below: float = 0.8
    """Valid coverage below this (and at least ``missing_below``) is ``partial``."""
    fill_values: tuple[float, ...] = DEFAULT_FILL_VALUES
    """Suspect fill values; 255 only in uint8 and 65535 only in uint16 data (the largest
    value of the type), and 255 not in categorical data (it may be a class)."""
    consistency_rel_tol: float = 0.25
    """Same-variable results differing by more than this fraction are inconsistent..."""
    consistency_abs_tol: float = 50.0
    """...and by more than this many units."""

    def __post_init__(self) -> None:
        if not 0 <= self.missing_below <= self.partial_below <= 1:
            raise ValueError("need 0 <= missing_below <= partial_below <= 1")


def quality_flag(
    *,
    value: Any,
    coverage: float,
    values: np.ndarray,
    method: AggregationMethod,
    entry: Any,
    nodata: Any,
    config: QCConfig,
    estimated: bool = False,
    degraded: bool = False,
    extra_suspect: Sequence[str] = (),
) -> tuple[QualityFlag, list[str]]:
    """The flag of one result and the notes explaining it.

    Args:
        value: the aggregated value.
        coverage: valid-area fraction of the geometry.
        values: valid pixel values that contributed.
        method: the aggregation.
        entry: the catalog entry (valid range, kind, classes).
        nodata: the declared nodata of the source (never suspect: it is excluded).
        config: thresholds.
        estimated: value interpolated / sub-pixel geometry.
        degraded: a record under the geometry failed to read.
        extra_suspect: other reasons to flag suspect (e.g. the mean of class codes).
    """
    flags: set[QualityFlag] = set()
    notes: list[str] = []
    if value is None or coverage < config.missing_below:
        flags.add(QualityFlag.missing)
        notes.append(f"valid coverage {coverage:.2f} < {config.missing_below}")
    elif coverage < config.partial_below:
        flags.add(QualityFlag.partial)
        notes.append(f"valid coverage {coverage:.2f} < {config.partial_below}")
    if values.size:
        fills = _fill_hits(values, entry, nodata, config)
        if fills:
            flags.add(QualityFlag.suspect)
            notes.append(f"pixels equal to common fill values {fills} (not declared nodata)")
        if entry.is_categorical and entry.classes:
            unknown = sorted(set(np.unique(values).tolist()) - set(entry.classes))
            if unknown:
                flags.add(QualityFlag.suspect)
                notes.append(f"class codes not in the catalog: {unknown[:10]}")
    if entry.valid_range is not None and method in _NUMERIC and isinstance(value, int | float):
        lo, hi = entry.valid_range
        if not lo <= value <= hi:
            flags.add(QualityFlag.suspect)
            notes.append(f"value {value:g} outside the valid range [{lo:g}, {hi:g}]")
    for reason in extra_suspect:
        flags.add(QualityFlag.suspect)
        notes.append(reason)
    if degraded:
        flags.add(QualityFlag.degraded)
        notes.append("a record under the geometry could not be read")
    if estimated:
        flags.add(QualityFlag.estimated)
    flag = next((f for f in _SEVERITY if f in flags), QualityFlag.good)
    return flag, notes


def suspect_pixels(
    data: np.ndarray, valid: np.ndarray, entry: Any, nodata: Any, config: QCConfig
) -> bool:
    """Whether any valid pixel of a mosaic would make :func:`quality_flag` flag a result
    ``suspect`` by its values (a common fill value, a class code the catalog does not
    know). When none does, results over the mosaic need no per-geometry value checks."""
    if not valid.any():
        return False
    candidates = _candidates(config, entry, nodata, data.dtype)
    if candidates is not None and np.any(np.isin(data, candidates) & valid):
        return True
    if entry.is_categorical and entry.classes:
        known = np.asarray(sorted(entry.classes))
        if data.dtype.kind == "u" and data.dtype.itemsize <= 2:  # a histogram beats isin
            present = np.flatnonzero(np.bincount(data[valid], minlength=1))
            return bool(np.setdiff1d(present, known).size)
        return bool(np.any(~np.isin(data, known) & valid))
    return False


def is_scaled(entry: Any) -> bool:
    """Whether the entry declares a scale or offset from stored values to its units
    (never applied to class codes)."""
    scale, offset = getattr(entry, "scale", 1.0), getattr(entry, "offset", 0.0)
    return not entry.is_categorical and (scale != 1.0 or offset != 0.0)


def physical_values(data: np.ndarray, entry: Any) -> np.ndarray:
    """Stored values in the entry's units: ``data * scale + offset`` (float64) when the
    entry declares them (statistics, their valid range and points are in units), else
    ``data`` itself."""
    if not is_scaled(entry):
        return data
    return data.astype(np.float64) * entry.scale + entry.offset


def _candidates(config: QCConfig, entry: Any, nodata: Any, dtype: np.dtype) -> np.ndarray | None:
    categorical = bool(entry.is_categorical)
    try:
        return _fill_candidates(config.fill_values, categorical, nodata, dtype)
    except TypeError:  # an unhashable nodata
        return _fill_candidates.__wrapped__(config.fill_values, categorical, nodata, dtype)


def _fill_hits(values: np.ndarray, entry: Any, nodata: Any, config: QCConfig) -> list[float]:
    """The common fill values (as stored) that ``values`` hold."""
    scaled = is_scaled(entry)  # values are in units: look for the stored fills, scaled
    stored = _candidates(config, entry, nodata, np.dtype(entry.dtype) if scaled else values.dtype)
    if stored is None:
        return []
    candidates = physical_values(stored, entry)
    one = candidates.size == 1
    found = values == candidates[0] if one else np.isin(values, candidates)
    if not found.any():
        return []
    return sorted({float(x) for x in stored[np.isin(candidates, values[found])]})


# The largest value of an unsigned type fills that type only: elsewhere it is data
# (255 m is an ordinary elevation in an int16 DEM, and 65535 in an int32 count).
_TYPE_MAX_FILLS = {255.0: np.dtype("uint8"), 65535.0: np.dtype("uint16")}


@lru_cache(maxsize=256)
def _fill_candidates(
    fill_values: tuple[float, ...], categorical: bool, nodata: Any, dtype: np.dtype
) -> np.ndarray | None:
    """The fill values worth looking for in an array of ``dtype`` (None: none)."""
    candidates = [
        v
        for v in fill_values
        if not (categorical and v == 255.0)
        and not (nodata is not None and _same(v, nodata))
        and _representable(v, dtype)
        and _TYPE_MAX_FILLS.get(v, dtype) == dtype
    ]
    if not candidates:
        return None
    out = np.asarray(candidates, dtype=dtype)
    out.flags.writeable = False
    return out


def _same(a: float, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def _representable(v: float, dtype: np.dtype) -> bool:
    if dtype.kind == "f":
        return np.isfinite(np.asarray(v, dtype=dtype)) or not math.isfinite(v)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return float(v).is_integer() and info.min <= v <= info.max
    return False


def consistency_warnings(results: Sequence[AttributeResult], config: QCConfig) -> list[str]:
    """Warnings for pairs of results of the *same variable in the same units* whose
    values disagree beyond both tolerances; each warning names both datasets."""
    out: list[str] = []
    numeric = [
        r
        for r in results
        if isinstance(r.value, int | float) and not isinstance(r.value, bool) and r.units != "class"
    ]
    for i, a in enumerate(numeric):
        for b in numeric[i + 1 :]:
            if a.variable != b.variable or a.units != b.units or a.aggregation != b.aggregation:
                continue
            va, vb = float(a.value), float(b.value)  # type: ignore[arg-type]
            diff = abs(va - vb)
            scale = max(abs(va), abs(vb))
            if diff > config.consistency_abs_tol and diff > config.consistency_rel_tol * scale:
                out.append(
                    f"inconsistent {a.variable}: {a.dataset_id} ({a.aggregation.value} "
                    f"{va:.6g} {a.units}) and {b.dataset_id} ({vb:.6g} {b.units}) differ "
                    f"by {diff:.6g} {a.units}"
                )
    return out
