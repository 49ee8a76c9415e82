"""``build_500``: index the headers of 500 small COGs (``bench-many``) over HTTP.

Cases: tessellum (``build_from_files``), rasterio opening every file with cloud-COG GDAL
settings (one by one, and on 50 threads), and rasteret 0.4 (``build_from_table`` with
``enrich_cog=True``), which needs Python >= 3.12 and so runs in its own venv
(``.cache/rasteret-venv``) in a subprocess. Every case runs in a fresh process.

Run it on its own (prints headers/s and requests/asset, and the ratios)::

    .venv/bin/python -m benchmarks.bench_build [--latency 20] [--repeat 3]

or register ``BENCHMARK`` in :mod:`benchmarks.registry` and use ``benchmarks.run``.
The rasteret case reports its own timing of the build call (``inner_seconds``), which
both runners use: the outer time of its subprocess includes starting Python 3.12 and
importing rasteret.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.core import REPO_ROOT, Benchmark, Case, CaseContext, CaseNotAvailable

__all__ = [
    "BENCHMARK",
    "RASTERET_PYTHON",
    "main",
    "rasteret_build",
    "rasterio_open",
    "rasterio_open_threads",
    "tessellum_build",
]

N_FILES = 500
MAX_CONCURRENT = 50
RASTERET_PYTHON = REPO_ROOT / ".cache" / "rasteret-venv" / "bin" / "python"

# The usual cloud-COG settings (as in window_2048): no sidecar probing, a header
# prefix big enough for these files, HTTP/2 multiplexing.
TUNED_GDAL = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif",
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
    "VSI_CACHE": "TRUE",
    "GDAL_HTTP_MULTIPLEX": "YES",
}


def _prepare() -> dict[str, Path]:
    from tessellum.testing import get_world

    files = get_world(size="bench").files_of("bench-many")[:N_FILES]
    return {f"f{i:03d}": f.path for i, f in enumerate(files)}


def _urls(ctx: CaseContext) -> list[str]:
    return [ctx.url(name) for name in sorted(ctx.files)]


def _checksum(sizes: list[tuple[int, int, int]]) -> int:
    """Sum of width * height + tile count: equal across cases when all read the same."""
    return sum(w * h + n for w, h, n in sizes)


# -- cases -----------------------------------------------------------------------------------


def tessellum_build(ctx: CaseContext) -> dict[str, Any]:
    """``build_from_files`` over the URLs: one prefix read per asset."""
    from tessellum.collection import build_from_files

    coll = build_from_files(_urls(ctx), name="bench", max_concurrent=MAX_CONCURRENT, progress=False)
    return {"headers": len(coll.valid()), "checksum": _arrow_checksum(coll)}


def _arrow_checksum(coll: Any) -> int:
    """The checksum straight from the header columns (no per-row Python objects)."""
    import pyarrow.compute as pc

    meta = coll.valid().table.column("data_metadata")
    width, height = pc.struct_field(meta, "width"), pc.struct_field(meta, "height")
    full = pc.list_element(pc.struct_field(meta, "levels"), 0)
    tiles = pc.list_value_length(pc.struct_field(full, "tile_offsets"))
    return int(
        pc.sum(
            pc.add(pc.multiply(width.cast("int64"), height.cast("int64")), tiles.cast("int64"))
        ).as_py()
    )


def tessellum_warmup(ctx: CaseContext) -> None:
    """What a long-lived process has paid once: lazy imports and the PROJ database (the
    counterpart of ``gdal_warmup``); no connection is opened.

    pyarrow's first ``pa.array`` imports pandas when it is installed (0.2 s here) — an
    import like the others, which rasteret pays when it is imported, before its timer.
    """
    import pyarrow as pa
    import shapely  # noqa: F401

    import tessellum.collection.headers
    import tessellum.tiff.arrow  # noqa: F401
    from tessellum.geo.crs import crs_to_code, transformer

    pa.array([0])
    crs_to_code("EPSG:32612")
    transformer("EPSG:32612", "OGC:CRS84")


def _open_one(url: str) -> tuple[int, int, int]:
    import math

    import rasterio

    with rasterio.open(f"/vsicurl/{url}") as ds:
        bh, bw = ds.block_shapes[0]
        _ = (ds.transform, ds.crs, ds.nodata, ds.dtypes, ds.overviews(1))
        return ds.width, ds.height, math.ceil(ds.width / bw) * math.ceil(ds.height / bh)


def rasterio_open(ctx: CaseContext) -> dict[str, Any]:
    """Open every file with rasterio (tuned GDAL), one after the other."""
    import rasterio

    with rasterio.Env(**TUNED_GDAL):
        sizes = [_open_one(u) for u in _urls(ctx)]
    return {"headers": len(sizes), "checksum": _checksum(sizes)}


def rasterio_open_threads(ctx: CaseContext) -> dict[str, Any]:
    """Open every file with rasterio (tuned GDAL) on ``MAX_CONCURRENT`` threads."""
    import rasterio

    def one(url: str) -> tuple[int, int, int]:
        with rasterio.Env(**TUNED_GDAL):  # GDAL config options are per thread
            return _open_one(url)

    with ThreadPoolExecutor(MAX_CONCURRENT) as pool:
        sizes = list(pool.map(one, _urls(ctx)))
    return {"headers": len(sizes), "checksum": _checksum(sizes)}


_RASTERET_SCRIPT = r"""
import json, sys, time
import pyarrow as pa
import shapely
import rasteret
import rasteret.fetch.cog as cog
cog._OBSTORE_CLIENT_OPTIONS["allow_http"] = "true"  # the local servers speak plain HTTP
args = json.loads(sys.stdin.read())
urls = args["urls"]
table = pa.table({
    "id": [f"r{i}" for i in range(len(urls))],
    "href": urls,
    "datetime": pa.array([None] * len(urls), pa.timestamp("us", tz="UTC")),
    "geometry": [shapely.to_wkb(shapely.box(0, 0, 1, 1))] * len(urls),
})
t0 = time.perf_counter()
coll = rasteret.build_from_table(
    table, name="", href_column="href", band_index_map={"data": 0}, enrich_cog=True,
    max_concurrent=args["max_concurrent"], force=True,
)
seconds = time.perf_counter() - t0
meta = coll.dataset.to_table(columns=["data_metadata"]).column("data_metadata").to_pylist()
sizes = [(m["image_width"], m["image_height"], len(m["tile_offsets"])) for m in meta if m]
print(json.dumps({"seconds": seconds, "sizes": sizes}))
"""


def rasteret_build(ctx: CaseContext) -> dict[str, Any]:
    """rasteret 0.4 ``build_from_table(enrich_cog=True)`` in its Python 3.12 venv."""
    if not RASTERET_PYTHON.exists():
        raise CaseNotAvailable(
            f"no rasteret venv at {RASTERET_PYTHON.parent.parent}: create it with "
            "/root/.pyenv/versions/3.12.1/bin/python3.12 -m venv .cache/rasteret-venv && "
            ".cache/rasteret-venv/bin/pip install rasteret (rasteret 0.4 needs Python >= 3.12)"
        )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [str(RASTERET_PYTHON), "-c", _RASTERET_SCRIPT],
        input=json.dumps({"urls": _urls(ctx), "max_concurrent": MAX_CONCURRENT}),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        if "No module named 'rasteret'" in proc.stderr:
            raise CaseNotAvailable("rasteret is not installed in .cache/rasteret-venv")
        raise RuntimeError(f"rasteret failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    reply = json.loads(lines[-1])
    sizes = [tuple(s) for s in reply["sizes"]]
    return {
        "headers": len(sizes),
        "checksum": _checksum(sizes),  # type: ignore[arg-type]
        "inner_seconds": reply["seconds"],
    }


BENCHMARK = Benchmark(
    name="build_500",
    description="index the COG headers of 500 small COGs over HTTP",
    prepare=_prepare,
    cases=(
        Case(
            "ours",
            "benchmarks.bench_build:tessellum_build",
            fresh_process=True,
            warmup="benchmarks.bench_build:tessellum_warmup",
            description="tessellum build_from_files, 50 headers in flight",
        ),
        Case(
            "rasterio-tuned",
            "benchmarks.bench_build:rasterio_open",
            fresh_process=True,
            warmup="benchmarks.window_2048:gdal_warmup",
            description="rasterio.open per file, cloud-COG GDAL settings, sequential",
        ),
        Case(
            "rasterio-tuned-50-threads",
            "benchmarks.bench_build:rasterio_open_threads",
            fresh_process=True,
            warmup="benchmarks.window_2048:gdal_warmup",
            description="rasterio.open per file, cloud-COG GDAL settings, 50 threads",
        ),
        Case(
            "rasteret",
            "benchmarks.bench_build:rasteret_build",
            description="rasteret 0.4 build_from_table(enrich_cog=True), Python 3.12 venv",
        ),
    ),
)


def main(argv: list[str] | None = None) -> int:
    """Run ``build_500`` and print headers/s, requests/asset and ratios."""
    from rich.console import Console
    from rich.table import Table

    from benchmarks.run import run_benchmark

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_build")
    parser.add_argument("--latency", default="20", help="ms per request, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", default="", help="only these cases (comma-separated)")
    args = parser.parse_args(argv)
    latencies = [float(x) for x in args.latency.split(",") if x.strip()]
    only = {c.strip() for c in args.cases.split(",") if c.strip()} or None
    rows = run_benchmark(BENCHMARK, latencies, args.repeat, only)

    table = Table(title=f"build_500: {N_FILES} COG headers over HTTP (ratio = case / ours time)")
    for col in ("latency", "case", "median s", "headers/s", "requests/asset", "ours faster by"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for row in rows:
        if not row.trials:
            table.add_row(f"{row.latency_ms:g} ms", row.case, "", "", "", row.status)
            continue
        seconds = row.median_ms / 1e3  # type: ignore[operator]
        headers = row.trials[0].output.get("headers", 0)
        ratio = "" if row.ratio is None else f"{1 / row.ratio:.1f}x"
        table.add_row(
            f"{row.latency_ms:g} ms",
            row.case,
            f"{seconds:.2f}",
            f"{headers / seconds:.0f}",
            f"{row.requests / N_FILES:.2f}",  # type: ignore[operator]
            ratio if row.status == "ok" else f"{ratio} {row.status}",
        )
    Console(width=120).print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
