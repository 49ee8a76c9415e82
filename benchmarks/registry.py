"""The benchmarks, by name. Add a module with a ``BENCHMARK`` and list it here."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from benchmarks import (
    bench_attributes,
    bench_build,
    bench_extract_raster,
    bench_points,
    bench_timeseries,
    full_image,
    window_2048,
)
from benchmarks.core import Benchmark

__all__ = ["BENCHMARKS"]

BENCHMARKS: Mapping[str, Benchmark] = MappingProxyType(
    {
        b.name: b
        for b in (
            window_2048.BENCHMARK,
            full_image.BENCHMARK,
            bench_build.BENCHMARK,
            bench_extract_raster.BENCHMARK,
            bench_attributes.BENCHMARK,
            bench_timeseries.BENCHMARK,
            bench_points.BENCHMARK,
        )
    }
)
