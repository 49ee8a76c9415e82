"""Zonal statistics in worker processes.

The compiled zonal pass releases the GIL and the numpy one does for its large
operations only: datasets reduce side by side in threads, but one dataset's pass runs
on one core. Worker processes spread the passes of large batches over cores (with the
compiled pass, shipping each mosaic to a worker costs about what it saves on two
cores). The pool
is opt-in (``Settings.zonal_processes``), started once per process and shared; workers
are forked from a ``forkserver`` that imported only numpy and shapely (obstore's
runtime does not survive a fork of the parent, and a spawned interpreter per worker
would start slower).
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np

from .models import AggregationMethod
from .zonal import ZonalOutcome, zonal_polygons

__all__ = [
    "MIN_POLYGONS",
    "shutdown_zonal_pool",
    "start_zonal_workers",
    "submit_zonal",
    "zonal_pool",
]

MIN_POLYGONS = 256
"""Reductions over fewer polygons stay in-process: shipping the mosaic costs more."""

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_size = 0


def _forget_pool() -> None:
    # a forked child has no copy of the pool's management thread: it starts its own
    global _lock, _pool, _pool_size
    _lock, _pool, _pool_size = threading.Lock(), None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def zonal_pool(processes: int) -> ProcessPoolExecutor | None:
    """The shared pool of ``processes`` workers, started on first use (None: 0)."""
    global _pool, _pool_size
    if processes < 1:
        return None
    with _lock:
        if _pool is None or _pool_size != processes:
            if _pool is not None:  # resized: tasks already sent still finish
                _pool.shutdown(wait=False)
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["numpy", "shapely"])
            _pool = ProcessPoolExecutor(max_workers=processes, mp_context=ctx)
            _pool_size = processes
        return _pool


def start_zonal_workers(processes: int | None = None) -> None:
    """Start the worker processes now rather than on the first large batch (a service
    calls this at start-up). ``processes`` defaults to ``Settings.zonal_processes``."""
    if processes is None:
        from ..config import get_settings

        processes = get_settings().zonal_processes
    pool = zonal_pool(processes)
    if pool is not None:  # a short task per worker: each starts and imports this module
        for fut in [pool.submit(_ping) for _ in range(2 * processes)]:
            fut.result()


def _ping() -> None:
    import time

    time.sleep(0.05)


def shutdown_zonal_pool(pool: ProcessPoolExecutor | None = None) -> None:
    """Stop the workers (they are started again when needed); with ``pool``, only if it
    is still the current one (a broken pool is dropped once, not its successor)."""
    global _pool, _pool_size
    with _lock:
        if _pool is None or (pool is not None and pool is not _pool):
            return
        _pool.shutdown(wait=pool is None, cancel_futures=True)
        _pool, _pool_size = None, 0


atexit.register(shutdown_zonal_pool)


def submit_zonal(
    pool: ProcessPoolExecutor,
    geoms: list[Any],
    data: np.ndarray,
    valid: np.ndarray,
    grid: Any,
    method: AggregationMethod,
    *,
    geographic: bool,
) -> Future[list[ZonalOutcome]]:
    """:func:`zonal_polygons` in a worker; geometries travel as WKB."""
    import shapely

    wkbs = shapely.to_wkb(np.asarray(geoms, dtype=object))
    return pool.submit(_run, wkbs, data, valid, grid, method, geographic)


def _run(
    wkbs: np.ndarray,
    data: np.ndarray,
    valid: np.ndarray,
    grid: Any,
    method: AggregationMethod,
    geographic: bool,
) -> list[ZonalOutcome]:
    import shapely

    geoms = list(shapely.from_wkb(wkbs))
    return zonal_polygons(geoms, data, valid, grid, method, geographic=geographic)
