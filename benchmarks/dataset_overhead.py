"""Per-sample overhead of the torch dataset: samples read from the tile cache.

Not a peer benchmark: it isolates what a ``DataLoader`` pays per sample beyond fetching
and decoding (planning, header lookup, output assembly), on the ``timeseries`` inputs
(30 dates of a 2048² COG) served over HTTP, every tile already decoded::

    .venv/bin/python -m benchmarks.dataset_overhead
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from benchmarks import bench_timeseries as series
from benchmarks.core import CaseContext
from tessellum.read.dataset import ChipDataset
from tessellum.testing.servers import HttpServer


def main(chip_size: int = 128, rounds: int = 3) -> None:
    files = series.BENCHMARK.prepare()
    root = Path(os.path.commonpath([p.parent for p in files.values()]))
    rel = {k: p.relative_to(root).as_posix() for k, p in files.items()}
    with HttpServer(root) as http:
        ctx = CaseContext(http.url, rel, 0, dict(series.BENCHMARK.params))
        series.ours_warmup(ctx)
        coll = series._ours_collection(ctx)
        for time_series in (True, False):
            ds = ChipDataset(coll, ["data"], chip_size, time_series=time_series)
            for i in range(len(ds)):  # fill the tile cache
                ds[i]
            best = float("inf")
            for _ in range(rounds):
                t0 = time.perf_counter()
                for i in range(len(ds)):
                    ds[i]
                best = min(best, (time.perf_counter() - t0) / len(ds))
            kind = f"[{len(coll)}, 1, {chip_size}, {chip_size}]" if time_series else "mosaic"
            print(f"{kind:>20} samples: {best * 1e3:.2f} ms each ({len(ds)} samples)")


if __name__ == "__main__":
    main()
