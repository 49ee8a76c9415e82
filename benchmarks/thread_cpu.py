"""CPU time per thread of our process over repeated reads: where a read's CPU goes.

Serves the benchmark inputs through nginx and the latency proxy (separate processes, as
in ``benchmarks.run``) and reads ``/proc/self/task/*/stat`` before and after each trial::

    python -m benchmarks.thread_cpu full_image --latency 0 --trials 10
    python -m benchmarks.thread_cpu points --latency 20

Prints the median wall time and, per thread name (``main`` is the event loop's thread;
the decode pool's threads are ``python``; obstore's are ``tokio-rt-worker``), the mean
CPU milliseconds and minor page faults per trial. Linux only.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _threads() -> dict[str, tuple[str, float, int]]:
    """thread id -> (name, CPU seconds, minor faults)."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            text = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / _HZ
        out[task.name] = (name, cpu, int(fields[7]))
    return out


def measure(run: Callable[[], Any], trials: int) -> None:
    """Run ``run`` ``trials`` times after one warm-up; print wall and per-thread CPU."""
    main = str(threading.get_native_id())
    run()
    cpu: collections.Counter[str] = collections.Counter()
    faults: collections.Counter[str] = collections.Counter()
    walls = []
    for _ in range(trials):
        before = _threads()
        t0 = time.perf_counter()
        run()
        walls.append(time.perf_counter() - t0)
        for tid, (name, seconds, minflt) in _threads().items():
            label = "main" if tid == main else name
            _, s0, f0 = before.get(tid, (name, 0.0, 0))
            cpu[label] += seconds - s0
            faults[label] += minflt - f0
    print(f"wall median {statistics.median(walls) * 1e3:.0f} ms, min {min(walls) * 1e3:.0f} ms")
    for label, seconds in cpu.most_common():
        print(
            f"  {label:20s} {seconds / trials * 1e3:6.0f} ms CPU  {faults[label] / trials:8.0f} faults"
        )


def main() -> None:
    from benchmarks import bench_points, ours
    from benchmarks._data import ensure_large_cog
    from benchmarks._series_data import ensure_series
    from benchmarks.core import CaseContext
    from benchmarks.window_2048 import WINDOW
    from tessellum.testing.servers import HttpServer, LatencyProxy

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("benchmark", choices=["full_image", "window_2048", "points"])
    parser.add_argument("--latency", type=float, default=0.0, help="ms added per request")
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    if args.benchmark == "points":
        paths = ensure_series()[:20]
        files = {f"d{i:02d}": p.name for i, p in enumerate(paths)}
        root, warm, run = paths[0].parent, bench_points.ours_warmup, bench_points.ours
        params: dict[str, Any] = {}
    else:
        cog = ensure_large_cog()
        files, root, warm = {"cog": cog.name}, cog.parent, None
        run = getattr(ours, args.benchmark)
        params = {"window": WINDOW}
    with HttpServer(root) as http, LatencyProxy(http.url, isolated=True) as proxy:
        proxy.delay_ms = args.latency
        ctx = CaseContext(proxy.url, files, args.latency, params)
        if warm is not None:
            warm(ctx)
        measure(lambda: run(ctx), args.trials)


if __name__ == "__main__":
    main()
