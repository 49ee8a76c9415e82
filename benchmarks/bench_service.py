"""Service throughput: requests/s and p50/p99 latency of ``POST /api/v1/extract`` with 2
uvicorn workers over the fixture world (rustac STAC API + nginx, no added latency).

Four scenarios, each ``--requests`` requests from ``--clients`` concurrent clients:
uncached points, the same points again (cached), uncached polygons (≈1-4 km HRUs), the
same polygons again (cached). Each worker has its own in-memory result cache, so the
"cached" pass first sends every query once per worker (not timed).

    .venv/bin/python -m benchmarks.bench_service [--requests 400] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import numpy as np

DATASETS = ["copernicus_dem:elevation", "esa_worldcover:land_cover"]


def _bodies(kind: str, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x, y = rng.uniform(-112.9, -111.1), rng.uniform(41.1, 42.9)
        if kind == "point":
            geom = {"type": "Point", "coordinates": [x, y]}
        else:
            d = rng.uniform(0.01, 0.04)
            geom = {
                "type": "Polygon",
                "coordinates": [[[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]],
            }
        out.append({"geometry": geom, "dataset_ids": DATASETS, "aggregation": "majority"})
    return out


async def _run(url: str, bodies: list[dict], clients: int) -> tuple[float, list[float], int]:
    import httpx

    lat: list[float] = []
    errors = 0
    queue = list(enumerate(bodies))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while queue:
            _, body = queue.pop()
            t0 = time.perf_counter()
            r = await client.post("/api/v1/extract", json=body)
            lat.append(time.perf_counter() - t0)
            errors += r.status_code != 200

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        return time.perf_counter() - t0, lat, errors


def main(argv: list[str] | None = None) -> int:
    from tessellum.testing import get_world, serve_world
    from tessellum.testing.servers import free_port
    from tessellum.testing.servers._process import wait_http_ok

    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_service")
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)

    with serve_world(get_world()) as servers:
        port = free_port()
        env = {**os.environ, "TESSELLUM_STAC_API": servers.stac_url}
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "tessellum.service:create_app", "--factory",
                "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers),
                "--log-level", "warning",
            ],
            env=env,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http_ok(f"{url}/health", timeout=30)
            rows = []
            for kind in ("point", "polygon"):
                bodies = _bodies(kind, args.requests, seed=1 if kind == "point" else 2)
                # warm the STAC collections and headers of every worker (not timed)
                asyncio.run(_run(url, _bodies(kind, 4 * args.workers, 99), args.workers))
                for label in ("uncached", "cached"):
                    if label == "cached":  # each worker caches on its own: fill both
                        for _ in range(args.workers):
                            asyncio.run(_run(url, bodies, args.clients))
                    wall, lat, errors = asyncio.run(_run(url, bodies, args.clients))
                    p50, p99 = np.percentile(lat, [50, 99]) * 1000
                    rows.append((kind, label, len(bodies) / wall, p50, p99, errors))
        finally:
            proc.terminate()
            proc.wait(10)
    print(
        f"\n{args.requests} requests per scenario, {args.clients} clients, "
        f"{args.workers} uvicorn workers, 2 datasets per request\n"
    )
    print("| query | cache | req/s | p50 ms | p99 ms | errors |")
    print("|---|---|--:|--:|--:|--:|")
    for kind, label, rps, p50, p99, errors in rows:
        print(f"| {kind} | {label} | {rps:.0f} | {p50:.1f} | {p99:.1f} | {errors} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
