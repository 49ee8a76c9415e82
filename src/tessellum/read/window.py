"""``read_window``: a mosaic of records over a box, first valid pixel wins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ValidationError
from ..geo.grid import Grid, check_bounds, grid_for_bounds
from ._pool import pooled_empty
from .engine import Target, read_targets_async
from .grids import wrap_sources
from .sources import RecordBands, record_bands
from .stacks import _stack_nodata, collection_fetch_options


def window_grid(
    recs: Sequence[RecordBands], bands: Sequence[str], bounds: Any, res: Any, target_crs: Any
) -> Grid:
    """The output grid: on the reference record's pixel grid unless ``res`` or
    ``target_crs`` say otherwise; ``bounds`` are in the output CRS."""
    from ..geo.crs import crs_to_code, to_crs
    from .grids import reference_source

    ref = reference_source([r.bands[b] for r in recs for b in bands], target_crs)
    crs = crs_to_code(target_crs) if target_crs is not None else ref.grid.crs
    left, bottom, right, top = bounds  # checked by the caller (check_bounds)
    if left > right:
        if not to_crs(crs).is_geographic:
            raise ValidationError(
                f"bounds {tuple(bounds)!r}: left > right (only a lon/lat box may cross "
                "the antimeridian that way)"
            )
        right += 360.0  # across ±180: a geographic grid may run past 180 (179.5..180.5)
    box = (left, bottom, right, top)
    if crs == ref.grid.crs and ref.grid.is_axis_aligned:
        if res is None:
            return ref.grid.covering(box)
        t = ref.grid.transform
        return grid_for_bounds(box, res, crs, anchor=(t.c, t.f))
    if res is None:
        why = (
            "target_crs differs from the records' CRS"
            if crs != ref.grid.crs
            else (
                f"the records' pixel grid is rotated or skewed ({ref.href}: transform "
                f"{tuple(ref.grid.transform)[:6]}), so the output needs its own north-up grid"
            )
        )
        raise ValidationError(f"res is required when {why}")
    return grid_for_bounds(box, res, crs)


async def read_window_async(
    collection: Any,
    *,
    bounds: Sequence[float],
    bands: Sequence[str],
    record_ids: Sequence[str] | None = None,
    res: float | tuple[float, float] | None = None,
    target_crs: Any = None,
    group_by: str | None = None,
    resampling: str = "nearest",
    max_concurrent: int | None = None,
    progress: bool | None = None,
) -> tuple[np.ndarray, Grid, list[Any]]:
    """Async form of :meth:`Collection.read_window`; returns ``(array, grid, groups)``."""
    if group_by not in (None, "datetime", "id"):
        raise ValidationError(f"group_by must be None, 'datetime' or 'id', got {group_by!r}")
    if isinstance(bands, str):
        bands = [bands]
    box = check_bounds(bounds)  # before any work: four finite numbers enclosing an area
    recs = record_bands(collection.table, bands)
    if record_ids is not None:
        order = {rid: i for i, rid in enumerate(record_ids)}
        recs = sorted((r for r in recs if r.id in order), key=lambda r: order[r.id])
        missing = set(record_ids) - {r.id for r in recs}
        if missing:
            raise ValidationError(
                f"record_ids not in the collection (or missing bands): {sorted(missing)[:5]}"
            )
    if not recs:
        raise ValidationError("no records to read")
    grid = window_grid(recs, bands, box, res, target_crs)
    out, keys = await read_on_grid_async(
        collection, recs, bands, grid, group_by=group_by, resampling=resampling,
        max_concurrent=max_concurrent, progress=progress,
    )  # fmt: skip
    return out, grid, keys


async def read_on_grid_async(
    collection: Any,
    recs: Sequence[RecordBands],
    bands: Sequence[str],
    grid: Grid,
    *,
    group_by: str | None = None,
    resampling: str = "nearest",
    max_concurrent: int | None = None,
    progress: bool | None = None,
) -> tuple[np.ndarray, list[Any]]:
    """``recs`` read onto exactly ``grid``, first valid pixel wins in their order:
    ``[C, H, W]``, or ``[G, C, H, W]`` grouped by ``group_by``; and the group keys."""
    if group_by is None:
        groups: list[tuple[Any, list[RecordBands]]] = [(None, list(recs))]
    else:
        keyf = (lambda r: r.datetime) if group_by == "datetime" else (lambda r: r.id)
        by_key: dict[Any, list[RecordBands]] = {}
        for r in recs:
            by_key.setdefault(keyf(r), []).append(r)
        groups = list(by_key.items())
    # every (group, band) layer is read straight into its place: [G, C, H, W] in the
    # common type of all the records (a uint8 record never narrows a uint16 one)
    dtype = np.result_type(
        *[r.bands[b].dtype for _, members in groups for r in members for b in bands]
    )
    stacked = pooled_empty((len(groups), len(bands), *grid.shape), dtype)
    # one fill per band in every group, as in stacks: a record's own nodata (255 of a
    # uint8 record in a uint16 stack) would read as data in the other layers
    fills = {b: _stack_nodata(recs, b) for b in bands}
    targets = [
        Target(
            grid,
            wrap_sources([r.bands[b] for r in members], grid),
            resampling=resampling,
            out=stacked[g, c],
            want_valid=False,
            nodata=fills[b],
        )
        for g, (_, members) in enumerate(groups)
        for c, b in enumerate(bands)
    ]
    opts = collection_fetch_options(collection, max_concurrent, progress=progress)
    await read_targets_async(targets, opts)
    out = stacked[0] if group_by is None else stacked
    return out, [k for k, _ in groups]
