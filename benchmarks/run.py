"""Run benchmarks against local servers with injected latency and report a table.

Usage::

    .venv/bin/python -m benchmarks.run [names...] [--latency 0,20] [--repeat 5]
        [--cases ours,rasterio-tuned] [--markdown docs/benchmarks.md] [--json PATH]

Each benchmark's inputs are served by :class:`HttpServer` (nginx) behind a
:class:`LatencyProxy`; the proxy counts requests and bytes of every trial. Trials of the
cases are interleaved so that machine noise hits all cases alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.core import Benchmark, CaseContext, CaseNotAvailable, TrialResult, run_trial
from benchmarks.registry import BENCHMARKS
from tessellum.testing.servers import HttpServer, LatencyProxy

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    """Aggregated trials of one case at one latency."""

    benchmark: str
    latency_ms: float
    case: str
    trials: list[TrialResult] = field(default_factory=list)
    status: str = "ok"
    ratio: float | None = None

    @property
    def median_ms(self) -> float | None:
        return statistics.median(t.seconds for t in self.trials) * 1e3 if self.trials else None

    @property
    def min_ms(self) -> float | None:
        return min(t.seconds for t in self.trials) * 1e3 if self.trials else None

    @property
    def requests(self) -> float | None:
        return statistics.median(t.requests for t in self.trials) if self.trials else None

    @property
    def mb(self) -> float | None:
        return statistics.median(t.bytes_down for t in self.trials) / 1e6 if self.trials else None

    @property
    def checksum(self) -> Any:
        return self.trials[0].output.get("checksum") if self.trials else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "latency_ms": self.latency_ms,
            "case": self.case,
            "status": self.status,
            "median_ms": self.median_ms,
            "min_ms": self.min_ms,
            "requests": self.requests,
            "mb": self.mb,
            "ratio": self.ratio,
            "checksum": self.checksum,
            "trials_ms": [t.seconds * 1e3 for t in self.trials],
        }


def run_benchmark(
    bench: Benchmark, latencies: list[float], repeat: int, only: set[str] | None = None
) -> list[Row]:
    """Run every case of ``bench`` ``repeat`` times at each latency."""
    files = bench.prepare()
    root = Path(os.path.commonpath([p.parent for p in files.values()]))
    rel = {name: p.relative_to(root).as_posix() for name, p in files.items()}
    cases = [c for c in bench.cases if only is None or c.name in only]
    rows: list[Row] = []
    # The proxy runs in its own process: in-process cases then do not share the GIL with it.
    with HttpServer(root) as http, LatencyProxy(http.url, isolated=True) as proxy:
        for latency in latencies:
            proxy.delay_ms = latency
            ctx = CaseContext(proxy.url, rel, latency, dict(bench.params))
            by_case = {c.name: Row(bench.name, latency, c.name) for c in cases}
            for _ in range(repeat):
                for case in cases:
                    row = by_case[case.name]
                    if row.status != "ok":
                        continue
                    proxy.reset()
                    try:
                        trial = run_trial(case, ctx)
                    except CaseNotAvailable as err:
                        row.status = f"n/a: {err}"
                        continue
                    except Exception as err:
                        row.status = f"error: {type(err).__name__}: {str(err)[:300]}"
                        continue
                    trial.requests, trial.bytes_down = proxy.request_count, proxy.bytes_down
                    row.trials.append(trial)
            _finish(list(by_case.values()), bench.reference)
            rows += by_case.values()
    return rows


def _finish(rows: list[Row], reference: str) -> None:
    """Fill ratios (reference / case) and flag cases whose pixels differ from the others."""
    ref = next((r for r in rows if r.case == reference and r.median_ms), None)
    for row in rows:
        if ref is not None and row.median_ms and row is not ref:
            row.ratio = ref.median_ms / row.median_ms  # type: ignore[operator]
    checksums = {r.checksum for r in rows if r.checksum is not None}
    if len(checksums) > 1:
        for row in rows:
            if row.status == "ok":
                row.status = f"ok (checksum {row.checksum} differs across cases!)"


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def print_table(rows: list[Row]) -> None:
    """Print the results with rich (plain text when rich is missing)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="tessellum benchmarks (ratio = ours / case; < 1: ours faster)")
    notes: list[str] = []
    for col, justify in [
        ("benchmark", "left"),
        ("latency", "right"),
        ("case", "left"),
        ("median ms", "right"),
        ("min ms", "right"),
        ("requests", "right"),
        ("MB", "right"),
        ("ratio", "right"),
        ("status", "left"),
    ]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(
            row.benchmark,
            f"{row.latency_ms:g} ms",
            row.case,
            _fmt(row.median_ms, ".1f"),
            _fmt(row.min_ms, ".1f"),
            _fmt(row.requests, ".0f"),
            _fmt(row.mb, ".2f"),
            _fmt(row.ratio, ".2f"),
            "" if row.status == "ok" else row.status.split(":")[0],
        )
        if row.status != "ok" and row.status not in notes:
            notes.append(row.status)
    console = Console(width=max(120, Console().width))
    console.print(table)
    for note in notes:
        console.print(f"  {note}")


def markdown_table(rows: list[Row]) -> str:
    """The results as a GitHub markdown table."""
    lines = [
        "| benchmark | latency | case | median ms | requests | MB | ours / case |",
        "|---|--:|---|--:|--:|--:|--:|",
    ]
    for row in rows:
        median = _fmt(row.median_ms, ".1f") or row.status.split(":")[0]
        lines.append(
            f"| {row.benchmark} | {row.latency_ms:g} ms | {row.case} | {median} | "
            f"{_fmt(row.requests, '.0f')} | {_fmt(row.mb, '.2f')} | {_fmt(row.ratio, '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def _environment() -> dict[str, Any]:
    import rasterio

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks (default all: {list(BENCHMARKS)})")
    parser.add_argument("--latency", default="0,20", help="ms per request, comma-separated")
    parser.add_argument("--repeat", type=int, default=5, help="trials per case")
    parser.add_argument("--cases", default="", help="only these cases (comma-separated)")
    parser.add_argument("--markdown", type=Path, help="also write a markdown table here")
    parser.add_argument("--json", type=Path, help="results file (default benchmarks/results/)")
    args = parser.parse_args(argv)

    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {list(BENCHMARKS)}")
    latencies = [float(x) for x in args.latency.split(",") if x.strip()]
    only = {c.strip() for c in args.cases.split(",") if c.strip()} or None

    rows: list[Row] = []
    t0 = time.perf_counter()
    for name in args.names or list(BENCHMARKS):
        rows += run_benchmark(BENCHMARKS[name], latencies, args.repeat, only)
    print_table(rows)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.json or RESULTS_DIR / f"results-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "created": stamp,
        "repeat": args.repeat,
        "seconds": time.perf_counter() - t0,
        "environment": _environment(),
        "rows": [r.as_dict() for r in rows],
    }
    out.write_text(json.dumps(payload, indent=2))
    print(f"results: {out}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown_table(rows))
        print(f"markdown: {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
