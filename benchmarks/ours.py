"""The "ours" cases: tessellum's engine.

Each function receives a :class:`~benchmarks.core.CaseContext` and returns a dict with
the pixels it read as ``array``; the runner sums them after the timer
(:func:`benchmarks.core.checked`) to check that all cases read the same pixels. Only
the call is timed; do imports at module level. The cases run in the runner's process: decoded tiles are never reused between trials (the
tile cache is cleared), but parsed headers are, because that is what a tessellum
collection stores (its header cache is the point of the index).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.core import CaseContext
from tessellum._sync import run_sync
from tessellum.collection import build_from_files
from tessellum.read.cache import default_tile_cache
from tessellum.read.engine import Target, read_targets_async
from tessellum.read.sources import record_bands

__all__ = ["full_image", "window_2048"]

_sources: dict[str, Any] = {}


def _source(url: str):
    """The band source of a URL, its header parsed once (as a collection build does)."""
    src = _sources.get(url)
    if src is None:
        coll = build_from_files([url], name="bench", progress=False)
        src = _sources[url] = record_bands(coll.table, ["data"])[0].bands["data"]
    return src


def _read(src, row: int, col: int, height: int, width: int) -> np.ndarray:
    default_tile_cache().clear()
    grid = src.grid.window(row, col, height, width)
    # pixels only, as read_window returns them (no validity mask)
    ((arr, _),) = run_sync(read_targets_async([Target(grid, [src], want_valid=False)]))
    return arr


def window_2048(ctx: CaseContext) -> dict[str, Any]:
    """Read ``ctx.params["window"]`` of ``ctx.url("cog")`` with the read engine."""
    w = ctx.params["window"]
    arr = _read(_source(ctx.url("cog")), w["row_off"], w["col_off"], w["height"], w["width"])
    return {"array": arr}  # checked after the timer (core.checked)


def full_image(ctx: CaseContext) -> dict[str, Any]:
    """Read the whole full-resolution image of ``ctx.url("cog")``."""
    src = _source(ctx.url("cog"))
    lvl = src.header.levels[0]
    arr = _read(src, 0, 0, lvl.height, lvl.width)
    return {"array": arr}  # checked after the timer (core.checked)


def warm_source(ctx: CaseContext) -> None:
    """Parse the header before timing (the collection build)."""
    _source(ctx.url("cog"))
