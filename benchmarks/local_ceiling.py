"""The full-image read from a local file against the decode ceiling, alternated.

Without HTTP, nginx and the latency proxy, what share of the decode ceiling does the
read engine reach? (The ``full_image`` benchmark reads over HTTP on the same 2 cores.)::

    python -m benchmarks.local_ceiling --pairs 7
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks import full_image, ours
from benchmarks._data import ensure_large_cog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7, help="read/ceiling pairs")
    args = parser.parse_args()
    src = ours._source(str(ensure_large_cog(verbose=False)))  # the header, parsed once
    lvl = src.header.levels[0]
    full_image.warm_ceiling(None)  # tile bytes in memory

    def read() -> None:
        ours._read(src, 0, 0, lvl.height, lvl.width)

    read()  # warm-up: the output pool, the decode threads
    reads, ceilings = [], []
    for _ in range(args.pairs):
        t0 = time.perf_counter()
        read()
        reads.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        full_image.decode_ceiling(None)
        ceilings.append(time.perf_counter() - t0)
    r, c = statistics.median(reads), statistics.median(ceilings)
    print(f"local read {r * 1e3:.0f} ms, decode ceiling {c * 1e3:.0f} ms: {c / r:.0%} of it")


if __name__ == "__main__":
    main()
