"""``timeseries``: 30 dates x 4 AOIs x 256² chips x 1 band, TorchGeo-style, over HTTP.

Inputs: :func:`benchmarks._series_data.ensure_series` (30 same-grid 2048² uint16
DEFLATE/pred2 COGs, 512 px tiles, EPSG:32612). The AOIs are four pixel-aligned 256²
boxes touching 4, 2, 1 and 2 tiles, so every case reads exactly 120 chips of 256², 270
tiles in all.

* ``ours``: one ``Collection.get_numpy`` call over the 4 AOIs and the 30 records (the
  collection is built once, untimed, from a record table of href + datetime; decoded
  tiles are cleared before every trial).
* ``rasterio-tuned``: what a TorchGeo ``RasterDataset`` does per sample: for each AOI,
  for each date, the file's dataset (opened once per file and kept, like TorchGeo's
  ``lru_cache``) and a windowed read; cloud-COG GDAL settings; fresh process per trial.
  It reads plain windows (no ``rasterio.merge``/``WarpedVRT`` as TorchGeo would), which
  favours it.
* ``rasteret``: rasteret 0.4 ``Collection.get_numpy`` in its Python 3.12 venv
  (``.cache/rasteret-venv``). One long-lived rasteret process per run (started and
  its collection built with ``enrich_cog=True`` in the untimed warmup, as ours is built
  once); each trial sends it a request over a pipe and the time is that of the
  request/reply, i.e. the ``get_numpy`` call plus < 1 ms of pipe (``inner_seconds`` is
  rasteret's own timing of the call). Like ours, it keeps headers and connections
  between trials and no pixels.

The index builds of ``ours`` and ``rasteret`` happen in the first trial's warmup, so the
proxy counts their header requests in that trial: the median (3+ trials) is unaffected.

Run::

    .venv/bin/python -m benchmarks.run timeseries --latency 0,20 --repeat 3
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._series_data import (
    CRS,
    DATES,
    aoi_boxes,
    aoi_windows,
    ensure_series,
    footprint_lonlat,
)
from benchmarks.bench_build import RASTERET_PYTHON
from benchmarks.core import Benchmark, Case, CaseContext, CaseNotAvailable
from benchmarks.window_2048 import TUNED_GDAL

__all__ = [
    "BENCHMARK",
    "RasteretWorker",
    "chips_checksum",
    "ours",
    "ours_warmup",
    "rasteret",
    "rasteret_warmup",
    "rasteret_worker",
    "rasterio_tuned",
    "series_urls",
]


def _prepare() -> dict[str, Path]:
    return {f"d{i:02d}": p for i, p in enumerate(ensure_series())}


def series_urls(ctx: CaseContext) -> list[str]:
    """The served COGs in date order."""
    return [ctx.url(name) for name in sorted(ctx.files)]


def chips_checksum(chips: list[np.ndarray]) -> str:
    """Order-independent checksum of 2-D chips: count, shapes and sorted per-chip sums."""
    sums = sorted(int(c.sum(dtype="uint64")) for c in chips)
    shapes = sorted({tuple(int(s) for s in c.shape) for c in chips})
    digest = hashlib.sha256(json.dumps([sums, shapes]).encode()).hexdigest()[:12]
    return f"{len(chips)}x{shapes}:{sum(sums)}:{digest}"


# -- ours -------------------------------------------------------------------------------------

_COLLS: dict[tuple[str, ...], Any] = {}


def _ours_collection(ctx: CaseContext, n: int | None = None) -> Any:
    """The collection of the first ``n`` dates, built once per URL set (the index step)."""
    import pyarrow as pa

    from tessellum.collection import build_from_table

    urls = tuple(series_urls(ctx)[:n])
    coll = _COLLS.get(urls)
    if coll is None:
        table = pa.table(
            {
                "id": [f"t{d:%Y%m%d}" for d in DATES[: len(urls)]],
                "href": list(urls),
                "datetime": pa.array(DATES[: len(urls)], pa.timestamp("us", tz="UTC")),
            }
        )
        coll = _COLLS[urls] = build_from_table(table, name="bench-series", progress=False)
    return coll


_AOIS: list[Any] = []


def ours_warmup(ctx: CaseContext) -> None:
    """Build the collection (untimed index step) and the AOI polygons."""
    import shapely

    _ours_collection(ctx)
    if not _AOIS:
        _AOIS.extend(shapely.box(*b) for b in aoi_boxes())


def ours(ctx: CaseContext) -> dict[str, Any]:
    """``Collection.get_numpy`` over the 4 AOIs and all 30 records in one call."""
    from tessellum.read.cache import default_tile_cache

    coll = _ours_collection(ctx)
    default_tile_cache().clear()
    res = coll.get_numpy(_AOIS, ["data"], geometry_crs=CRS)

    def after() -> dict[str, Any]:  # checksum after the timer (core.checked)
        chips = [c for chip in res.data for c in chip]  # [N, C, H, W] -> N*C chips
        return {"shape": list(res.data.shape), "checksum": chips_checksum(chips)}

    return {"after": after}


_DATASETS: dict[tuple[str, ...], Any] = {}


def ours_dataset_warmup(ctx: CaseContext) -> None:
    """Build the collection and the torch dataset of the 4 AOIs (untimed, as a training
    script builds its dataset once)."""
    import shapely

    from tessellum.read.dataset import ChipDataset

    ours_warmup(ctx)
    key = tuple(series_urls(ctx))
    if key not in _DATASETS:
        centres = [shapely.centroid(a) for a in _AOIS]
        _DATASETS[key] = ChipDataset(
            _ours_collection(ctx), ["data"], 256, geometries=centres, geometry_crs=CRS,
            time_series=True,
        )  # fmt: skip


def ours_dataset(ctx: CaseContext) -> dict[str, Any]:
    """The torch dataset (``to_torchgeo_dataset``): one ``[T, C, H, W]`` sample per AOI,
    read one at a time as a ``DataLoader`` does."""
    from tessellum.read.cache import default_tile_cache

    ds = _DATASETS[tuple(series_urls(ctx))]
    default_tile_cache().clear()
    samples = [ds[i]["image"] for i in range(len(ds))]

    def after() -> dict[str, Any]:  # checksum after the timer (core.checked)
        chips = [np.asarray(c) for s in samples for t in s for c in t]
        return {"checksum": chips_checksum(chips)}

    return {"after": after}


# -- rasterio ---------------------------------------------------------------------------------


def rasterio_tuned(ctx: CaseContext) -> dict[str, Any]:
    """Per sample (AOI), per date: the file's dataset and a windowed read (TorchGeo's way)."""
    import rasterio
    from rasterio.windows import Window

    chips = []
    datasets: dict[str, Any] = {}  # TorchGeo keeps opened files in an lru_cache(128)
    with rasterio.Env(**TUNED_GDAL):
        try:
            for row, col, h, w in aoi_windows():
                for url in series_urls(ctx):
                    ds = datasets.get(url)
                    if ds is None:
                        ds = datasets[url] = rasterio.open(f"/vsicurl/{url}")
                    chips.append(ds.read(1, window=Window(col, row, w, h)))
        finally:
            for ds in datasets.values():
                ds.close()
    return {  # checksum after the timer (core.checked)
        "after": lambda: {
            "shape": [len(chips), 1, *chips[0].shape],
            "checksum": chips_checksum(chips),
        }
    }


# -- rasteret ---------------------------------------------------------------------------------

_RASTERET_WORKER = r"""
import faulthandler, json, sys, time
faulthandler.enable()  # a crash report on stderr
from datetime import datetime
import numpy as np
import pyarrow as pa
import shapely
import rasteret
import rasteret.fetch.cog as cog
cog._OBSTORE_CLIENT_OPTIONS["allow_http"] = "true"  # the local servers speak plain HTTP

