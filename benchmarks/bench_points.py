"""``points``: 10,000 points sampled from 20 scenes over HTTP (every point in every scene).

Inputs: the first 20 COGs of :func:`benchmarks._series_data.ensure_series` (same
2048² grid, 512 px tiles, EPSG:32612) and 10,000 deterministic random points inside
their common footprint, so ``match="all"`` yields 200,000 values and every case has to
fetch and decode all 16 full-resolution tiles of each of the 20 files (320 tiles).

* ``ours``: one ``Collection.sample_points(points, ["data"], match="all")`` call (the
  collection is built once, untimed; decoded tiles are cleared before every trial).
* ``rasterio-tuned``: for each file, ``rasterio.open`` and ``dataset.sample`` over the
  10,000 points; cloud-COG GDAL settings; fresh process per trial.
* ``rasteret``: rasteret 0.4 ``Collection.sample_points(match="all")`` in its Python 3.12
  venv: one long-lived process (collection built and the point table handed over in the
  untimed warmup); the time is the request/reply of the call (see
  :mod:`benchmarks.bench_timeseries`).

Every case reports ``rows:valid:sum:weighted-sum`` over (point, value) pairs, which does not
depend on row order.

Run::

    .venv/bin/python -m benchmarks.run points --latency 0,20 --repeat 3
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._series_data import CRS, ensure_series, random_points
from benchmarks.bench_timeseries import _ours_collection, rasteret_worker, series_urls
from benchmarks.core import Benchmark, Case, CaseContext
from benchmarks.window_2048 import TUNED_GDAL

__all__ = [
    "BENCHMARK",
    "N_POINTS",
    "N_SCENES",
    "ours",
    "ours_warmup",
    "rasteret",
    "rasteret_warmup",
    "rasterio_tuned",
]

N_POINTS = 10_000
N_SCENES = 20


def _prepare() -> dict[str, Path]:
    return {f"d{i:02d}": p for i, p in enumerate(ensure_series()[:N_SCENES])}


def _checksum(point_index: np.ndarray, values: np.ndarray, rows: int | None = None) -> str:
    """``rows:valid:sum:sum((point_index + 1) * value)`` of the valid values."""
    v = values.astype(np.uint64)
    w = int((v * (point_index.astype(np.uint64) + 1)).sum())
    return f"{rows if rows is not None else len(values)}:{len(values)}:{int(v.sum())}:{w}"


# -- ours -------------------------------------------------------------------------------------

_POINTS: list[Any] = []


def ours_warmup(ctx: CaseContext) -> None:
    """Build the collection (untimed index step) and the point geometries."""
    import shapely

    _ours_collection(ctx, N_SCENES)
    if not _POINTS:
        _POINTS.append(shapely.points(*random_points(N_POINTS)))


def ours(ctx: CaseContext) -> dict[str, Any]:
    """``Collection.sample_points(match="all")`` over the 10,000 points and 20 scenes."""
    from tessellum.read.cache import default_tile_cache

    coll = _ours_collection(ctx, N_SCENES)
    default_tile_cache().clear()
    tbl = coll.sample_points(_POINTS[0], ["data"], geometry_crs=CRS, match="all")

    def after() -> dict[str, Any]:  # checksum after the timer (core.checked), as rasteret's
        val = tbl.column("value")
        valid = val.is_valid().to_numpy(zero_copy_only=False)
        pid = tbl.column("point_index").to_numpy()[valid]
        values = val.drop_null().to_numpy()
        return {"rows": tbl.num_rows, "checksum": _checksum(pid, values, tbl.num_rows)}

    return {"after": after}


# -- rasterio ---------------------------------------------------------------------------------


def rasterio_tuned(ctx: CaseContext) -> dict[str, Any]:
    """Per file: ``rasterio.open`` + ``dataset.sample`` over all points (tuned GDAL)."""
    import rasterio

    xs, ys = random_points(N_POINTS)
    coords = list(zip(xs.tolist(), ys.tolist(), strict=True))
    pids, values = [], []
    with rasterio.Env(**TUNED_GDAL):
        for url in series_urls(ctx):
            with rasterio.open(f"/vsicurl/{url}") as ds:
                vals = np.fromiter((v[0] for v in ds.sample(coords, indexes=1)), np.int64)
            ok = vals != 0  # nodata
            pids.append(np.flatnonzero(ok))
            values.append(vals[ok])
    rows = N_POINTS * len(series_urls(ctx))
    return {  # checksum after the timer (core.checked)
        "after": lambda: {
            "rows": rows,
            "checksum": _checksum(np.concatenate(pids), np.concatenate(values), rows),
        }
    }


# -- rasteret ---------------------------------------------------------------------------------


def _worker(ctx: CaseContext):
    worker = rasteret_worker("points", series_urls(ctx))
    if not getattr(worker, "has_points", False):
        xs, ys = random_points(N_POINTS)
        worker.call("put_points", x=xs.tolist(), y=ys.tolist())
        worker.has_points = True  # type: ignore[attr-defined]
    return worker


def rasteret_warmup(ctx: CaseContext) -> None:
    """Start the rasteret process, build its collection, hand it the points (untimed)."""
    _worker(ctx)


def rasteret(ctx: CaseContext) -> dict[str, Any]:
    """rasteret 0.4 ``sample_points(match="all")`` in its venv."""
    worker = _worker(ctx)
    t0 = time.perf_counter()
    inner, res = worker.call("sample_points", epsg=int(CRS.split(":")[1]))
    outer = time.perf_counter() - t0
    checksum = f"{res['rows']}:{res['valid']}:{res['sum']}:{res['wsum']}"
    return {
        "rows": res["rows"],
        "checksum": checksum,
        "inner_seconds": inner,
        "pipe_seconds": outer - inner,
    }


BENCHMARK = Benchmark(
    name="points",
    description="10,000 points x 20 scenes (match='all', 200,000 values) from COGs over HTTP",
    prepare=_prepare,
    cases=(
        Case(
            "ours",
            "benchmarks.bench_points:ours",
            warmup="benchmarks.bench_points:ours_warmup",
            description="tessellum Collection.sample_points(match='all')",
        ),
        Case(
            "rasterio-tuned",
            "benchmarks.bench_points:rasterio_tuned",
            fresh_process=True,
            warmup="benchmarks.window_2048:gdal_warmup",
            description="rasterio.open + dataset.sample per file, tuned GDAL",
        ),
        Case(
            "rasteret",
            "benchmarks.bench_points:rasteret",
            warmup="benchmarks.bench_points:rasteret_warmup",
            description="rasteret 0.4 Collection.sample_points (Python 3.12 venv, long-lived)",
        ),
    ),
)