out = sys.stdout
sys.stdout = sys.stderr  # keep library prints off the reply channel


def reply(obj):
    out.write(json.dumps(obj) + "\n")
    out.flush()


args = json.loads(sys.stdin.readline())
urls = args["urls"]
footprint = shapely.to_wkb(shapely.box(*args["footprint_lonlat"]))
table = pa.table({
    "id": args["ids"],
    "href": urls,
    "datetime": pa.array([datetime.fromisoformat(d) for d in args["datetimes"]],
                         pa.timestamp("us", tz="UTC")),
    "geometry": [footprint] * len(urls),
})
coll = rasteret.build_from_table(
    table, name="", href_column="href", band_index_map={"data": 0}, enrich_cog=True,
    max_concurrent=50, force=True,
)
reply({"ready": coll.dataset.count_rows()})


def get_numpy(req):
    geoms = [shapely.box(*b) for b in req["boxes"]]
    t0 = time.perf_counter()
    arr = coll.get_numpy(geoms, ["data"], geometry_crs=req["epsg"])
    seconds = time.perf_counter() - t0
    chips = [np.asarray(c) for c in arr.reshape(-1, *arr.shape[-2:])]
    return seconds, {"shape": list(arr.shape), "chips": [int(c.sum(dtype="uint64")) for c in chips],
                     "chip_shape": list(arr.shape[-2:])}


state = {}


def put_points(req):
    state["points"] = pa.table({"x": req["x"], "y": req["y"]})
    return 0.0, {"points": state["points"].num_rows}


def sample_points(req):
    points = state["points"]
    t0 = time.perf_counter()
    # bbox=: without it rasteret 0.4.1 filters records with an OR of one bbox expression
    # per point (Collection.subset(geometries=...)): 64 s for 8,000 points, and a
    # segfault in Arrow's scanner at 10,000.
    tbl = coll.sample_points(points, ["data"], x_column="x", y_column="y",
                             geometry_crs=req["epsg"], match="all",
                             bbox=tuple(args["footprint_lonlat"]))
    seconds = time.perf_counter() - t0
    pid = np.asarray(tbl.column("point_index").to_numpy(), dtype=np.uint64)
    val = tbl.column("value").to_numpy(zero_copy_only=False)
    valid = ~np.isnan(val.astype(np.float64))
    v = val[valid].astype(np.uint64)
    return seconds, {"rows": tbl.num_rows, "valid": int(valid.sum()),
                     "sum": int(v.sum()), "wsum": int((v * (pid[valid] + 1)).sum()),
                     "columns": tbl.column_names}


for line in sys.stdin:
    req = json.loads(line)
    try:
        seconds, result = {"get_numpy": get_numpy, "put_points": put_points,
                           "sample_points": sample_points}[req["op"]](req)
        reply({"seconds": seconds, "result": result})
    except Exception as err:
        import traceback
        reply({"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()})
"""


class RasteretWorker:
    """A long-lived rasteret 0.4 process (Python 3.12 venv) holding one built collection.

    Started untimed (it builds its collection with ``enrich_cog=True`` over ``urls``);
    :meth:`call` sends one JSON request and returns rasteret's reply.
    """

    def __init__(self, urls: list[str]):
        if not RASTERET_PYTHON.exists():
            raise CaseNotAvailable(
                f"no rasteret venv at {RASTERET_PYTHON.parent.parent}: create it with "
                "/root/.pyenv/versions/3.12.1/bin/python3.12 -m venv .cache/rasteret-venv && "
                ".cache/rasteret-venv/bin/pip install rasteret (rasteret 0.4 needs Python >= 3.12)"
            )
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.urls = urls
        self.proc = subprocess.Popen(
            [str(RASTERET_PYTHON), "-c", _RASTERET_WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        setup = {
            "urls": urls,
            "ids": [f"t{d:%Y%m%d}" for d in DATES[: len(urls)]],
            "datetimes": [d.isoformat() for d in DATES[: len(urls)]],
            "footprint_lonlat": list(footprint_lonlat()),
        }
        reply = self._send(setup)
        if reply.get("ready") != len(urls):
            self.close()
            raise RuntimeError(f"rasteret worker did not build its collection: {reply}")

    def _send(self, obj: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.close()
            if "No module named 'rasteret'" in err:
                raise CaseNotAvailable("rasteret is not installed in .cache/rasteret-venv")
            raise RuntimeError(f"rasteret worker died ({self.proc.returncode}):\n{err[-8000:]}")
        return json.loads(line)

    def call(self, op: str, **kwargs: Any) -> tuple[float, dict[str, Any]]:
        """Run ``op`` in the worker; returns (rasteret's own seconds, result)."""
        reply = self._send({"op": op, **kwargs})
        if "error" in reply:
            raise RuntimeError(f"rasteret {op}: {reply['error']}\n{reply['traceback'][-2000:]}")
        return reply["seconds"], reply["result"]

    def close(self) -> None:
        """Stop the worker (closing its stdin ends its loop)."""
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(10)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.kill()
                self.proc.wait()


_WORKERS: dict[str, RasteretWorker] = {}


def rasteret_worker(key: str, urls: list[str]) -> RasteretWorker:
    """The worker for ``key`` (one per benchmark and served URL set); others are stopped."""
    worker = _WORKERS.get(key)
    if worker is None or worker.urls != urls or worker.proc.poll() is not None:
        for other in _WORKERS.values():  # a new server means a new run: free the old ones
            other.close()
        _WORKERS.clear()
        worker = _WORKERS[key] = RasteretWorker(urls)
    return worker


@atexit.register
def _close_workers() -> None:
    for worker in _WORKERS.values():
        worker.close()


def rasteret_warmup(ctx: CaseContext) -> None:
    """Start the rasteret process and build its collection (untimed)."""
    rasteret_worker("timeseries", series_urls(ctx))


def rasteret(ctx: CaseContext) -> dict[str, Any]:
    """rasteret 0.4 ``get_numpy`` over the 4 AOIs (all 30 records), in its venv."""
    worker = rasteret_worker("timeseries", series_urls(ctx))
    t0 = time.perf_counter()
    inner, res = worker.call("get_numpy", boxes=aoi_boxes(), epsg=int(CRS.split(":")[1]))
    outer = time.perf_counter() - t0
    h, w = res["chip_shape"]
    sums = sorted(res["chips"])
    digest = hashlib.sha256(json.dumps([sums, [[h, w]]]).encode()).hexdigest()[:12]
    return {
        "shape": res["shape"],
        "checksum": f"{len(sums)}x{[(h, w)]}:{sum(sums)}:{digest}",
        "inner_seconds": inner,
        "pipe_seconds": outer - inner,
    }


BENCHMARK = Benchmark(
    name="timeseries",
    description="30 dates x 4 AOIs x 256² chips x 1 band (TorchGeo-style) from 30 COGs over HTTP",
    prepare=_prepare,
    cases=(
        Case(
            "ours",
            "benchmarks.bench_timeseries:ours",
            warmup="benchmarks.bench_timeseries:ours_warmup",
            description="tessellum Collection.get_numpy, 4 AOIs x 30 records in one call",
        ),
        Case(
            "ours-dataset",
            "benchmarks.bench_timeseries:ours_dataset",
            warmup="benchmarks.bench_timeseries:ours_dataset_warmup",
            description="tessellum torch dataset: 4 samples of [30, 1, 256, 256], one at a time",
        ),
        Case(
            "rasterio-tuned",
            "benchmarks.bench_timeseries:rasterio_tuned",
            fresh_process=True,
            warmup="benchmarks.window_2048:gdal_warmup",
            description="rasterio per file open (kept) + windowed read per AOI, tuned GDAL",
        ),
        Case(
            "rasteret",
            "benchmarks.bench_timeseries:rasteret",
            warmup="benchmarks.bench_timeseries:rasteret_warmup",
            description="rasteret 0.4 Collection.get_numpy (Python 3.12 venv, long-lived)",
        ),
    ),
)
